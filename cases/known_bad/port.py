"""A re-creation, in our own code and from the published descriptions, of the public Pix2Seq port's
pipeline behaviours (DESIGN.md §3), to show that the cases catch them.

`PortReplica(bugs)` switches each published behaviour on separately:
- 1: the tokenizer caps the NUMBER OF OBJECTS at max_len while collate pads the SEQUENCE to max_len:
     61+ objects give a negative pad width and a RuntimeError.
- 2: postprocess treats only an EOS index of 0 as invalid, so [BOS, EOS] reaches the decoder, which
     indexes the first object of an empty row: IndexError, and the whole batch is lost.
- 3: the prediction table is filtered with isinstance(x, list) while the values are np.ndarray: the
     table comes out empty and mAP is 0.0 without any error.
- 4: image ids come from valid_df.iloc[:len(all_bboxes)], a one-row-per-OBJECT ground-truth table
     cut by the number of IMAGES: ids are misaligned and images drop out.
- "noclip": coordinates are not clipped to the bins (1.01 becomes a class id, -0.5 a negative id).
- "intboxes": integer boxes are normalised in their integer dtype and become all-zero tokens.
- "nokind": postprocess takes any token as coordinate/class (labels outside [0, C) come out).
`PORT_REPLICA` has all of them; `PORT_BUG1..4` one numbered bug each on top of the reference.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bench.implementations import Pix2SeqReference
from reference.pix2seq.pipeline import category_ids, empty_table, prediction_table

ALL_BUGS = frozenset({1, 2, 3, 4, "noclip", "intboxes", "nokind"})


class PortReplica(Pix2SeqReference):
    def __init__(self, name: str, bugs) -> None:
        super().__init__()
        self.name = name
        self.bugs = frozenset(bugs)

    # -- tokenizer -------------------------------------------------------------------------------
    def encode(self, boxes, labels, width, height) -> list[int]:
        if not {1, "noclip", "intboxes"} & self.bugs:
            return super().encode(boxes, labels, width, height)
        boxes = np.asarray(boxes).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        cap = self.max_len if 1 in self.bugs else self.vocab.max_objects  # bug 1: objects capped at max_len
        scale = np.array([width, height, width, height])
        if "intboxes" in self.bugs and np.issubdtype(boxes.dtype, np.integer):
            norm = (boxes // scale.astype(boxes.dtype)).astype(np.float64)  # integer division: all zeros
        else:
            norm = boxes.astype(np.float64) / scale
        if "noclip" not in self.bugs:
            norm = np.clip(norm, 0.0, 1.0)
        bins = np.floor(norm * (self.num_bins - 1) + 1e-9).astype(np.int64)
        seq = [self.bos]
        for box, label in list(zip(bins, labels))[:cap]:
            seq.extend([*box.tolist(), int(label) + self.num_bins])
        return seq + [self.eos]

    def collate(self, sequences):
        if 1 not in self.bugs:
            return super().collate(sequences)
        rows = []
        for seq in sequences:
            seq = torch.as_tensor(list(seq), dtype=torch.long)
            padding = torch.full((self.max_len - len(seq),), self.pad, dtype=torch.long)  # negative -> RuntimeError
            rows.append(torch.cat([seq, padding]))
        return torch.stack(rows)

    # -- postprocess -----------------------------------------------------------------------------
    def postprocess(self, tokens, token_probs, sizes):
        if not {2, "nokind"} & self.bugs:
            return super().postprocess(tokens, token_probs, sizes)
        tokens = torch.as_tensor(tokens).clone().cpu()
        probs = torch.as_tensor(token_probs, dtype=torch.float64).clone().cpu()
        results = []
        for row in range(tokens.shape[0]):
            is_eos = tokens[row] == self.eos
            eos_index = int(is_eos.float().argmax()) if is_eos.any() else 0
            if eos_index == 0:  # the only index the port treats as invalid
                results.append({"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)})
                continue
            body = tokens[row, 1:eos_index]
            body_probs = probs[row, 1:eos_index]
            usable = (len(body) // 5) * 5
            if 2 in self.bugs:
                _ = body[0]  # the port decodes the first object unconditionally: IndexError on [BOS, EOS]
            if usable == 0:
                results.append({"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)})
                continue
            objects = body[:usable].reshape(-1, 5).numpy()
            object_probs = body_probs[:usable].reshape(-1, 5).numpy()
            if "nokind" not in self.bugs:
                keep = self.vocab.is_coord(objects[:, :4]).all(axis=1) & self.vocab.is_class(objects[:, 4])
                objects, object_probs = objects[keep], object_probs[keep]
            width, height = sizes[row]
            boxes = objects[:, :4] / (self.num_bins - 1) * np.array([width, height, width, height])
            upright = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])  # as the reference: not a port bug
            results.append({"boxes": boxes[upright], "labels": objects[upright, 4] - self.num_bins,
                            "scores": object_probs[upright, 4]})
        return results

    # -- prediction table ------------------------------------------------------------------------
    def prediction_table(self, image_ids, detections, gt=None):
        if not {3, 4} & self.bugs:
            return super().prediction_table(image_ids, detections, gt)
        if 4 in self.bugs:
            if gt is None:
                raise TypeError("the port's table assembly needs the ground-truth table (gt)")
            valid_df = pd.DataFrame(sorted(gt["annotations"], key=lambda a: (a["image_id"], a["id"])))
            if valid_df.empty:
                return empty_table()
            image_ids = valid_df["image_id"].iloc[: len(detections)].tolist()  # one row per OBJECT, cut by IMAGES
            detections = detections[: len(image_ids)]
        df = pd.DataFrame({"image_id": list(image_ids), "bboxes": [d["boxes"] for d in detections],
                           "labels": [d["labels"] for d in detections], "scores": [d["scores"] for d in detections]})
        if 3 in self.bugs:
            df = df[df["bboxes"].apply(lambda x: isinstance(x, list))]  # ndarray values never pass
        return prediction_table(df["image_id"].tolist(),
                                [{"boxes": b, "labels": l, "scores": s}
                                 for b, l, s in zip(df["bboxes"], df["labels"], df["scores"])])


PORT_REPLICA = PortReplica("port-replica", ALL_BUGS)
PORT_BUG1 = PortReplica("port-bug1", {1})
PORT_BUG2 = PortReplica("port-bug2", {2})
PORT_BUG3 = PortReplica("port-bug3", {3})
PORT_BUG4 = PortReplica("port-bug4", {4})
__all__ = ["PortReplica", "PORT_REPLICA", "PORT_BUG1", "PORT_BUG2", "PORT_BUG3", "PORT_BUG4", "category_ids"]
