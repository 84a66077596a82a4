"""Published bug 1 of the Pix2Seq port: the tokenizer's max_len capped the NUMBER OF OBJECTS while
collate padded the SEQUENCE to max_len; 60 objects -> 302 tokens -> negative pad width -> RuntimeError.
A correct pipeline derives the object cap (max_len - 2) // 5 from the sequence length. Each stage is
tested on its own: the tokenizer with any object count, collate with sequences too long to fit."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from cases.strategies import CONTAINERS, DTYPES, as_container, image_size, reference_for

BUG = ("port bug 1: the object cap is not derived from the sequence length (max_len objects instead of "
       "(max_len - 2) // 5), so 60 objects give 302 tokens and collate crashes on a negative pad width")
pytestmark = pytest.mark.pix2seq


def many_objects(api, data, n: int):
    """n boxes inside a drawn (square, wide or tall) image, in a drawn container and dtype."""
    width, height = data.draw(image_size(api.num_bins), label="size")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    x0, y0 = rng.integers(0, width // 2, n), rng.integers(0, height // 2, n)
    boxes = np.stack([x0, y0, x0 + rng.integers(1, width // 2 + 1, n), y0 + rng.integers(1, height // 2 + 1, n)], 1)
    labels = rng.integers(0, api.num_classes, n)
    container, dtype = data.draw(st.sampled_from(CONTAINERS)), data.draw(st.sampled_from(DTYPES))
    return (as_container(boxes, container, dtype), as_container(labels, container, "int64"), width, height,
            boxes.astype(np.float64), labels)


def counts_around_cap(api):
    cap = (api.max_len - 2) // 5
    return st.one_of(st.integers(max(cap - 3, 2), cap + 3), st.sampled_from([60, 61, api.max_len, 2 * cap + 1]))


@pytest.mark.case(stands_for=BUG, stage="encode")
@given(data=st.data())
def test_encoded_length_fits_sequence_length(api, data):
    """The tokenizer's cap is derived from max_len: N objects give 2 + 5 * min(N, cap) <= max_len tokens."""
    cap = (api.max_len - 2) // 5
    n = data.draw(counts_around_cap(api), label="objects")
    boxes, labels, width, height, _, _ = many_objects(api, data, n)
    tokens = api.encode(boxes, labels, width, height)
    assert len(tokens) <= api.max_len, f"{n} objects -> {len(tokens)} tokens > max_len {api.max_len}"
    assert len(tokens) == 2 + 5 * min(n, cap)


@pytest.mark.case(stands_for=BUG, stage="encode")
@given(data=st.data())
def test_over_cap_keeps_the_first_objects(api, data):
    """Objects beyond the cap are dropped deterministically: the sequence holds the first min(N, cap),
    in order (read back by the reference decoder)."""
    ref, cap = reference_for(api), (api.max_len - 2) // 5
    n = data.draw(counts_around_cap(api), label="objects")
    boxes, labels, width, height, _, want = many_objects(api, data, n)
    _, got = ref.decode(list(api.encode(boxes, labels, width, height)))
    assert np.array_equal(np.asarray(got), want[: min(n, cap)])


@pytest.mark.case(stands_for=BUG, stage="collate")
@given(data=st.data(), extra=st.integers(1, 70), short=st.integers(0, 3))
def test_collate_cuts_a_too_long_sequence_to_whole_objects(api, data, extra, short):
    """A sequence of cap + extra well-formed objects (another tokenizer's output) beside short ones:
    collate keeps width max_len and the first cap objects, never a negative pad width."""
    ref, cap = reference_for(api), (api.max_len - 2) // 5
    boxes, labels, width, height, _, _ = many_objects(api, data, cap + extra)
    bodies = [ref.encode(boxes[i:i + cap], labels[i:i + cap], width, height)[1:-1] for i in range(0, cap + extra, cap)]
    too_long = [api.bos, *[t for body in bodies for t in body], api.eos]
    others = [ref.encode(boxes[:k], labels[:k], width, height) for k in range(short)]
    batch = np.asarray(api.collate([*others, too_long]))
    assert batch.shape == (short + 1, api.max_len)
    np.testing.assert_array_equal(batch[-1], np.asarray(ref.collate([too_long]))[0])
