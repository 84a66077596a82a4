"""Generated token rows -> detections, one row at a time and never raising on what a model emits.

Fixes the port's bug 2 (an empty detection [BOS, EOS] crashed decode and lost the whole batch).
Rules for a row (BOS first, as the generator returns it):
- the objects are read from position 1 up to the first EOS, or to the row's end when there is none;
- only whole groups of 5 count; a trailing partial group (EOS misaligned, or no EOS) is ignored;
- a group with a non-coordinate token in slots 0-3 or a non-class token in slot 4 is dropped;
- a box with xmax < xmin or ymax < ymin is dropped (it cannot be evaluated);
- the score of an object is the probability of its class token (the paper's definition).
Inputs are never modified. Bad input is an error naming it: float or bool tokens (TypeError),
token_probs of another shape than the tokens, image sizes that are not positive finite numbers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from reference.pix2seq.tokenizer import TOKENS_PER_OBJECT, Vocabulary, as_token_array, dequantize


def empty_detection() -> dict[str, np.ndarray]:
    return {"boxes": np.zeros((0, 4), np.float64), "labels": np.zeros((0,), np.int64),
            "scores": np.zeros((0,), np.float64)}


def _as_numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu").numpy()
    return np.array(x, dtype=dtype, copy=True)


def check_size(size, name: str = "size") -> tuple[float, float]:
    """(width, height) -> floats; anything but two positive finite numbers raises ValueError naming `name`."""
    try:
        width, height = (float(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} = {size!r} must be (width, height)") from None
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"{name} = ({width}, {height}): width and height must be positive finite numbers")
    return width, height


def postprocess_row(vocab: Vocabulary, tokens, probs, size: tuple[float, float]) -> dict[str, np.ndarray]:
    """One row: tokens (T,), probs (T,) probability of each token, size (width, height) -> detection."""
    tokens = as_token_array(tokens).reshape(-1)
    probs = _as_numpy(probs, np.float64).reshape(-1)
    width, height = check_size(size)
    if tokens.shape != probs.shape:
        raise ValueError(f"tokens {tokens.shape} and token_probs {probs.shape} must have the same shape")
    start = 1 if tokens.size and tokens[0] == vocab.bos else 0
    eos_at = np.flatnonzero(tokens[start:] == vocab.eos)
    end = start + int(eos_at[0]) if eos_at.size else tokens.size
    count = (end - start) // TOKENS_PER_OBJECT
    if count == 0:
        return empty_detection()
    span = slice(start, start + count * TOKENS_PER_OBJECT)
    objects = tokens[span].reshape(count, TOKENS_PER_OBJECT)  # (K, 5)
    object_probs = probs[span].reshape(count, TOKENS_PER_OBJECT)  # (K, 5)
    valid = vocab.is_coord(objects[:, :4]).all(axis=1) & vocab.is_class(objects[:, 4])
    boxes = dequantize(objects[:, :4], vocab.num_bins) * np.array([width, height, width, height], np.float64)
    valid &= (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])
    return {"boxes": boxes[valid], "labels": objects[valid, 4] - vocab.num_bins,
            "scores": object_probs[valid, 4]}


def postprocess_rows(vocab: Vocabulary, tokens, token_probs, sizes: Sequence[tuple[float, float]]
                     ) -> list[dict[str, np.ndarray]]:
    """tokens (B, T) long, token_probs (B, T) float, sizes [(width, height)] * B -> B detections.

    Each detection: boxes (K, 4) float xyxy pixels, labels (K,) int in [0, C), scores (K,) float.
    """
    tokens = as_token_array(tokens)
    token_probs = _as_numpy(token_probs, np.float64)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (B, T), got {tokens.shape}")
    if token_probs.shape != tokens.shape:
        raise ValueError(f"token_probs has shape {token_probs.shape} for tokens of shape {tokens.shape}: "
                         f"one probability per token is needed")
    if len(sizes) != tokens.shape[0]:
        raise ValueError(f"sizes has {len(sizes)} entries for {tokens.shape[0]} token rows")
    for b, size in enumerate(sizes):
        check_size(size, f"sizes[{b}]")
    return [postprocess_row(vocab, tokens[b], token_probs[b], sizes[b]) for b in range(tokens.shape[0])]
