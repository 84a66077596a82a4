"""Invariants of table assembly and evaluation: the set of images evaluated is the ground truth's,
the order of images does not matter, perfect predictions score exactly 1.0, nothing is mutated."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.strategies import coco_ground_truth, perfect_model_rows, run_pipeline

pytestmark = pytest.mark.pix2seq


@settings(max_examples=20)  # each example runs COCOeval
@given(data=st.data())
def test_perfect_stand_in_model_scores_exactly_one(api, data):
    """End to end through encode -> collate -> postprocess -> table -> evaluate: mAP 1.0 (to pycocotools'
    own rounding: its precision is tp / (tp + fp + eps), so a perfect AP reads 1 - 2e-16)."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes), label="gt")
    _, metrics = run_pipeline(api, gt)
    if gt["annotations"]:
        assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
        assert metrics["AP50"] == pytest.approx(1.0, abs=1e-12)
    else:
        assert metrics["AP"] is None or metrics["AP"] <= 0.0  # no GT at all: AP undefined


@settings(max_examples=20)  # each example runs COCOeval
@given(data=st.data())
def test_images_without_predictions_stay_in_the_evaluation(api, data):
    """Dropping the predictions of one image with GT turns its objects into misses: AP50 falls below 1."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2, allow_empty_images=False))
    image_ids, tokens, probs, sizes = perfect_model_rows(api, gt)
    detections = api.postprocess(tokens, probs, sizes)
    table = api.prediction_table(image_ids[1:], detections[1:], gt)
    metrics = api.evaluate(gt, table)
    assert metrics["AR100"] < 1.0
    if "num_images" in metrics:
        assert metrics["num_images"] == len(gt["images"])


@settings(max_examples=20)  # each example runs COCOeval
@given(data=st.data())
def test_image_order_does_not_change_the_metrics(api, data):
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2), label="gt")
    image_ids, tokens, probs, sizes = perfect_model_rows(api, gt)
    probs = probs * torch.linspace(0.2, 1.0, probs.shape[1], dtype=probs.dtype)  # distinct scores, so that ties play no part
    order = data.draw(st.permutations(list(range(len(image_ids)))), label="order")
    detections = api.postprocess(tokens, probs, sizes)
    base = api.evaluate(gt, api.prediction_table(image_ids, detections, gt))
    permuted = api.evaluate(gt, api.prediction_table([image_ids[i] for i in order], [detections[i] for i in order], gt))
    assert base == permuted


@settings(max_examples=20)  # each example runs COCOeval
@given(data=st.data())
def test_evaluate_is_deterministic_and_does_not_mutate(api, data):
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes), label="gt")
    image_ids, tokens, probs, sizes = perfect_model_rows(api, gt)
    table = api.prediction_table(image_ids, api.postprocess(tokens, probs, sizes), gt)
    gt_before, table_before = copy.deepcopy(gt), table.copy(deep=True)
    first = api.evaluate(gt, table)
    assert api.evaluate(gt, table) == first
    assert gt == gt_before
    assert table.equals(table_before)


def test_empty_prediction_set_scores_zero_not_an_error(api):
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400.0,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "thing"}]}
    table = api.prediction_table([1], [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64),
                                        "scores": np.zeros(0)}], gt)
    metrics = api.evaluate(gt, table)
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0
