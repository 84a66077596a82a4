"""Invariants of the tokenizer (encode), the strict decoder and collate that any correct Pix2Seq pipeline
holds, each stage fed reference-made or hostile inputs: square, wide and tall images, int / float32 /
float64 boxes in lists, ndarrays and tensors, every grid position."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.strategies import CONTAINERS, DTYPES, as_container, every_grid_position, hostile_objects, reference_for

pytestmark = pytest.mark.pix2seq


def objects(api, **kw):
    return hostile_objects(api.num_bins, api.num_classes, **kw)


@pytest.mark.case(stands_for="round trip: decoded boxes lie within one bin of the input on each axis "
                  "(x by the width, y by the height), whatever the box dtype and container", stage="encode")
@given(data=st.data())
def test_round_trip_within_one_bin(api, data):
    boxes, labels, width, height, want, want_labels = data.draw(objects(api), label="objects")
    ref = reference_for(api)
    got_boxes, got_labels = ref.decode(list(api.encode(boxes, labels, width, height)))
    assert np.array_equal(np.asarray(got_labels), want_labels)
    scale = np.array([width, height, width, height], np.float64)
    err = np.abs(np.asarray(got_boxes, np.float64) * scale - want)
    assert np.all(err <= scale / (api.num_bins - 1) + 1e-9), f"error in pixels {err.max(axis=0)} on {width}x{height}"


@pytest.mark.case(stands_for="quantisation: every grid position (image side a multiple of num_bins - 1) "
                  "encodes to its own bin exactly (a truncating quantiser puts a few positions one bin low)",
                  stage="encode")
@pytest.mark.parametrize("scale", [(1, 1), (2, 1), (1, 3)], ids=["square", "wide", "tall"])
def test_every_grid_position_round_trips_exactly(api, scale):
    ref, cap = reference_for(api), (api.max_len - 2) // 5
    width, height = (api.num_bins - 1) * scale[0], (api.num_bins - 1) * scale[1]
    boxes = every_grid_position(api.num_bins, *scale)
    wrong = []
    for start in range(0, len(boxes), cap):
        chunk = boxes[start:start + cap]
        got, _ = ref.decode(list(api.encode(chunk, np.zeros(len(chunk), np.int64), width, height)))
        got = np.asarray(got, np.float64) * np.array([width, height, width, height])
        wrong += [(chunk[i].tolist(), got[i].round(6).tolist()) for i in np.flatnonzero(np.abs(got - chunk).max(1) > 1e-6)]
    assert not wrong, f"{len(wrong)} of {len(boxes)} grid boxes move on {width}x{height}, e.g. {wrong[:3]}"


@pytest.mark.case(stands_for="integer and float boxes (int64, int32, float32, float64; list, ndarray, tensor) "
                  "give the same tokens (the port normalised integer boxes in their integer dtype: all zeros)",
                  stage="encode")
@given(data=st.data(), container=st.sampled_from(CONTAINERS), dtype=st.sampled_from(DTYPES))
def test_integer_and_float_boxes_give_the_same_tokens(api, data, container, dtype):
    _, _, width, height, boxes, labels = data.draw(objects(api, grid=True), label="objects")
    want = list(api.encode(boxes, labels, width, height))
    assert list(api.encode(as_container(boxes, container, dtype), labels, width, height)) == want


@pytest.mark.case(stands_for="coordinates outside the image are clipped to bins, never class or special ids "
                  "(the port did not clip: 1.01 became a class id, -0.5 a negative id)", stage="encode")
@given(data=st.data(), overshoot=st.floats(0.01, 0.5))
def test_coordinates_outside_the_image_are_clipped_to_bins(api, data, overshoot):
    _, labels, width, height, boxes, _ = data.draw(objects(api), label="objects")
    boxes = boxes - np.array([width, height, 0, 0]) * overshoot + np.array([0, 0, width, height]) * overshoot
    tokens = np.asarray(api.encode(boxes, labels, width, height))[1:-1].reshape(-1, 5)
    assert np.all((tokens[:, :4] >= 0) & (tokens[:, :4] < api.num_bins)), tokens[:, :4].tolist()
    assert np.all((tokens[:, 4] >= api.num_bins) & (tokens[:, 4] < api.num_bins + api.num_classes))


@pytest.mark.case(stands_for="an image without objects ([] or an empty array) encodes to [BOS, EOS] (the "
                  "port indexed a 1-D empty array: IndexError)", stage="encode")
@pytest.mark.parametrize("container", ["list", "ndarray", "tensor"])
def test_image_without_objects_encodes_to_bos_eos(api, container):
    empty = {"list": ([], []), "ndarray": (np.zeros((0, 4)), np.zeros(0, np.int64)),
             "tensor": (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))}[container]
    assert list(api.encode(*empty, 640, 480)) == [api.bos, api.eos]


@pytest.mark.case(stands_for="encode is deterministic and does not modify its inputs", stage="encode")
@given(data=st.data())
def test_encode_is_deterministic_and_does_not_mutate(api, data):
    _, _, width, height, boxes, labels = data.draw(objects(api), label="objects")
    before = boxes.copy(), labels.copy()
    first = list(api.encode(boxes, labels, width, height))
    assert first == list(api.encode(boxes, labels, width, height))
    assert np.array_equal(boxes, before[0]) and np.array_equal(labels, before[1])


@pytest.mark.case(stands_for="decode is the exact inverse of the tokenizer's layout", stage="decode")
@given(data=st.data(), container=st.sampled_from(CONTAINERS))
def test_decode_reads_a_reference_sequence_exactly(api, data, container):
    ref = reference_for(api)
    _, _, width, height, boxes, labels = data.draw(objects(api), label="objects")
    tokens = ref.encode(boxes, labels, width, height)
    want_boxes, want_labels = ref.decode(tokens)
    got_boxes, got_labels = api.decode(as_container(tokens, container, "int64"))
    assert np.array_equal(np.asarray(got_labels), want_labels)
    np.testing.assert_allclose(np.asarray(got_boxes, np.float64), want_boxes, atol=1e-9)


@pytest.mark.case(stands_for="the strict decoder rejects a token of the wrong kind in a slot", stage="decode")
@given(data=st.data(), slot=st.integers(0, 4))
def test_decode_rejects_a_token_of_the_wrong_kind(api, data, slot):
    ref = reference_for(api)
    _, _, width, height, boxes, labels = data.draw(objects(api), label="objects")
    tokens = ref.encode(boxes, labels, width, height)
    k = data.draw(st.integers(0, len(labels) - 1), label="object")
    tokens[1 + 5 * k + slot] = api.num_bins if slot < 4 else 0  # a class where a coordinate belongs, or vice versa
    with pytest.raises(ValueError):
        api.decode(tokens)


@pytest.mark.case(stands_for="collate: row i of a batch equals collate of sequence i alone", stage="collate")
@settings(max_examples=25)
@given(data=st.data())
def test_collate_rows_do_not_depend_on_the_batch(api, data):
    ref = reference_for(api)
    batch = data.draw(st.lists(objects(api, min_objects=0), min_size=2, max_size=5), label="batch")
    sequences = [ref.encode(b, lab, w, h) for _, _, w, h, b, lab in batch]
    rows = np.asarray(api.collate(sequences))
    for i, seq in enumerate(sequences):
        np.testing.assert_array_equal(rows[i], np.asarray(api.collate([seq]))[0])


@pytest.mark.case(stands_for="collate: fixed width max_len, the sequence then one EOS and only PAD after it",
                  stage="collate")
@settings(max_examples=25)
@given(data=st.data())
def test_collate_mixed_batch_has_fixed_width_and_one_eos_per_row(api, data):
    ref = reference_for(api)
    batch = data.draw(st.lists(objects(api, min_objects=0, max_objects=8), min_size=1, max_size=5), label="batch")
    sequences = [ref.encode(b, lab, w, h) for _, _, w, h, b, lab in batch]
    rows = np.asarray(api.collate(sequences))
    assert rows.shape == (len(sequences), api.max_len)
    for row, seq in zip(rows, sequences):
        assert row[: len(seq)].tolist() == list(seq)
        assert np.all(row[len(seq):] == api.pad)
