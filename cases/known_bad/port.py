"""A re-creation, in our own code and from the published descriptions and the public code's behaviour, of
the Pix2Seq port's pipeline (docs/design.md §3), to show that the cases catch each behaviour.

`PortReplica(name, bugs)` switches each behaviour on separately (on top of the reference):
- 1: the tokenizer caps the NUMBER OF OBJECTS at max_len while collate pads the SEQUENCE to max_len:
     61+ objects give a negative pad width and a RuntimeError.
- 2: postprocess decodes [BOS, EOS] (nothing detected) like any row: IndexError, the whole batch lost.
- 3: the prediction table is filtered with isinstance(x, list) while the values are np.ndarray: the
     table comes out empty and mAP is 0.0 without any error.
- 4: image ids come from valid_df.iloc[:len(all_bboxes)], a one-row-per-OBJECT ground-truth table
     cut by the number of IMAGES: ids are misaligned and images drop out.
- "noclip": coordinates are not clipped (1.01 becomes a class id, -0.5 a negative id).
- "intboxes": integer boxes are normalised in their integer dtype and become all-zero tokens.
- "nokind": decode and postprocess take any token as a coordinate or class.
- "floor": the quantiser truncates, (x * (num_bins - 1)).astype(int): float rounding puts some grid
  positions one bin low (18 of 384 on a 383-pixel side).
- "noempty": an image without objects crashes the tokenizer (np.array([]) is 1-D: IndexError).
- "eosalign": a row without EOS, or with EOS off an object boundary, is dropped whole.
- "round3": scores are rounded to 3 decimals.
- "padstrip": every PAD is removed from a row before it is read, shifting the objects after it.
- "gtfilter": evaluation keeps only the images that have predictions (their misses vanish).
- "voc": evaluation is a VOC-style mAP@0.5 only (all-point interpolation, crowd regions counted as
  objects, no 100-per-class cap): no AP, no AR.
- "every4": generation stores the top probability of every 4th step as the scores, so object j gets
  the probability of step 4j (object 0: its xmin) instead of its class token's.
- "unconstrained": generation takes any token at any position.
- "nostop": generation goes on after a row's EOS (the model's tokens, not PAD, follow it).
- "ndonly": the table filter is isinstance(x, np.ndarray) (a public Pix2SeqV2): lists and tensors vanish.
- "mutate": postprocess writes EOS into the caller's last token column (a public Pix2SeqV2).
`PORT_REPLICA` has the port's behaviours; `PORT_BUG1..4` one published bug each; `ONLY.<behaviour>`
(e.g. ONLY.noclip) every behaviour alone, for the isolation check (tests/test_case_isolation.py).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from bench.implementations import Pix2SeqReference, evaluate_table
from reference.pix2seq.generate import allowed_tokens, generate_scripted
from reference.pix2seq.pipeline import category_ids, empty_table, prediction_table
from reference.pix2seq.tokenizer import quantize
from cases.known_bad.voc import voc_map50

PORT_BUGS = frozenset({1, 2, 3, 4, "noclip", "intboxes", "nokind", "floor", "noempty", "eosalign", "round3",
                       "padstrip", "gtfilter", "voc", "every4", "unconstrained", "nostop"})
ALL_BEHAVIOURS = PORT_BUGS | {"ndonly", "mutate"}
ENCODE = {1, "noclip", "intboxes", "floor", "noempty"}
POSTPROCESS = {2, "nokind", "eosalign", "round3", "padstrip", "mutate"}
GENERATE = {"every4", "unconstrained", "nostop"}


def _empty() -> dict:
    return {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64), "scores": np.zeros(0)}


class PortReplica(Pix2SeqReference):
    def __init__(self, name: str, bugs, vocab=None) -> None:
        super().__init__(vocab)
        self.name = name
        self.bugs = frozenset(bugs)
        unknown = self.bugs - ALL_BEHAVIOURS
        if unknown:
            raise ValueError(f"unknown behaviours {sorted(map(str, unknown))}")

    # -- tokenizer -------------------------------------------------------------------------------
    def encode(self, boxes, labels, width, height) -> list[int]:
        if not ENCODE & self.bugs:
            return super().encode(boxes, labels, width, height)
        boxes = np.array(boxes) if "noempty" in self.bugs else np.asarray(boxes).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        scale = np.array([width, height, width, height], np.float64)
        norm = boxes[:, :4] / scale  # noempty: IndexError on the 1-D array of an empty list
        if "intboxes" in self.bugs and np.issubdtype(boxes.dtype, np.integer):
            norm = np.trunc(norm)  # assigned back into the integer array: all zeros
        if "noclip" not in self.bugs:
            norm = np.clip(norm, 0.0, 1.0)
        if "floor" in self.bugs:
            bins = (norm * (self.num_bins - 1)).astype(np.int64)
        elif "noclip" in self.bugs:
            bins = np.floor(norm * (self.num_bins - 1) + 0.5).astype(np.int64)
        else:
            bins = quantize(norm, self.num_bins)
        cap = self.max_len if 1 in self.bugs else self.vocab.max_objects  # bug 1: objects capped at max_len
        seq = [self.bos]
        for box, label in list(zip(bins, labels))[:cap]:
            seq.extend([*box.tolist(), int(label) + self.num_bins])
        return seq + [self.eos]

    def decode(self, tokens):
        if "nokind" not in self.bugs:
            return super().decode(tokens)
        tokens = np.asarray(tokens, np.int64).reshape(-1)
        body = tokens[tokens != self.pad][1:-1]  # the port: PAD removed, BOS and EOS cut off, no kind check
        if len(body) % 5:
            raise AssertionError("invalid tokens")
        objects = body.reshape(-1, 5)
        return objects[:, :4] / (self.num_bins - 1), objects[:, 4] - self.num_bins

    def collate(self, sequences):
        if 1 not in self.bugs:
            return super().collate(sequences)
        rows = []
        for seq in sequences:
            seq = torch.as_tensor(list(seq), dtype=torch.long)
            padding = torch.full((self.max_len - len(seq),), self.pad, dtype=torch.long)  # negative -> RuntimeError
            rows.append(torch.cat([seq, padding]))
        return torch.stack(rows)

    # -- generation ------------------------------------------------------------------------------
    def generate(self, predict, images, max_new_tokens=None):
        if not GENERATE & self.bugs:
            return super().generate(predict, images, max_new_tokens)
        max_new = self.max_len - 1 if max_new_tokens is None else int(max_new_tokens)
        allowed = None if "unconstrained" in self.bugs else allowed_tokens(self.vocab, 1 + max_new)
        prompts = torch.full((len(images), 1), self.bos, dtype=torch.long)
        tokens, probs = generate_scripted(predict, images, prompts, max_new, eos=self.eos, pad=self.pad,
                                          allowed=allowed, stop_at_eos="nostop" not in self.bugs)
        if "every4" in self.bugs:  # confs = top probability of steps 0, 4, 8, ...; object j's score = confs[j]
            scores = probs.clone()
            for j, pos in enumerate(range(5, tokens.shape[1], 5)):
                scores[:, pos] = probs[:, 1 + 4 * j]
            probs = scores
        return tokens, probs

    # -- postprocess -----------------------------------------------------------------------------
    def postprocess(self, tokens, token_probs, sizes):
        if not POSTPROCESS & self.bugs:
            return super().postprocess(tokens, token_probs, sizes)
        if "mutate" in self.bugs and isinstance(tokens, torch.Tensor):
            tokens[:, -1] = self.eos  # "ensure a complete sentence", in the caller's tensor
        tokens = torch.as_tensor(tokens).clone().cpu().numpy().astype(np.int64)
        probs = torch.as_tensor(token_probs, dtype=torch.float64).clone().cpu().numpy()
        return [self._row(tokens[b], probs[b], sizes[b]) for b in range(tokens.shape[0])]

    def _row(self, row, probs, size) -> dict:
        eos_at = np.flatnonzero(row == self.eos)
        if "eosalign" in self.bugs and (not eos_at.size or (eos_at[0] - 1) % 5):
            return _empty()  # the port's sanity check drops the row
        end = int(eos_at[0]) if eos_at.size else len(row)
        body, body_probs = row[1:end], probs[1:end]
        if 2 in self.bugs and body.size == 0:
            raise IndexError("index 0 is out of bounds for axis 0 with size 0")  # decode of [BOS, EOS]
        if "padstrip" in self.bugs:
            keep = body != self.pad
            body, body_probs = body[keep], body_probs[keep]
            if "eosalign" in self.bugs and body.size % 5:
                raise AssertionError("invalid tokens")  # the port's decode asserts whole objects
        usable = body.size // 5 * 5
        objects, object_probs = body[:usable].reshape(-1, 5), body_probs[:usable].reshape(-1, 5)
        if "nokind" not in self.bugs:
            keep = self.vocab.is_coord(objects[:, :4]).all(axis=1) & self.vocab.is_class(objects[:, 4])
            objects, object_probs = objects[keep], object_probs[keep]
        width, height = size
        boxes = objects[:, :4] / (self.num_bins - 1) * np.array([width, height, width, height])
        upright = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])  # as the reference: not a port bug
        scores = object_probs[upright, 4]
        return {"boxes": boxes[upright], "labels": objects[upright, 4] - self.num_bins,
                "scores": np.round(scores, 3) if "round3" in self.bugs else scores}

    # -- prediction table ------------------------------------------------------------------------
    def prediction_table(self, image_ids, detections, gt=None):
        if not {3, 4, "ndonly"} & self.bugs:
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
        if "ndonly" in self.bugs:
            df = df[df["bboxes"].apply(lambda x: isinstance(x, np.ndarray))]  # lists and tensors never pass
        return prediction_table(df["image_id"].tolist(),
                                [{"boxes": b, "labels": l, "scores": s}
                                 for b, l, s in zip(df["bboxes"], df["labels"], df["scores"])])

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, gt, table):
        if not {"gtfilter", "voc"} & self.bugs:
            return super().evaluate(gt, table)
        if "gtfilter" in self.bugs:  # valid_df = df[df['id'].isin(preds_df['id'].unique())]
            kept = set(table["image_id"].tolist())
            gt = {**gt, "images": [im for im in gt["images"] if im["id"] in kept],
                  "annotations": [a for a in gt["annotations"] if a["image_id"] in kept]}
            if not gt["images"]:
                return {"AP50": 0.0} if "voc" in self.bugs else {"AP": 0.0, "AP50": 0.0}
        if "voc" in self.bugs:
            return {"AP50": voc_map50(gt, table)}
        return evaluate_table(gt, table)


PORT_REPLICA = PortReplica("port-replica", PORT_BUGS)
PORT_BUG1 = PortReplica("port-bug1", {1})
PORT_BUG2 = PortReplica("port-bug2", {2})
PORT_BUG3 = PortReplica("port-bug3", {3})
PORT_BUG4 = PortReplica("port-bug4", {4})
ONLY = SimpleNamespace(**{str(b): PortReplica(f"port-{b}", {b}) for b in ALL_BEHAVIOURS if not isinstance(b, int)})
__all__ = ["PortReplica", "PORT_REPLICA", "PORT_BUG1", "PORT_BUG2", "PORT_BUG3", "PORT_BUG4", "ONLY", "category_ids"]
