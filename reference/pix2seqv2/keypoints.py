"""Keypoint task: [KPT, box prompt (5), (x, y) per named keypoint, EOS].

Keypoints are COCO keypoints (flat [x, y, v] * K or (K, 3)) in pixels of a (width, height) image,
in the category's named order. A keypoint with v = 0 (not labelled) is the pair
(INVISIBLE, INVISIBLE), so every keypoint keeps its two positions; v = 1 and v = 2 are both encoded
by their coordinates and decode as v = 2. x is normalised by (and clamped to) the width, y by the
height, then quantised with Pix2Seq's `quantize`.
"""

from __future__ import annotations

import numpy as np

from reference.pix2seq.tokenizer import dequantize, quantize
from reference.pix2seqv2.prompt import as_row, body_of, check_size, read_box_prompt, task_prompt
from reference.pix2seqv2.vocab import TaskVocabulary

VISIBLE = 2


def as_keypoints(keypoints) -> np.ndarray:
    """COCO keypoints (flat 3K or (K, 3)) -> (K, 3) float64; bad input raises ValueError."""
    kps = np.asarray(keypoints, dtype=np.float64)
    if kps.size % 3:
        raise ValueError(f"keypoints has {kps.size} numbers: expected (x, y, v) triples")
    kps = kps.reshape(-1, 3)  # (K, 3)
    bad_v = np.flatnonzero(~np.isin(kps[:, 2], (0, 1, 2)))
    if bad_v.size:
        raise ValueError(f"keypoints[{bad_v[0]}] has visibility {kps[bad_v[0], 2]}: expected 0, 1 or 2")
    labelled = kps[:, 2] > 0
    if not np.isfinite(kps[labelled, :2]).all():
        raise ValueError("a labelled keypoint has a non-finite coordinate")
    return kps


def encode_keypoints(vocab: TaskVocabulary, box, label: int, keypoints, width: float, height: float) -> list[int]:
    """One instance -> [KPT, x0, y0, x1, y1, class, (x, y) * K, EOS]; v = 0 -> (INVISIBLE, INVISIBLE)."""
    check_size(width, height)
    prompt = task_prompt(vocab, "keypoint", box, label, width, height)
    kps = as_keypoints(keypoints)
    if len(prompt) + 2 * len(kps) + 1 > vocab.max_len:
        raise ValueError(f"{len(kps)} keypoints do not fit max_len={vocab.max_len}")
    xy = np.nan_to_num(kps[:, :2] / np.array([width, height], np.float64))
    pairs = quantize(xy, vocab.num_bins)  # (K, 2), clamped to the image
    pairs[kps[:, 2] == 0] = vocab.invisible
    return [*prompt, *pairs.reshape(-1).tolist(), vocab.eos]


def decode_keypoints(vocab: TaskVocabulary, tokens, width: float, height: float,
                     num_keypoints: int | None = None) -> dict:
    """A row -> {"box": (4,) or None, "label": int or None, "keypoints": (K, 3) float (x, y, v)}.

    Never raises on tokens: pairs are read from position 6 to the first EOS (or the end); a pair of
    two coordinate tokens is a visible keypoint (v = 2), any other pair is not labelled (0, 0, 0).
    With `num_keypoints` the result is cut or padded (with unlabelled keypoints) to exactly K rows.
    """
    check_size(width, height)
    if num_keypoints is not None and num_keypoints < 0:
        raise ValueError(f"num_keypoints={num_keypoints} must be >= 0")
    row = as_row(tokens)
    box, label = read_box_prompt(vocab, row, width, height)
    body = body_of(vocab, row, vocab.prompt_length("keypoint"))
    pairs = body[: body.size // 2 * 2].reshape(-1, 2)  # (K, 2)
    if num_keypoints is not None:
        pairs = np.concatenate([pairs[:num_keypoints],
                                np.full((max(0, num_keypoints - len(pairs)), 2), vocab.invisible, np.int64)])
    visible = vocab.is_coord(pairs).all(axis=1)
    out = np.zeros((len(pairs), 3), np.float64)
    out[visible, :2] = dequantize(pairs[visible], vocab.num_bins) * np.array([width, height], np.float64)
    out[visible, 2] = VISIBLE
    return {"box": box, "label": label, "keypoints": out}
