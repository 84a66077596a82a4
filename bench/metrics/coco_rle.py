"""Validation of COCO run-length encodings (RLE) before pycocotools sees them.

pycocotools trusts RLE counts: a garbage string decodes to counts that do not cover the mask (the
detection then scores 0 with no error), negative counts in an uncompressed RLE raise a bare
OverflowError, and decoding counts that overrun the mask writes past its buffer. Here the counts are
decoded with numpy (the compressed format of pycocotools' maskApi.c rleFrString: 5 data bits per
character from '0', bit 0x20 = more characters follow, bit 0x10 of the last one = negative, counts from
the fourth on stored as a difference to the count two before) and checked: every count >= 0 and
their sum = height * width.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

_MAX_CHARS = 7  # 7 x 5 bits: enough for any count below 2**32


def compressed_counts(text: str) -> np.ndarray:
    """The (m,) int64 run lengths of a compressed RLE string; ValueError if it is not one."""
    codes = np.frombuffer(text.encode("latin-1"), np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        return np.zeros(0, np.int64)
    if codes.min() < 0 or codes.max() > 63:
        bad = text[int(np.flatnonzero((codes < 0) | (codes > 63))[0])]
        raise ValueError(f"character {bad!r} is not part of the compressed RLE alphabet ('0'..'o')")
    last = (codes & 0x20) == 0  # (n,) a character that ends a count
    if not last[-1]:
        raise ValueError("the string ends inside a count (its last character has the 'more' bit set)")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends - starts).max() + 1 > _MAX_CHARS:
        raise ValueError(f"a count spans more than {_MAX_CHARS} characters (over 2**32)")
    group = np.repeat(np.arange(ends.size), ends - starts + 1)  # (n,) which count each character belongs to
    position = np.arange(codes.size) - starts[group]  # (n,) index of the character within its count
    values = np.zeros(ends.size, np.int64)
    np.add.at(values, group, (codes & 0x1F) << (5 * position))
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (ends - starts + 1)[negative])
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2])  # counts[m] = x[m] + counts[m - 2] for m > 2
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def check_rle(seg: Any, name: str) -> tuple[int, int]:
    """Validate an RLE dict {'size': [h, w], 'counts': str | bytes | list}; returns (h, w).

    ValueError naming `name` when the size is not two non-negative integers, the counts do not decode,
    a count is negative or the counts do not add up to h * w."""
    if not isinstance(seg, Mapping) or "size" not in seg or "counts" not in seg:
        raise ValueError(f"{name}: segmentation must be an RLE dict with 'size' and 'counts' "
                         "(encode masks with pycocotools.mask.encode) or, for ground truth, polygons")
    try:
        h, w = (int(v) for v in seg["size"])
        if [h, w] != [float(v) for v in seg["size"]] or h < 0 or w < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{name}: RLE size must be [height, width] (two non-negative integers), "
                         f"got {seg['size']!r}") from None
    raw = seg["counts"]
    if isinstance(raw, (list, tuple, np.ndarray)):
        try:
            counts = np.asarray(raw, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: uncompressed RLE counts must be integers, got {list(raw)[:8]!r}") from None
        if not np.all(np.isfinite(counts)) or not np.all(counts == np.floor(counts)):
            raise ValueError(f"{name}: uncompressed RLE counts must be integers, got {list(raw)[:8]!r}")
    elif isinstance(raw, (str, bytes)):
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        try:
            counts = compressed_counts(text)
        except ValueError as err:
            raise ValueError(f"{name}: RLE counts {text[:40]!r} are not a compressed RLE string: {err}") from None
    else:
        raise ValueError(f"{name}: RLE counts must be a compressed string or a list of run lengths, "
                         f"got {type(raw).__name__}")
    if counts.size and counts.min() < 0:
        k = int(np.argmin(counts))
        raise ValueError(f"{name}: RLE run length #{k} is negative ({int(counts[k])}); run lengths count pixels")
    if int(counts.sum()) != h * w:
        raise ValueError(f"{name}: RLE run lengths add up to {int(counts.sum())} pixels, but its size "
                         f"{h} x {w} has {h * w} (corrupt or truncated counts)")
    return h, w
