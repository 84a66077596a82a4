"""Default-mode COCO evaluation equals a plain pycocotools call to 1e-12, on both backends.

The peer is written out here as a user would call it: COCO() + loadRes(copies) + COCOeval(iouType)
evaluate / accumulate / summarize, per-class AP = mean of precision[:, :, k, area all, last maxDets] > -1.
Probes: bench/datasets/coco_probes.py (seeded) and hypothesis scenes, with score ties (clipped to 1.0,
rounded to 1 or 2 decimals), boxes spilling past the edge, crowd, > 100 detections per image and per
category, string ids, missing image sizes; masks and keypoints.
"""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from bench.datasets.coco_probes import (as_corners, cap_probe, detection_probe, in_image_corners_probe, with_string_ids,
                                        without_sizes)
from bench.metrics.coco import CocoInputWarning, evaluate_detections
from bench.metrics.coco_peer import direct_call

TOL = 1e-12


def pycocotools_direct(gt, dets, iou_type="bbox", sigmas=None):
    """(stats (n,), per-class AP list) of a plain pycocotools call on copies of the inputs."""
    return direct_call(gt, dets, iou_type, sigmas)


def assert_parity(gt, dets, iou_type="bbox", sigmas=None, backends=("pycocotools", "faster")):
    """Both backends of the harness equal the direct call; returns the largest difference seen. (The direct
    call crashes on an empty list, loadRes([]): the harness's zeros are tested in test_coco_eval.py.)"""
    assert dets, "the direct call cannot take an empty list"
    stats, per_class = pycocotools_direct(gt, dets, iou_type, sigmas)
    worst = 0.0
    for backend in backends:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = evaluate_detections(gt, dets, iou_type=iou_type, backend=backend, kpt_oks_sigmas=sigmas)
        ours = np.array([-1.0 if v is None else v for v in r.stats.values()])
        assert ours.shape == stats.shape
        worst = max(worst, float(np.abs(ours - stats).max()))
        assert np.abs(ours - stats).max() <= TOL, (backend, ours - stats)
        for mine, theirs in zip(r.per_class_ap.values(), per_class):
            assert (mine is None) == (theirs is None)
            if mine is not None:
                worst = max(worst, abs(mine - theirs))
                assert abs(mine - theirs) <= TOL, backend
    return worst


@pytest.mark.parametrize("scores", ["float", "clip", "round1", "round2"])
def test_generated_probe_with_ties_spills_and_crowd(scores):
    """The issue's probes: ties (clipped / rounded), 5% of the boxes past the edge, crowd; the old
    harness re-ordered tied detections by content (per-class AP off by up to 3e-3 with 1 decimal)."""
    gt, dets = detection_probe(40, per_image=100, num_categories=10, crowd=0.05, seed=3, scores=scores)
    assert_parity(gt, dets)


def test_more_than_100_detections_per_image_and_category():
    gt, dets = detection_probe(6, per_image=260, num_categories=2, crowd=0.05, seed=4, scores="round2")
    per_pair = np.unique([(d["image_id"], d["category_id"]) for d in dets], axis=0, return_counts=True)[1]
    assert per_pair.max() > 100
    assert_parity(gt, dets)


def test_string_image_ids_are_scored_as_pycocotools_orders_them():
    """String ids sort as strings ('img10' < 'img2'), which decides the order of tied detections across
    images: the number differs from the integer-id set's, and the harness follows pycocotools."""
    gt, dets = with_string_ids(*detection_probe(12, per_image=60, num_categories=3, seed=5, scores="round1"))
    assert_parity(gt, dets)
    with pytest.warns(CocoInputWarning, match="image ids are strings"):
        evaluate_detections(gt, dets)
    with pytest.raises(ValueError, match="image ids are strings.*strict mode"):
        evaluate_detections(gt, dets, strict=True)


def test_images_without_sizes_are_scored():
    gt, dets = detection_probe(10, per_image=50, num_categories=4, seed=6)
    gt = without_sizes(gt, share=0.5, seed=1)
    assert_parity(gt, dets)
    with pytest.warns(CocoInputWarning, match="lack a usable width/height"):
        evaluate_detections(gt, dets)


def test_spilling_xywh_set_is_accepted_without_an_xyxy_warning():
    """The issue's refusal: the old harness rejected this set ('boxes look like xyxy (2145 boxes
    affected)' at 5000 images; 500 here); the boxes are valid xywh that pass the image edge."""
    gt, dets = detection_probe(500, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CocoInputWarning)
        r = evaluate_detections(gt, dets, backend="faster")
    assert r.xyxy is not None and not r.xyxy.looks_xyxy and r.num_predictions == len(dets)


def test_cap_probe_scores_one_by_default_and_0505_with_the_challenge_cap():
    gt, dets = cap_probe()
    assert_parity(gt, dets)
    assert evaluate_detections(gt, dets).stats["AP"] == pytest.approx(1.0, abs=TOL)
    capped = evaluate_detections(gt, dets, max_per_image=100)
    assert capped.stats["AP"] == pytest.approx(51 / 101, abs=TOL) and capped.num_capped == 1


def test_in_image_corners_keep_pycocotools_number_and_warn():
    """Corners given as xywh that stay inside the image: the old harness scored them silently (0.728)."""
    gt, dets = in_image_corners_probe()
    assert_parity(gt, dets)
    with pytest.warns(CocoInputWarning, match="look like xyxy corners"):
        r = evaluate_detections(gt, dets)
    assert r.xyxy.looks_xyxy and 0.5 < r.stats["AP"] < 0.9
    fixed = [{**d, "bbox": [d["bbox"][0], d["bbox"][1], d["bbox"][2] - d["bbox"][0], d["bbox"][3] - d["bbox"][1]]}
             for d in dets]
    assert evaluate_detections(gt, fixed).stats["AP"] == pytest.approx(1.0, abs=TOL)


def test_corners_of_a_spilling_probe_are_flagged():
    gt, dets = detection_probe(30, per_image=40, num_categories=5, seed=8, spill=0.0)
    with pytest.warns(CocoInputWarning, match="look like xyxy corners"):
        assert evaluate_detections(gt, as_corners(dets)).xyxy.looks_xyxy


@st.composite
def box_scenes(draw):
    """Small bbox scenes: crowd, empty images, spills, duplicates, ties, unsorted arbitrary ids."""
    images, anns, dets = [], [], []
    ids = draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=5, unique=True))
    for image_id in ids:
        w, h = draw(st.integers(40, 200)), draw(st.integers(40, 200))
        images.append({"id": image_id, "width": w, "height": h})
        for _ in range(draw(st.integers(0, 4))):
            x, y = draw(st.integers(0, w - 4)), draw(st.integers(0, h - 4))
            bw, bh = draw(st.integers(2, w - x)), draw(st.integers(2, h - y))
            anns.append({"id": draw(st.integers(1, 10**6)) * 10 + len(anns), "image_id": image_id,
                         "category_id": draw(st.sampled_from([3, 7])), "bbox": [x, y, bw, bh],
                         "area": float(bw * bh) * draw(st.sampled_from([1.0, 0.6])),
                         "iscrowd": int(draw(st.integers(0, 7)) == 0)})
            for _ in range(draw(st.integers(0, 2))):
                j = draw(st.integers(-3, 3))
                dets.append({"image_id": image_id, "category_id": anns[-1]["category_id"],
                             "bbox": [max(0, x + j), y, bw + draw(st.integers(0, 40)), bh]})
        for _ in range(draw(st.integers(0, 3))):
            x, y = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
            dets.append({"image_id": image_id, "category_id": draw(st.sampled_from([3, 7])),
                         "bbox": [x, y, draw(st.integers(1, w)), draw(st.integers(1, h))]})
    for d in dets:
        d["score"] = draw(st.sampled_from([0.25, 0.5, 1.0]))
    return {"images": images, "annotations": anns, "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]}, dets


@settings(max_examples=40, deadline=None)
@given(box_scenes())
def test_hypothesis_bbox_scenes(scene):
    assume(scene[1])
    assert_parity(*scene)


def _mask_rle(mask):
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_hypothesis_segm_scenes(data):
    """Polygon and RLE ground truth (crowd as RLE), RLE detections: jittered or random rectangles."""
    images, anns, dets = [], [], []
    for i in range(data.draw(st.integers(1, 3))):
        w, h = data.draw(st.integers(20, 60)), data.draw(st.integers(20, 60))
        images.append({"id": i + 1, "width": w, "height": h})
        for _ in range(data.draw(st.integers(0, 3))):
            x0, y0 = data.draw(st.integers(0, w - 6)), data.draw(st.integers(0, h - 6))
            x1, y1 = data.draw(st.integers(x0 + 3, w)), data.draw(st.integers(y0 + 3, h))
            crowd = data.draw(st.integers(0, 5)) == 0
            mask = np.zeros((h, w), bool)
            mask[y0:y1, x0:x1] = True
            seg = _mask_rle(mask) if crowd or data.draw(st.booleans()) else [[x0, y0, x1, y0, x1, y1, x0, y1]]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "segmentation": seg,
                         "area": float(mask.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": int(crowd)})
            for _ in range(data.draw(st.integers(0, 2))):
                j = data.draw(st.integers(-2, 2))
                m = np.zeros((h, w), bool)
                m[max(0, y0 + j):y1, x0:max(x0 + 1, x1 + j)] = True
                dets.append({"image_id": i + 1, "category_id": 1, "segmentation": _mask_rle(m)})
        for _ in range(data.draw(st.integers(0, 2))):
            m = np.zeros((h, w), bool)
            a, b = data.draw(st.integers(0, h - 2)), data.draw(st.integers(0, w - 2))
            m[a:a + 5, b:b + 7] = True
            dets.append({"image_id": i + 1, "category_id": 1, "segmentation": _mask_rle(m)})
    for d in dets:
        d["score"] = data.draw(st.sampled_from([0.5, 1.0]))
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}]}
    assume(dets)
    assert_parity(gt, dets, iou_type="segm")


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_hypothesis_keypoint_scenes(data):
    images, anns, dets = [], [], []
    for i in range(data.draw(st.integers(1, 4))):
        images.append({"id": i + 1, "width": 120, "height": 100})
        for _ in range(data.draw(st.integers(0, 3))):
            x, y = data.draw(st.integers(0, 60)), data.draw(st.integers(0, 50))
            kps = [x + 5, y + 5, 2, x + 40, y + 10, data.draw(st.sampled_from([0, 1, 2])), x + 20, y + 40, 2]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x, y, 50, 45],
                         "area": float(data.draw(st.integers(500, 12000))), "keypoints": kps,
                         "num_keypoints": sum(1 for v in kps[2::3] if v > 0),
                         "iscrowd": int(data.draw(st.integers(0, 9)) == 0)})
            if data.draw(st.booleans()):
                j = data.draw(st.integers(-3, 3))
                dets.append({"image_id": i + 1, "category_id": 1,
                             "keypoints": [v + (j if k % 3 != 2 else 0) for k, v in enumerate(kps)]})
        for _ in range(data.draw(st.integers(0, 2))):
            x, y = data.draw(st.integers(0, 100)), data.draw(st.integers(0, 80))
            dets.append({"image_id": i + 1, "category_id": 1, "keypoints": [x, y, 1, x + 10, y, 1, x, y + 10, 1]})
    for d in dets:
        d["score"] = data.draw(st.sampled_from([0.5, 1.0]))
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    assume(dets)
    assert_parity(gt, dets, iou_type="keypoints", sigmas=[0.05, 0.08, 0.1])
