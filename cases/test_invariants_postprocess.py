"""Invariants of postprocess: whatever a model emits, each row gives a defined result on its own, labels
stay in [0, C), scores are the class-token probabilities, boxes come back in pixels of their own image,
and inputs are not modified. Garbage rows hold special tokens at structured positions but never the
empty row [BOS, EOS] (that is bug 2's case), so each case sees only its own stage's behaviour."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from cases.strategies import coco_ground_truth, garbage_row, image_size, reference_for, reference_rows

pytestmark = pytest.mark.pix2seq


def garbage_batch(api, data, rows, width):
    specials = {"start": api.bos, "eos": api.eos, "pad": api.pad, "bos": api.bos}
    coords, classes = range(api.num_bins), range(api.num_bins, api.num_bins + api.num_classes)
    batch = [data.draw(garbage_row(width, coords, classes, specials, allow_empty=False), label=f"row {r}")
             for r in range(rows)]
    sizes = [data.draw(image_size(api.num_bins), label=f"size {r}") for r in range(rows)]
    return torch.tensor(batch, dtype=torch.long), sizes


@pytest.mark.case(stands_for="postprocess never raises on what a model emits and keeps labels in [0, C) "
                  "(the port took any token as a coordinate or class)", stage="postprocess")
@given(data=st.data(), rows=st.integers(1, 4), width=st.integers(3, 40))
def test_garbage_rows_never_raise_and_labels_stay_in_range(api, data, rows, width):
    tokens, sizes = garbage_batch(api, data, rows, width)
    probs = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(width))
    detections = api.postprocess(tokens, probs, sizes)
    assert len(detections) == rows
    for det in detections:
        labels = np.asarray(det["labels"])
        assert np.all((labels >= 0) & (labels < api.num_classes)), labels.tolist()
        assert len(det["boxes"]) == len(labels) == len(det["scores"])


@pytest.mark.case(stands_for="postprocess: each row's detection is independent of the other rows",
                  stage="postprocess")
@given(data=st.data())
def test_each_row_is_independent_of_the_others(api, data):
    """Well-formed rows of different lengths (PAD only after EOS), so that a bug reading garbage (the garbage-row
    cases) cannot stand in for a coupling of the rows."""
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_objects=1), label="gt")
    _, tokens, _, sizes = reference_rows(ref, gt)
    probs = torch.rand(tokens.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(len(sizes)))
    together = api.postprocess(tokens, probs, sizes)
    for r in range(len(sizes)):
        (alone,) = api.postprocess(tokens[r:r + 1], probs[r:r + 1], sizes[r:r + 1])
        for key in ("boxes", "labels", "scores"):
            np.testing.assert_array_equal(np.asarray(together[r][key]), np.asarray(alone[key]))


@pytest.mark.case(stands_for="an object's score is the probability of its class token, exactly (the port "
                  "rounded scores to 3 decimals)", stage="postprocess")
@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_score_is_the_class_token_probability(api, data, dtype):
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes), label="gt")
    _, tokens, _, sizes = reference_rows(ref, gt)
    probs = torch.rand(tokens.shape, dtype=dtype, generator=torch.Generator().manual_seed(len(sizes)))
    for row, det in enumerate(api.postprocess(tokens, probs, sizes)):
        class_positions = 1 + 5 * np.arange(len(det["scores"])) + 4
        np.testing.assert_allclose(np.asarray(det["scores"], np.float64), probs[row, class_positions].double().numpy(),
                                   rtol=1e-6)


@pytest.mark.case(stands_for="boxes come back in pixels of their own image, x by its width, y by its height",
                  stage="postprocess")
@given(data=st.data())
def test_boxes_are_pixels_of_their_own_image(api, data):
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes), label="gt")
    image_ids, tokens, probs, sizes = reference_rows(ref, gt)
    for got, want in zip(api.postprocess(tokens, probs, sizes), ref.postprocess(tokens, probs, sizes)):
        np.testing.assert_array_equal(np.asarray(got["labels"]), want["labels"])
        np.testing.assert_allclose(np.asarray(got["boxes"], np.float64).reshape(-1, 4), want["boxes"], atol=1e-6)


@pytest.mark.case(stands_for="postprocess does not modify its inputs (a public Pix2SeqV2 wrote EOS into the "
                  "caller's last column)", stage="postprocess")
@given(data=st.data(), rows=st.integers(1, 3), width=st.integers(3, 30))
def test_inputs_are_not_modified(api, data, rows, width):
    tokens, sizes = garbage_batch(api, data, rows, width)
    probs = torch.rand(tokens.shape)
    tokens_before, probs_before = tokens.clone(), probs.clone()
    api.postprocess(tokens, probs, sizes)
    assert torch.equal(tokens, tokens_before) and torch.equal(probs, probs_before)


@pytest.mark.case(stands_for="a row cut mid-object (no EOS, or EOS off an object boundary) keeps its whole "
                  "objects (the port dropped such a row entirely)", stage="postprocess")
@given(data=st.data(), cut=st.integers(1, 4), eos=st.booleans())
def test_truncated_row_without_eos_keeps_whole_objects(api, data, cut, eos):
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=1, max_images=1, min_objects=2),
                   label="gt")
    _, tokens, probs, sizes = reference_rows(ref, gt)
    seq = tokens[0].tolist()
    n = (seq.index(api.eos) - 1) // 5
    row = seq[: 1 + 5 * (n - 1) + cut] + ([api.eos] if eos else [])  # the last object cut short
    (det,) = api.postprocess(torch.tensor([row]), torch.ones(1, len(row)), sizes)
    (want,) = ref.postprocess(tokens, probs, sizes)
    assert len(det["labels"]) == n - 1, f"{len(det['labels'])} objects, want the {n - 1} whole ones"
    np.testing.assert_allclose(np.asarray(det["boxes"], np.float64).reshape(-1, 4), want["boxes"][: n - 1], atol=1e-6)


@pytest.mark.case(stands_for="PAD inside a row spoils only its own object: later objects keep their places "
                  "(the port removed every PAD before reading, shifting the rest)", stage="postprocess")
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.large_base_example])
def test_pad_inside_a_row_does_not_shift_later_objects(api, data):
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=1, max_images=1, min_objects=3),
                   label="gt")
    _, tokens, probs, sizes = reference_rows(ref, gt)
    n = (tokens[0].tolist().index(api.eos) - 1) // 5
    k, slot = data.draw(st.integers(0, n - 2), label="object"), data.draw(st.integers(0, 4), label="slot")
    spoiled = tokens.clone()
    spoiled[0, 1 + 5 * k + slot] = api.pad
    (det,) = api.postprocess(spoiled, probs, sizes)
    (want,) = ref.postprocess(tokens, probs, sizes)
    keep = [i for i in range(n) if i != k]
    assert np.asarray(det["labels"]).tolist() == want["labels"][keep].tolist()
    np.testing.assert_allclose(np.asarray(det["boxes"], np.float64).reshape(-1, 4), want["boxes"][keep], atol=1e-6)
