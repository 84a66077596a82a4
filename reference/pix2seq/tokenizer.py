"""Pix2Seq tokenizer with the port's vocabulary layout (docs/design.md §3), made correct.

Layout: coordinate bins 0..num_bins-1, class tokens num_bins..num_bins+C-1, then BOS, EOS, PAD.
A sequence is [BOS, (xmin, ymin, xmax, ymax, class) * k, EOS] with k <= max_objects = (max_len-2)//5,
so that every sequence fits `max_len` tokens. Boxes go in as xyxy pixels of a (width, height) image and
come out of `decode_sequence` as xyxy normalised to [0, 1].

Quantisation: q = floor(clip(x, 0, 1) * (num_bins - 1) + 0.5), the nearest bin; dequantisation:
q / (num_bins - 1). The port floors instead, which puts every decoded coordinate up to a whole bin
below the truth (half a bin on average, a pixel at 128 bins on 128 px); rounding halves the worst
case and removes the bias. Grid coordinates (x = k / (num_bins - 1)) give the same tokens either way,
so port checkpoints decode as before. dequantise -> quantise is the identity; the round-trip error
of a coordinate is at most 1 / (2 (num_bins - 1)) of the image side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

TOKENS_PER_OBJECT = 5


@dataclass(frozen=True)
class Vocabulary:
    num_bins: int = 384  # coordinate bins (the port: 384 = image size)
    num_classes: int = 20  # C; class c has token num_bins + c
    max_len: int = 300  # sequence length including BOS and EOS

    def __post_init__(self) -> None:
        if self.num_bins < 2:
            raise ValueError(f"num_bins={self.num_bins}: need at least 2 coordinate bins")
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes}: need at least 1 class")
        if self.max_len < 2:
            raise ValueError(f"max_len={self.max_len}: a sequence holds at least BOS and EOS")

    @property
    def bos(self) -> int:
        return self.num_bins + self.num_classes

    @property
    def eos(self) -> int:
        return self.bos + 1

    @property
    def pad(self) -> int:
        return self.bos + 2

    @property
    def size(self) -> int:
        """Number of token ids (the model's output width)."""
        return self.bos + 3

    @property
    def max_objects(self) -> int:
        """Object cap derived from the sequence length: (max_len - 2) // 5."""
        return (self.max_len - 2) // TOKENS_PER_OBJECT

    def is_coord(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        return (tokens >= 0) & (tokens < self.num_bins)

    def is_class(self, tokens) -> np.ndarray:
        tokens = np.asarray(tokens)
        return (tokens >= self.num_bins) & (tokens < self.num_bins + self.num_classes)


def quantize(coords, num_bins: int) -> np.ndarray:
    """Normalised coordinates (any shape) -> nearest integer bins in [0, num_bins - 1], clipped."""
    coords = np.clip(np.asarray(coords, dtype=np.float64), 0.0, 1.0)
    return np.floor(coords * (num_bins - 1) + 0.5).astype(np.int64)


def dequantize(bins, num_bins: int) -> np.ndarray:
    """Integer bins -> normalised coordinates in [0, 1] (float64)."""
    return np.asarray(bins, dtype=np.float64) / (num_bins - 1)


def as_token_array(tokens, name: str = "tokens") -> np.ndarray:
    """Token ids (list, ndarray or tensor of an INTEGER dtype) -> int64 ndarray.

    A float or bool input is a TypeError naming `name`: 12.9 must not quietly become token 12 (a class
    token), and a float tensor of tokens is almost always probabilities passed by mistake."""
    if hasattr(tokens, "detach"):
        tokens = tokens.detach().to("cpu").numpy()
    array = np.asarray(tokens)
    if array.size == 0 and array.dtype.kind == "f":  # [] -> float64 in numpy: an empty row is fine
        return array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer token ids, got dtype {array.dtype} "
                        f"(first values {array.reshape(-1)[:4].tolist()})")
    return array.astype(np.int64)


def _validate_objects(vocab: Vocabulary, boxes, labels, width, height) -> tuple[np.ndarray, np.ndarray]:
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"image size (width={width}, height={height}) must be positive")
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4) xyxy, got {boxes.shape}")
    labels = np.asarray(labels)
    if labels.size == 0:
        labels = labels.reshape(0)
    if labels.shape != (boxes.shape[0],):
        raise ValueError(f"labels must have shape ({boxes.shape[0]},) to match boxes, got {labels.shape}")
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError(f"labels must be integers, got {labels.tolist()}")
    labels = labels.astype(np.int64)
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if bad.size:
        raise ValueError(f"boxes[{bad[0]}] = {boxes[bad[0]].tolist()} is not finite")
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.size:
        raise ValueError(f"boxes[{inverted[0]}] = {boxes[inverted[0]].tolist()} has xmax < xmin or "
                         f"ymax < ymin: boxes must be xyxy")
    out_of_range = np.flatnonzero((labels < 0) | (labels >= vocab.num_classes))
    if out_of_range.size:
        raise ValueError(f"labels[{out_of_range[0]}] = {labels[out_of_range[0]]} is outside "
                         f"[0, {vocab.num_classes})")
    return boxes, labels


def encode_objects(vocab: Vocabulary, boxes, labels, width: float, height: float) -> list[int]:
    """One image's objects -> [BOS, (x0, y0, x1, y1, class) * k, EOS], k = min(N, max_objects).

    boxes: (N, 4) xyxy pixels (int or float, list or ndarray); labels: (N,) in [0, C). Objects keep
    their given order; objects beyond the cap are dropped (the first max_objects are kept).
    """
    boxes, labels = _validate_objects(vocab, boxes, labels, width, height)
    keep = min(len(labels), vocab.max_objects)
    scale = np.array([width, height, width, height], dtype=np.float64)
    bins = quantize(boxes[:keep] / scale, vocab.num_bins)  # (k, 4)
    objects = np.concatenate([bins, (labels[:keep] + vocab.num_bins)[:, None]], axis=1)  # (k, 5)
    return [vocab.bos, *objects.reshape(-1).tolist(), vocab.eos]


def decode_sequence(vocab: Vocabulary, tokens: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Strict inverse of encode: [BOS, objects..., EOS, PAD...] -> (boxes (K,4) normalised xyxy, labels (K,)).

    Raises ValueError when the sequence is malformed: no leading BOS, no EOS, an object cut short,
    a token of the wrong kind in a slot, anything but PAD after EOS, or a box with xmax < xmin or
    ymax < ymin (encode never makes one: the error says the row was not made by a tokenizer; the
    lenient `postprocess_row` drops such boxes instead). TypeError for a float or bool `tokens`.
    """
    tokens = as_token_array(tokens).reshape(-1)
    if tokens.size == 0 or tokens[0] != vocab.bos:
        raise ValueError(f"sequence must start with BOS={vocab.bos}, got {tokens[:1].tolist()}")
    eos_at = np.flatnonzero(tokens == vocab.eos)
    if eos_at.size == 0:
        raise ValueError(f"sequence has no EOS={vocab.eos}")
    end = int(eos_at[0])
    if np.any(tokens[end + 1:] != vocab.pad):
        raise ValueError(f"only PAD={vocab.pad} may follow EOS at position {end}")
    body = tokens[1:end]
    if body.size % TOKENS_PER_OBJECT:
        raise ValueError(f"{body.size} tokens between BOS and EOS is not a multiple of {TOKENS_PER_OBJECT}")
    objects = body.reshape(-1, TOKENS_PER_OBJECT)  # (K, 5)
    coord_ok = vocab.is_coord(objects[:, :4])
    class_ok = vocab.is_class(objects[:, 4])
    if not coord_ok.all():
        k, slot = np.argwhere(~coord_ok)[0]
        raise ValueError(f"object {k} slot {slot}: token {objects[k, slot]} is not a coordinate bin")
    if not class_ok.all():
        k = int(np.flatnonzero(~class_ok)[0])
        raise ValueError(f"object {k} slot 4: token {objects[k, 4]} is not a class token")
    inverted = np.flatnonzero((objects[:, 2] < objects[:, 0]) | (objects[:, 3] < objects[:, 1]))
    if inverted.size:
        k = int(inverted[0])
        raise ValueError(f"object {k}: box tokens {objects[k, :4].tolist()} have xmax < xmin or ymax < ymin")
    return dequantize(objects[:, :4], vocab.num_bins), objects[:, 4] - vocab.num_bins
