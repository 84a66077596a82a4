"""Invariants of postprocess: whatever a model emits, each row gives a defined result on its own,
labels stay in [0, C), scores are the class-token probabilities, and inputs are not modified."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from cases.strategies import coco_ground_truth, perfect_model_rows

pytestmark = pytest.mark.pix2seq


def garbage_rows(api, rows: int, width: int):
    """Any token ids of the vocabulary, in any order: what an untrained model can emit. The first row is
    always the empty detection [BOS, EOS, PAD...], so every example holds one."""
    vocab = api.num_bins + api.num_classes + 3
    empty = [api.bos, api.eos] + [api.pad] * (width - 2)
    return st.lists(st.lists(st.integers(0, vocab - 1), min_size=width, max_size=width), min_size=rows - 1,
                    max_size=rows - 1).map(lambda rest: [empty[:width]] + rest)


@given(data=st.data(), rows=st.integers(1, 4), width=st.integers(2, 40))
def test_garbage_rows_never_raise_and_labels_stay_in_range(api, data, rows, width):
    tokens = torch.tensor(data.draw(garbage_rows(api, rows, width), label="tokens"), dtype=torch.long)
    probs = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(width))
    detections = api.postprocess(tokens, probs, [(640, 480)] * rows)
    assert len(detections) == rows
    for det in detections:
        labels = np.asarray(det["labels"])
        assert np.all((labels >= 0) & (labels < api.num_classes))
        assert len(det["boxes"]) == len(labels) == len(det["scores"])


@given(data=st.data(), rows=st.integers(2, 4), width=st.integers(2, 30))
def test_each_row_is_independent_of_the_others(api, data, rows, width):
    tokens = torch.tensor(data.draw(garbage_rows(api, rows, width), label="tokens"), dtype=torch.long)
    probs = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(rows))
    sizes = [(300 + r, 200 + r) for r in range(rows)]
    together = api.postprocess(tokens, probs, sizes)
    for r in range(rows):
        (alone,) = api.postprocess(tokens[r:r + 1], probs[r:r + 1], sizes[r:r + 1])
        for key in ("boxes", "labels", "scores"):
            np.testing.assert_array_equal(np.asarray(together[r][key]), np.asarray(alone[key]))


@given(data=st.data())
def test_score_is_the_class_token_probability(api, data):
    """Perfect rows with random per-token probabilities: each object's score is the probability at its
    class token (slot 4), not of a coordinate token nor an average."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, allow_empty_images=False), label="gt")
    _, tokens, _, sizes = perfect_model_rows(api, gt)
    probs = torch.rand(tokens.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(len(sizes)))
    detections = api.postprocess(tokens, probs, sizes)
    for row, det in enumerate(detections):
        class_positions = 1 + 5 * np.arange(len(det["scores"])) + 4
        np.testing.assert_allclose(np.asarray(det["scores"], np.float64), probs[row, class_positions].numpy())


@given(data=st.data(), rows=st.integers(1, 3), width=st.integers(2, 30))
def test_inputs_are_not_modified(api, data, rows, width):
    tokens = torch.tensor(data.draw(garbage_rows(api, rows, width), label="tokens"), dtype=torch.long)
    probs = torch.rand(tokens.shape)
    tokens_before, probs_before = tokens.clone(), probs.clone()
    api.postprocess(tokens, probs, [(64, 64)] * rows)
    assert torch.equal(tokens, tokens_before) and torch.equal(probs, probs_before)


@given(cut=st.integers(1, 4))
def test_truncated_row_without_eos_keeps_whole_objects(api, cut):
    """A row cut mid-object (no EOS, or EOS misaligned) yields its whole objects, never an exception."""
    side = api.num_bins - 1
    boxes = np.array([[10, 10, 50, 50], [60, 60, 90, 120]])
    seq = list(api.encode(boxes, np.array([0, 0]), side, side))
    truncated = torch.tensor([seq[: 1 + 5 + cut]])  # first object whole, second cut, no EOS
    misaligned = torch.tensor([seq[: 1 + 5 + cut] + [api.eos]])
    for tokens in (truncated, misaligned):
        (det,) = api.postprocess(tokens, torch.ones(tokens.shape), [(side, side)])
        assert len(det["labels"]) == 1
        np.testing.assert_allclose(np.asarray(det["boxes"], np.float64)[0], boxes[0], atol=1e-6)
