"""Detection task: the Pix2Seq object sequence with the detection task token in place of BOS.

Encoding and reading are reference.pix2seq's (`encode_objects`, `postprocess_row`); this module only
swaps the first token.
"""

from __future__ import annotations

import numpy as np

from reference.pix2seq.postprocess import postprocess_row
from reference.pix2seq.tokenizer import encode_objects
from reference.pix2seqv2.prompt import as_row, check_size
from reference.pix2seqv2.vocab import TaskVocabulary


def encode_detection(vocab: TaskVocabulary, boxes, labels, width: float, height: float) -> list[int]:
    """boxes (N, 4) xyxy pixels, labels (N,) -> [DET, (x0, y0, x1, y1, class) * k, EOS]."""
    seq = encode_objects(vocab.base, boxes, labels, width, height)
    return [vocab.task_token("detection"), *seq[1:]]


def decode_detection(vocab: TaskVocabulary, tokens, width: float, height: float, probs=None
                     ) -> dict[str, np.ndarray]:
    """A generated row -> {"boxes" (K,4) xyxy pixels, "labels" (K,), "scores" (K,)}; never raises on tokens.

    The row may start with the detection token (or BOS); objects are read as by Pix2Seq's
    postprocess (whole groups of 5 before the first EOS, malformed groups dropped). `probs` (T,) are
    the token probabilities (score = class-token probability); without them every score is 1.
    """
    check_size(width, height)
    row = as_row(tokens)
    if row.size and row[0] == vocab.task_token("detection"):
        row = np.concatenate([[vocab.bos], row[1:]])
    probs = np.ones(row.size) if probs is None else as_probs(probs, row.size)
    return postprocess_row(vocab.base, row, probs, (width, height))


def as_probs(probs, length: int) -> np.ndarray:
    probs = np.asarray(probs.detach().cpu() if hasattr(probs, "detach") else probs, np.float64).reshape(-1)
    if probs.size != length:
        raise ValueError(f"probs has {probs.size} entries for a row of {length} tokens")
    return probs
