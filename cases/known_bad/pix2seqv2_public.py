"""A re-creation, in our own code, of the behaviours of a public Pix2SeqV2 re-implementation
(JJJYmmm/Pix2SeqV2-Pytorch, read through the code search: tokenizer.py, test_utils.py, multi_task.py,
test/test_coco_object_detection.py, test/test_voc_object_detection.py), to show that the cases catch them.
It implements both families: its detection pipeline (the pix2seq parts, a `PortReplica` with the
project's behaviours) and its multi-task codecs (the pix2seqv2 parts).

Pix2SeqV2 behaviours (`Pix2SeqV2Public(name, bugs)`, each on top of the reference):
- "dictreuse": the COCO export appends one re-used dict per image (temp = target[bs]; temp[...] = ...;
  res.append(temp)): every entry of an image ends up holding its last object.
- "every4": scores are the top probability of every 4th generated step (object j: step 4j).
- "unconstrained", "nostop": generation takes any token anywhere and goes on after EOS.
- "round3": detection scores are rounded to 3 decimals.
- "intboxes", "noempty", "floor": integer boxes become zeros; an image without objects fails an assert;
  the quantiser truncates (x * (num_bins - 1)).astype(int), in every encoder and the box prompt.
- "padstrip": decoders remove every PAD before reading (tokens[tokens != PAD]), shifting what follows.
- "norotate": the random start vertex is never applied (np.roll's result is discarded).
- "onesep": decode_segmentation crashes on exactly one separator (nonzero().squeeze().tolist() is an
  int, which has no .insert).
- "segnoclip": polygon coordinates are clamped below at 0 only: past the image they become class ids.
- "segnocap": each polygon keeps its first 128 points, the sequence is not capped at max_len.
- "kpraw": keypoints are written as raw pixel values (int(x), int(y)) and read back as such; keypoints
  outside the image are invisible.
- "yclamp": decode_keypoints clamps y to the width, not the height.
- "kp17": decode_keypoints asserts exactly 17 keypoints (34 tokens).
- "maskshift": the loss mask also drops the first target token after the prompt (mask[:init_len + 1]
  although the task token replaced BOS).
- "captionunk": decode_caption reads every token before EOS as a word: non-words become '<unk>'.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from bench.implementations import Pix2SeqV2Reference
from cases.interface.pix2seq import FAMILY as PIX2SEQ_FAMILY
from cases.known_bad.port import PortReplica
from reference.pix2seq.tokenizer import quantize
from reference.pix2seqv2.generate import allowed_tokens, generate_scripted
from reference.pix2seqv2.prompt import as_row
from reference.pix2seqv2.segmentation import MAX_POINTS, _as_polygons, fit_polygons, rotate_start

V2_BUGS = frozenset({"dictreuse", "every4", "unconstrained", "nostop", "round3", "intboxes", "noempty", "floor",
                     "padstrip", "norotate", "onesep", "segnoclip", "segnocap", "kpraw", "yclamp", "kp17",
                     "maskshift", "captionunk"})
DETECTION_PIPELINE = frozenset({"intboxes", "noclip", "floor", "noempty", "padstrip", "nokind", "mutate",
                                "eosalign", "round3", "every4", "unconstrained", "nostop", "ndonly", "voc",
                                "gtfilter"})


class Pix2SeqV2Public(Pix2SeqV2Reference):
    def __init__(self, name: str, bugs) -> None:
        super().__init__()
        self.name = name
        self.bugs = frozenset(bugs)
        if self.bugs - V2_BUGS:
            raise ValueError(f"unknown behaviours {sorted(self.bugs - V2_BUGS)}")
        # the detection task's tokenizer and row reading: the project's Pix2Seq behaviours
        self._port = PortReplica(name, {"floor", "intboxes", "padstrip", "round3"} & self.bugs, self.vocab.base)

    # -- quantisation ----------------------------------------------------------------------------
    def _bins(self, norm) -> np.ndarray:
        norm = np.asarray(norm, np.float64)
        if "floor" in self.bugs:
            return (norm * (self.vocab.num_bins - 1)).astype(np.int64)
        return np.floor(norm * (self.vocab.num_bins - 1) + 0.5).astype(np.int64)

    def prompt(self, task, box=None, label=None, width=1.0, height=1.0):
        if "floor" not in self.bugs or self.vocab.prompt_length(task) == 1:
            return super().prompt(task, box, label, width, height)
        return [self.vocab.task_token(task), *self._port.encode([list(box)], [label], width, height)[1:-1]]

    # -- detection -------------------------------------------------------------------------------
    def encode_detection(self, boxes, labels, width, height):
        if not {"floor", "intboxes", "noempty"} & self.bugs:
            return super().encode_detection(boxes, labels, width, height)
        if "noempty" in self.bugs:
            assert len(boxes), "seq should not be empty(friendly to CrossEntropy Loss)"
        return [self.vocab.task_token("detection"), *self._port.encode(boxes, labels, width, height)[1:]]

    def decode_detection(self, tokens, width, height, probs=None):
        if not {"padstrip", "round3"} & self.bugs:
            return super().decode_detection(tokens, width, height, probs)
        row = as_row(tokens).copy()
        if row.size and row[0] == self.vocab.task_token("detection"):
            row[0] = self.vocab.bos
        probs = np.ones(row.size) if probs is None else np.asarray(probs, np.float64).reshape(-1)
        return self._port._row(row, probs, (width, height))

    # -- segmentation ----------------------------------------------------------------------------
    def encode_segmentation(self, box, label, polygons, width, height, seed=None):
        if not {"floor", "norotate", "segnoclip", "segnocap"} & self.bugs:
            return super().encode_segmentation(box, label, polygons, width, height, seed)
        prompt = self.prompt("segmentation", box, label, width, height)
        polys = _as_polygons(polygons)
        if seed is not None and "norotate" not in self.bugs:
            rng = np.random.default_rng(seed)
            polys = [rotate_start(p, rng) for p in polys]
        if "segnocap" in self.bugs:
            polys = [p[:MAX_POINTS] for p in polys]
        else:
            polys = fit_polygons(polys, MAX_POINTS, self.vocab.max_len - len(prompt) - 1)
        body = []
        for i, poly in enumerate(polys):
            norm = poly / np.array([width, height], np.float64)
            norm = np.maximum(norm, 0.0) if "segnoclip" in self.bugs else np.clip(norm, 0.0, 1.0)
            body += ([self.vocab.separator] if i else []) + self._bins(norm).reshape(-1).tolist()
        return [*prompt, *body, self.vocab.eos]

    def decode_segmentation(self, tokens, width, height):
        row = self._strip(tokens)
        if "onesep" in self.bugs:
            body = row[6:]
            eos = np.flatnonzero(body == self.vocab.eos)
            if np.count_nonzero(body[: eos[0] if eos.size else None] == self.vocab.separator) == 1:
                raise AttributeError("'int' object has no attribute 'insert'")
        return super().decode_segmentation(row, width, height)

    def _strip(self, tokens) -> np.ndarray:
        row = as_row(tokens)
        return row[row != self.vocab.pad] if "padstrip" in self.bugs else row

    # -- keypoints -------------------------------------------------------------------------------
    def encode_keypoints(self, box, label, keypoints_, width, height):
        if not {"floor", "kpraw"} & self.bugs:
            return super().encode_keypoints(box, label, keypoints_, width, height)
        kps = np.asarray(keypoints_, np.float64).reshape(-1, 3)
        pairs = []
        for x, y, v in kps.tolist():
            outside = x < 0 or y < 0 or x > width or y > height
            if v <= 0.5 or ("kpraw" in self.bugs and outside):
                pairs += [self.vocab.invisible] * 2
            elif "kpraw" in self.bugs:
                pairs += [int(x), int(y)]
            else:
                pairs += self._bins(np.clip([x / width, y / height], 0.0, 1.0)).tolist()
        return [*self.prompt("keypoint", box, label, width, height), *pairs, self.vocab.eos]

    def decode_keypoints(self, tokens, width, height, num_keypoints=None):
        row = self._strip(tokens)
        body = row[6:]
        eos = np.flatnonzero(body == self.vocab.eos)
        body = body[: eos[0]] if eos.size else body
        if "kp17" in self.bugs:
            assert len(body) == 34, "invalid tokens"
        if "kpraw" in self.bugs:
            out = super().decode_keypoints(row[:6], width, height, 0)
            pairs = body[: len(body) // 2 * 2].reshape(-1, 2)
            if num_keypoints is not None:
                pairs = np.concatenate([pairs[:num_keypoints], np.full((max(0, num_keypoints - len(pairs)), 2),
                                                                       self.vocab.invisible)])
            kps = np.zeros((len(pairs), 3))
            seen = (pairs != self.vocab.invisible).all(axis=1)
            kps[seen, 0] = np.clip(pairs[seen, 0], 0, width)
            kps[seen, 1] = np.clip(pairs[seen, 1], 0, width if "yclamp" in self.bugs else height)
            kps[seen, 2] = 2
            return {**out, "keypoints": kps}
        out = super().decode_keypoints(row, width, height, num_keypoints)
        if "yclamp" in self.bugs:
            kps = out["keypoints"].copy()
            kps[:, 1] = np.minimum(kps[:, 1], width)
            out = {**out, "keypoints": kps}
        return out

    # -- captions, loss mask ---------------------------------------------------------------------
    def decode_caption(self, words, tokens):
        if "captionunk" not in self.bugs:
            return super().decode_caption(words, tokens)
        row = as_row(tokens)
        eos = np.flatnonzero(row == self.vocab.eos)
        body = row[1: eos[0] if eos.size else None]
        start = self.vocab.word_start
        return " ".join(words.words[t - start] if 0 <= t - start < len(words) else "<unk>" for t in body.tolist())

    def target_mask(self, tokens):
        mask = super().target_mask(tokens)
        if "maskshift" in self.bugs:
            mask = mask.clone()
            for b, row in enumerate(torch.as_tensor(tokens).tolist()):
                task = self.vocab.task_of(row[0])
                if task is not None and self.vocab.prompt_length(task) - 1 < mask.shape[1]:
                    mask[b, self.vocab.prompt_length(task) - 1] = False  # the first target after the prompt
        return mask

    # -- generation, export ----------------------------------------------------------------------
    def generate_task(self, predict, images, task, prompts, max_new_tokens=None, num_keypoints=17):
        if not {"every4", "unconstrained", "nostop"} & self.bugs:
            return super().generate_task(predict, images, task, prompts, max_new_tokens, num_keypoints)
        v, prompts = self.vocab, torch.as_tensor(prompts).long()
        P = prompts.shape[1]
        new = v.max_len - P if max_new_tokens is None else int(max_new_tokens)

        def allowed(width):
            return allowed_tokens(v.with_words(max(v.num_words, width - v.word_start)), task, P + new, num_keypoints)

        tokens, probs = generate_scripted(predict, images, prompts, new, eos=v.eos, pad=v.pad,
                                          allowed=None if "unconstrained" in self.bugs else allowed,
                                          stop_at_eos="nostop" not in self.bugs)
        if "every4" in self.bugs and task == "detection":
            scores = probs.clone()
            for j, pos in enumerate(range(P + 4, tokens.shape[1], 5)):
                scores[:, pos] = probs[:, P + 4 * j]
            probs = scores
        return tokens, probs

    def export_results(self, task, image_ids, predictions, gt):
        entries = super().export_results(task, image_ids, predictions, gt)
        if "dictreuse" not in self.bugs or task == "captioning":
            return entries
        out, temp, current = [], None, None
        for entry in entries:
            if entry["image_id"] != current:
                temp, current = {}, entry["image_id"]  # temp = target[bs]: one dict per image
            temp.update(entry)
            out.append(temp)
        return out


class BothFamilies:
    """One object with the project's detection pipeline (pix2seq parts) and its codecs (pix2seqv2 parts)."""

    def __init__(self, name: str, detection: PortReplica | None, codecs: Pix2SeqV2Public | None) -> None:
        self.name, self._detection, self._codecs = name, detection, codecs

    def __getattr__(self, part: str):
        source = self._detection if part in PIX2SEQ_FAMILY.parts else self._codecs
        if source is None or part.startswith("_"):
            raise AttributeError(part)
        return getattr(source, part)


PIX2SEQV2_PUBLIC = BothFamilies("pix2seqv2-public", PortReplica("pix2seqv2-public", DETECTION_PIPELINE),
                                Pix2SeqV2Public("pix2seqv2-public", V2_BUGS))
ONLY = SimpleNamespace(**{b: BothFamilies(f"pix2seqv2-{b}", None, Pix2SeqV2Public(f"pix2seqv2-{b}", {b}))
                          for b in sorted(V2_BUGS)})
__all__ = ["Pix2SeqV2Public", "BothFamilies", "PIX2SEQV2_PUBLIC", "ONLY", "V2_BUGS", "DETECTION_PIPELINE"]
