"""Instance segmentation task: [SEG, box prompt (5), polygon points (x, y)..., SEP, ..., EOS].

Polygons are COCO polygons (flat [x0, y0, x1, y1, ...] in pixels). Each polygon starts at a random
vertex (seeded) and keeps its orientation, so the model learns the outline, not a start convention;
polygons are separated by one separator token. At most `max_points` points (docs/design.md §3: 128) and
`vocab.max_len` tokens in all: longer outlines are thinned evenly, polygons that do not fit are
dropped (the last ones first). Decoding reads polygons back in pixels and rasterises them to COCO RLE
with pycocotools.mask.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from reference.pix2seq.tokenizer import dequantize, quantize
from reference.pix2seqv2.prompt import as_row, body_of, check_size, read_box_prompt, task_prompt
from reference.pix2seqv2.vocab import TaskVocabulary

MAX_POINTS = 128
MIN_POINTS = 3  # a polygon with fewer vertices has no area


def _as_polygons(polygons) -> list[np.ndarray]:
    """COCO polygons -> list of (P, 2) float64 arrays; bad input raises ValueError naming the polygon."""
    out = []
    for i, poly in enumerate(polygons):
        flat = np.asarray(poly, dtype=np.float64).reshape(-1)
        if flat.size % 2:
            raise ValueError(f"polygons[{i}] has {flat.size} numbers: a polygon is flat (x, y) pairs")
        if flat.size < 2 * MIN_POINTS:
            raise ValueError(f"polygons[{i}] has {flat.size // 2} points: a polygon needs at least {MIN_POINTS}")
        if not np.isfinite(flat).all():
            raise ValueError(f"polygons[{i}] has a non-finite coordinate")
        out.append(flat.reshape(-1, 2))  # (P, 2)
    return out


def _thin(points: np.ndarray, keep: int) -> np.ndarray:
    """Keep `keep` evenly spaced vertices (the first one included)."""
    if keep >= len(points):
        return points
    return points[np.floor(np.arange(keep) * len(points) / keep).astype(np.int64)]


def fit_polygons(polygons: list[np.ndarray], max_points: int, max_tokens: int) -> list[np.ndarray]:
    """Thin and drop polygons so that points <= max_points and 2*points + separators <= max_tokens."""
    kept: list[np.ndarray] = []
    for poly in polygons:  # whole polygons first, the earliest ones kept
        n = len(kept) + 1
        if MIN_POINTS * n > max_points or 2 * MIN_POINTS * n + (n - 1) > max_tokens:
            break
        kept.append(poly)
    if not kept:
        return []
    total = sum(len(p) for p in kept)
    room = min(max_points, (max_tokens - (len(kept) - 1)) // 2)  # points that fit beside the separators
    if total <= room:
        return kept
    extra = room - MIN_POINTS * len(kept)  # points beyond the minimum, shared in proportion
    share = np.array([len(p) - MIN_POINTS for p in kept], np.float64)
    add = np.floor(share * extra / share.sum()).astype(np.int64) if share.sum() else np.zeros(len(kept), np.int64)
    return [_thin(p, MIN_POINTS + int(a)) for p, a in zip(kept, add)]


def rotate_start(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same closed polygon starting at a uniformly drawn vertex."""
    return np.roll(points, -int(rng.integers(len(points))), axis=0)


def encode_segmentation(vocab: TaskVocabulary, box, label: int, polygons: Sequence, width: float, height: float,
                        seed: int | np.random.Generator | None = None, max_points: int = MAX_POINTS) -> list[int]:
    """One instance -> [SEG, x0, y0, x1, y1, class, (x, y) * P1, SEP, (x, y) * P2, ..., EOS].

    box: xyxy pixels; polygons: COCO polygons in pixels (zero polygons is allowed: no points).
    seed None keeps each polygon's given start vertex; an int or Generator picks a random start.
    """
    check_size(width, height)
    prompt = task_prompt(vocab, "segmentation", box, label, width, height)
    polys = _as_polygons(polygons)
    if seed is not None:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        polys = [rotate_start(p, rng) for p in polys]
    polys = fit_polygons(polys, max_points, vocab.max_len - len(prompt) - 1)
    body: list[int] = []
    scale = np.array([width, height], np.float64)
    for i, poly in enumerate(polys):
        if i:
            body.append(vocab.separator)
        body.extend(quantize(poly / scale, vocab.num_bins).reshape(-1).tolist())
    return [*prompt, *body, vocab.eos]


def decode_segmentation(vocab: TaskVocabulary, tokens, width: float, height: float) -> dict:
    """A row -> {"box": (4,) xyxy pixels or None, "label": int or None, "polygons": [flat list]}.

    Never raises on tokens: the body runs from position 6 to the first EOS (or the end); it is split
    at separators; in each piece the (x, y) pairs of two coordinate tokens are kept and anything else
    is skipped; pieces with fewer than 3 points are dropped. Points are bin values in pixels.
    """
    check_size(width, height)
    row = as_row(tokens)
    box, label = read_box_prompt(vocab, row, width, height)
    body = body_of(vocab, row, vocab.prompt_length("segmentation"))
    cuts = np.flatnonzero(body == vocab.separator)
    polygons = []
    for piece in np.split(body, cuts):
        piece = piece[piece != vocab.separator]
        pairs = piece[: piece.size // 2 * 2].reshape(-1, 2)  # (P, 2)
        pairs = pairs[vocab.is_coord(pairs).all(axis=1)]
        if len(pairs) >= MIN_POINTS:
            xy = dequantize(pairs, vocab.num_bins) * np.array([width, height], np.float64)
            polygons.append(xy.reshape(-1).tolist())
    return {"box": box, "label": label, "polygons": polygons}


def polygons_to_rle(polygons: Sequence, width: int, height: int) -> dict:
    """COCO polygons in pixels -> one COCO RLE {"size": [h, w], "counts": str} (their union).

    Polygons with fewer than 3 points are ignored; no polygon gives the empty mask.
    """
    check_size(width, height)
    h, w = int(round(height)), int(round(width))
    usable = [np.asarray(p, np.float64).reshape(-1).tolist() for p in polygons
              if np.asarray(p).size >= 2 * MIN_POINTS and np.asarray(p).size % 2 == 0]
    if usable:
        rle = mask_utils.merge(mask_utils.frPyObjects(usable, h, w))
    else:
        rle = mask_utils.encode(np.asfortranarray(np.zeros((h, w), np.uint8)))
    counts = rle["counts"]
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE -> (H, W) uint8 mask."""
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"]})
