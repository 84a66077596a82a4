"""Task prompts and lenient row reading shared by the codecs.

A prompt is the task token (in place of BOS), followed for segmentation and keypoints by the box
prompt: one Pix2Seq object (xmin, ymin, xmax, ymax, class), encoded by reference.pix2seq's tokenizer.
"""

from __future__ import annotations

import numpy as np

from reference.pix2seq.postprocess import postprocess_row
from reference.pix2seq.tokenizer import as_token_array, encode_objects
from reference.pix2seqv2.vocab import BOX_PROMPT_TOKENS, TaskVocabulary


def task_prompt(vocab: TaskVocabulary, task: str, box=None, label: int | None = None,
                width: float = 1.0, height: float = 1.0) -> list[int]:
    """[task token] or [task token, x0, y0, x1, y1, class] for a box xyxy in pixels of (width, height)."""
    token = vocab.task_token(task)
    if vocab.prompt_length(task) == 1:
        return [token]
    if box is None or label is None:
        raise ValueError(f"the {task} prompt needs a box (xyxy pixels) and a label")
    seq = encode_objects(vocab.base, np.asarray(box, np.float64).reshape(1, 4), [label], width, height)
    return [token, *seq[1:-1]]


def as_row(tokens) -> np.ndarray:
    """Any 1-D token row (list, ndarray, tensor of an integer dtype; any values) -> int64 ndarray.

    A float or bool row is a TypeError (12.9 must not quietly become a class token)."""
    return as_token_array(tokens).reshape(-1)


def read_box_prompt(vocab: TaskVocabulary, row: np.ndarray, width: float, height: float
                    ) -> tuple[np.ndarray | None, int | None]:
    """(box (4,) xyxy pixels, label) from row[1:6], or (None, None) when they are not a valid object."""
    prompt = row[1:1 + BOX_PROMPT_TOKENS]
    if prompt.size < BOX_PROMPT_TOKENS:
        return None, None
    det = postprocess_row(vocab.base, np.concatenate([[vocab.bos], prompt]), np.ones(1 + prompt.size),
                          (width, height))
    if det["labels"].size == 0:
        return None, None
    return det["boxes"][0], int(det["labels"][0])


def body_of(vocab: TaskVocabulary, row: np.ndarray, start: int) -> np.ndarray:
    """row[start:] up to (without) the first EOS, or to the end when there is none."""
    body = row[start:]
    eos_at = np.flatnonzero(body == vocab.eos)
    return body[: int(eos_at[0])] if eos_at.size else body


def check_size(width: float, height: float) -> None:
    if not (np.isfinite(width) and np.isfinite(height) and width > 0 and height > 0):
        raise ValueError(f"image size (width={width}, height={height}) must be positive")
