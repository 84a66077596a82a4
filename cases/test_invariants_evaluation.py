"""Invariants of evaluation: the set of images evaluated is the ground truth's, the order of rows does
not matter, perfect predictions score exactly 1.0, nothing is mutated. Every table is made by the
reference from the ground truth's own objects, so only `evaluate` is tested, and only from AP50 (what a
VOC-style mAP@0.5 gives); AP is checked too where the implementation reports it."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cases.strategies import coco_ground_truth, reference_for, reference_table

pytestmark = pytest.mark.pix2seq
NEEDS = " (needs AP50)"


def ap50(metrics) -> float:
    if "AP50" not in metrics:
        pytest.fail(f"evaluate returned no 'AP50' (keys: {sorted(metrics)}): the cases need at least AP50, "
                    f"COCO AP at IoU 0.5 or a VOC-style mAP@0.5", pytrace=False)
    return metrics["AP50"]


@pytest.mark.case(stands_for="perfect predictions score exactly 1.0" + NEEDS, stage="evaluate")
@settings(max_examples=20)  # each example runs an evaluation
@given(data=st.data())
def test_perfect_predictions_score_exactly_one(api, data):
    """To pycocotools' own rounding: its precision is tp / (tp + fp + eps), so a perfect AP reads 1 - 2e-16."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, grid=False), label="gt")
    metrics = api.evaluate(gt, reference_table(reference_for(api), gt))
    assert ap50(metrics) == pytest.approx(1.0, abs=1e-12)
    if metrics.get("AP") is not None:
        assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.case(stands_for="images without predictions stay in the evaluation: their objects are misses "
                  "(the port restricted the ground truth to the predicted images)" + NEEDS, stage="evaluate")
@settings(max_examples=20)
@given(data=st.data())
def test_images_without_predictions_stay_in_the_evaluation(api, data):
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2, grid=False), label="gt")
    ids = [im["id"] for im in gt["images"]]
    dropped = data.draw(st.sampled_from(ids), label="image without predictions")
    metrics = api.evaluate(gt, reference_table(reference_for(api), gt, [i for i in ids if i != dropped]))
    assert ap50(metrics) < 1.0 - 1e-6, f"AP50 {metrics['AP50']} although image {dropped}'s objects were all missed"
    if "num_images" in metrics:
        assert metrics["num_images"] == len(ids)


@pytest.mark.case(stands_for="the order of the table's rows does not change the metrics (distinct scores)"
                  + NEEDS, stage="evaluate")
@settings(max_examples=20)
@given(data=st.data())
def test_row_order_does_not_change_the_metrics(api, data):
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2, grid=False), label="gt")
    rng = np.random.default_rng(len(gt["annotations"]))
    table = reference_table(reference_for(api), gt, scores=lambda i, n: rng.uniform(0.05, 1.0, n))
    table = table.drop(index=table.index[:: 3])  # some misses, so that the order could matter
    order = data.draw(st.permutations(list(range(len(table)))), label="row order")
    base, permuted = api.evaluate(gt, table), api.evaluate(gt, table.iloc[order].reset_index(drop=True))
    assert ap50(permuted) == pytest.approx(ap50(base), abs=1e-12)
    assert {k: v for k, v in permuted.items() if v is not None} == pytest.approx(
        {k: v for k, v in base.items() if v is not None}, abs=1e-12)


@pytest.mark.case(stands_for="evaluate is deterministic and does not modify the ground truth or the table",
                  stage="evaluate")
@settings(max_examples=20)
@given(data=st.data())
def test_evaluate_is_deterministic_and_does_not_mutate(api, data):
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, grid=False), label="gt")
    table = reference_table(reference_for(api), gt)
    gt_before, table_before = copy.deepcopy(gt), table.copy(deep=True)
    first = api.evaluate(gt, table)
    assert api.evaluate(gt, table) == first
    assert gt == gt_before
    assert table.equals(table_before)


@pytest.mark.case(stands_for="an empty prediction set scores 0, not an error" + NEEDS, stage="evaluate")
def test_empty_prediction_set_scores_zero_not_an_error(api):
    gt = {"images": [{"id": 1, "width": 100, "height": 80}, {"id": 2, "width": 60, "height": 90}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400.0,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 50, 30, 30], "area": 900.0,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "thing"}]}
    metrics = api.evaluate(gt, reference_table(reference_for(api), gt, image_ids=[]))
    assert ap50(metrics) == 0.0
    if metrics.get("AP") is not None:
        assert metrics["AP"] == 0.0
