"""Invariants of the tokenizer and collate that any correct Pix2Seq pipeline holds (no published bug
needed: these catch the ones nobody has published yet)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from cases.strategies import boxes_and_labels

pytestmark = pytest.mark.pix2seq


def grid_objects(api, max_objects=6):
    return boxes_and_labels(side=api.num_bins - 1, num_classes=api.num_classes, max_objects=max_objects)


@given(data=st.data(), scale=st.sampled_from([1, 2, 3]))
def test_round_trip_within_one_bin(api, data, scale):
    """decode(encode(boxes)) gives the same labels in order and boxes within one bin of the input."""
    boxes, labels = data.draw(grid_objects(api), label="objects")
    side = (api.num_bins - 1) * scale
    boxes = boxes * scale
    decoded_boxes, decoded_labels = api.decode(api.encode(boxes, labels, side, side))
    assert np.array_equal(np.asarray(decoded_labels), labels)
    np.testing.assert_allclose(np.asarray(decoded_boxes, np.float64) * side, boxes, atol=side / (api.num_bins - 1) + 1e-9)


@given(data=st.data())
def test_integer_and_float_boxes_give_the_same_tokens(api, data):
    boxes, labels = data.draw(grid_objects(api), label="objects")
    side = api.num_bins - 1
    assert list(api.encode(boxes.astype(np.int64), labels, side, side)) == \
        list(api.encode(boxes.astype(np.float64), labels, side, side))


@given(data=st.data(), overshoot=st.floats(0.0, 0.5))
def test_coordinates_outside_the_image_are_clipped_to_bins(api, data, overshoot):
    """Boxes reaching past the image border still encode to coordinate bins, never class or special ids."""
    boxes, labels = data.draw(grid_objects(api), label="objects")
    side = api.num_bins - 1
    boxes = boxes.astype(np.float64)
    boxes[:, :2] -= overshoot * side
    boxes[:, 2:] += overshoot * side
    tokens = np.asarray(api.encode(boxes, labels, side, side))[1:-1].reshape(-1, 5)
    assert np.all((tokens[:, :4] >= 0) & (tokens[:, :4] < api.num_bins))
    assert np.all((tokens[:, 4] >= api.num_bins) & (tokens[:, 4] < api.num_bins + api.num_classes))


@given(data=st.data())
def test_encode_is_deterministic_and_does_not_mutate(api, data):
    boxes, labels = data.draw(grid_objects(api), label="objects")
    side = api.num_bins - 1
    before = boxes.copy(), labels.copy()
    first = list(api.encode(boxes, labels, side, side))
    assert first == list(api.encode(boxes, labels, side, side))
    assert np.array_equal(boxes, before[0]) and np.array_equal(labels, before[1])


@given(data=st.data(), slot=st.integers(0, 4))
def test_decode_rejects_a_token_of_the_wrong_kind(api, data, slot):
    boxes, labels = data.draw(boxes_and_labels(api.num_bins - 1, api.num_classes, min_objects=1, max_objects=3))
    side = api.num_bins - 1
    tokens = list(api.encode(boxes, labels, side, side))
    wrong = api.num_bins if slot < 4 else 0  # a class where a coordinate belongs, or vice versa
    tokens[1 + slot] = wrong
    with pytest.raises(ValueError):
        api.decode(tokens)


@given(data=st.data())
def test_collate_rows_do_not_depend_on_the_batch(api, data):
    """Row i of collate(batch) equals collate([sequence i]) alone."""
    side = api.num_bins - 1
    objects = data.draw(st.lists(grid_objects(api, max_objects=4), min_size=1, max_size=5), label="batch")
    sequences = [api.encode(b, lab, side, side) for b, lab in objects]
    batch = np.asarray(api.collate(sequences))
    for i, seq in enumerate(sequences):
        np.testing.assert_array_equal(batch[i], np.asarray(api.collate([seq]))[0])
