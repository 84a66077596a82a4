"""Published bug 1 of the Pix2Seq port: the tokenizer's max_len capped the NUMBER OF OBJECTS while
collate padded the SEQUENCE to max_len; 60 objects -> 302 tokens -> negative pad width -> RuntimeError.
A correct pipeline derives the object cap (max_len - 2) // 5 from the sequence length."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

pytestmark = pytest.mark.pix2seq


def random_objects(api, n: int, seed: int = 0):
    """n boxes (int xyxy) with labels inside a (num_bins-1)-pixel square image -> (boxes, labels, side)."""
    rng = np.random.default_rng(seed)
    side = api.num_bins - 1
    x0, y0 = rng.integers(0, side // 2, n), rng.integers(0, side // 2, n)
    boxes = np.stack([x0, y0, x0 + rng.integers(2, side // 2, n), y0 + rng.integers(2, side // 2, n)], 1)
    return boxes, rng.integers(0, api.num_classes, n), side


def counts_around_cap(api):
    cap = (api.max_len - 2) // 5
    return st.one_of(st.integers(max(cap - 3, 0), cap + 3),
                     st.sampled_from([60, 61, api.max_len, 2 * cap + 1]))


@given(data=st.data())
def test_collate_accepts_any_object_count(api, data):
    """Encode + collate of N objects, N around and far beyond the cap, never raises and keeps max_len."""
    n = data.draw(counts_around_cap(api), label="objects")
    boxes, labels, side = random_objects(api, n)
    batch = api.collate([api.encode(boxes, labels, side, side)])
    assert tuple(batch.shape) == (1, api.max_len)


@given(data=st.data())
def test_encoded_length_fits_sequence_length(api, data):
    """The tokenizer's cap is derived from max_len: no sequence is longer than max_len tokens."""
    n = data.draw(counts_around_cap(api), label="objects")
    boxes, labels, side = random_objects(api, n)
    assert len(api.encode(boxes, labels, side, side)) <= api.max_len


@given(data=st.data())
def test_over_cap_keeps_the_first_objects(api, data):
    """Objects beyond the cap are dropped deterministically: the row decodes to the first min(N, cap)."""
    cap = (api.max_len - 2) // 5
    n = data.draw(counts_around_cap(api), label="objects")
    boxes, labels, side = random_objects(api, n, seed=n)
    row = api.collate([api.encode(boxes, labels, side, side)])[0]
    _, decoded_labels = api.decode(np.asarray(row))
    assert np.array_equal(np.asarray(decoded_labels), labels[: min(n, cap)])


@given(counts=st.lists(st.integers(0, 80), min_size=1, max_size=6))
def test_mixed_batch_has_fixed_width_and_one_eos_per_row(api, counts):
    """Batches mixing empty, small and over-cap images: width max_len, one EOS per row, PAD after it."""
    sequences = []
    for i, n in enumerate(counts):
        boxes, labels, side = random_objects(api, n, seed=i)
        sequences.append(api.encode(boxes, labels, side, side))
    batch = np.asarray(api.collate(sequences))
    assert batch.shape == (len(counts), api.max_len)
    for row in batch:
        eos_at = np.flatnonzero(row == api.eos)
        assert len(eos_at) == 1
        assert np.all(row[eos_at[0] + 1:] == api.pad)
