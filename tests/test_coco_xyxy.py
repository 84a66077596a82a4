"""The xyxy statistic (bench/metrics/coco_xyxy.py): never fires on valid xywh sets, spilling or not;
catches corners given as xywh, inside the image or not. Rates on generated sets (the `evaluation`
benchmark states them on more sets)."""

import numpy as np
import pytest

from bench.datasets.coco_probes import xyxy_scenarios
from bench.metrics.coco import xyxy_evidence
from bench.metrics.coco_xyxy import check_xyxy

SCENARIOS = xyxy_scenarios(40, seed=11)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_rates_on_generated_sets(name):
    corners, sets = SCENARIOS[name]
    fired = np.array([xyxy_evidence(gt, dets).looks_xyxy for gt, dets in sets])
    if corners:
        assert fired.mean() >= 0.95, f"{name}: missed {int((~fired).sum())} of {len(sets)}"
    else:
        assert not fired.any(), f"{name}: fired on {int(fired.sum())} valid xywh sets"


def test_one_box_that_cannot_be_corners_clears_the_set():
    boxes = np.array([[10.0, 10, 50, 50], [60, 60, 20, 20]])  # the second: x1 = 20 < x0 = 60
    check = check_xyxy(boxes, np.zeros(2, np.int64), np.full((2, 2), 100.0))
    assert not check.looks_xyxy and check.valid_as_corners == 0.5 and "cannot be corners" in check.reason


def test_overlap_decides_over_the_fit_to_the_image():
    gt = np.array([[10.0, 10, 30, 30]])
    as_corners = np.array([[10.0, 10, 40, 40]])  # the object, written as corners; inside the image either way
    check = check_xyxy(as_corners, np.zeros(1, np.int64), np.array([[100.0, 100]]), gt, np.zeros(1, np.int64))
    assert check.looks_xyxy and check.mean_iou_corners == pytest.approx(1.0) and check.mean_iou_xywh < 0.6
    right = check_xyxy(gt, np.zeros(1, np.int64), np.array([[100.0, 100]]), gt, np.zeros(1, np.int64))
    assert not right.looks_xyxy


def test_without_overlap_or_sizes_it_cannot_tell():
    boxes = np.array([[60.0, 60, 95, 95]])
    unknown = check_xyxy(boxes, np.zeros(1, np.int64), np.full((1, 2), np.nan))
    assert not unknown.looks_xyxy and "no ground truth overlap nor image size" in unknown.reason
    known = check_xyxy(boxes, np.zeros(1, np.int64), np.array([[100.0, 100]]))
    assert known.looks_xyxy and known.spill_xywh == 1.0 and known.spill_corners == 0.0
