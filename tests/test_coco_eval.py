"""bench.metrics.coco: hand-derived values, the docs/design.md §5 pitfalls, input checks, properties
(parity with a plain pycocotools call: tests/test_coco_parity.py; tie bounds: tests/test_coco_ties.py).

Hand values: with one category, pycocotools' AP is the mean over 10 IoU thresholds of the interpolated
precision at 101 recall points; a detector that finds k of n objects with precision 1 and nothing else
scores (number of recall points <= k/n) / 101, e.g. 1 of 2 -> 51/101, 2 of 3 -> 67/101.
"""

import copy
import io
import contextlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bench.metrics.coco import (DET_STAT_NAMES, KPT_STAT_NAMES, CocoEvaluation, CocoInputWarning,
                                boxes_xywh_to_xyxy, boxes_xyxy_to_xywh, evaluate_detections)

EPS = 1e-12  # pycocotools divides by tp + fp + np.spacing(1): one TP gives 1 - 2.2e-16, not 1.0


def make_gt(boxes_per_image, size=(100, 100), cat_of=None):
    """GT dict: image i+1 holds boxes_per_image[i] (xywh); category 1 unless cat_of(i, j) says otherwise."""
    images, anns = [], []
    for i, boxes in enumerate(boxes_per_image):
        images.append({"id": i + 1, "width": size[0], "height": size[1]})
        for j, b in enumerate(boxes):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat_of(i, j) if cat_of else 1,
                         "bbox": list(b), "area": float(b[2] * b[3]), "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]}


def perfect(gt, score=1.0):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": score}
            for a in gt["annotations"]]


GT3 = make_gt([[[10, 10, 20, 20]], [[50, 50, 40, 40]], [[5, 5, 60, 60]]])  # one small, two medium objects


# ---------------------------------------------------------------- hand-derived values
@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_perfect_predictions_score_one(backend):
    r = evaluate_detections(GT3, perfect(GT3), backend=backend)
    assert isinstance(r, CocoEvaluation) and list(r.stats) == list(DET_STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "APs", "APm", "AR1", "AR10", "AR100", "ARs", "ARm"):
        assert r.stats[name] == pytest.approx(1.0, abs=EPS), name
    assert r.stats["APl"] is None and r.stats["ARl"] is None  # no large GT: -1 -> None
    assert r.per_class_ap["one"] == pytest.approx(1.0, abs=EPS) and r.per_class_ap["two"] is None
    assert (r.num_images, r.num_gt, r.num_predictions, r.num_capped, r.backend) == (3, 3, 3, 0, backend)
    assert r.table_rows()[0] == ["AP", r.stats["AP"]] and len(r.table_rows(per_class=True)) == 14


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_image_without_predictions_counts_its_objects_as_misses(backend):
    gt = make_gt([[[10, 10, 20, 20]], [[50, 50, 40, 40]]])
    r = evaluate_detections(gt, perfect(gt)[:1], backend=backend)
    assert r.stats["AP"] == pytest.approx(51 / 101, abs=EPS)  # recall points 0.00..0.50 at precision 1
    assert r.stats["AR100"] == 0.5 and r.stats["APs"] == pytest.approx(1.0, abs=EPS) and r.stats["APm"] == 0.0
    assert r.num_images == 2


def test_false_positive_ranked_first_halves_precision():
    gt = make_gt([[[10, 10, 20, 20]]])
    dets = [{"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8}]
    r = evaluate_detections(gt, dets)
    assert r.stats["AP"] == pytest.approx(0.5, abs=EPS) and r.stats["AR1"] == 0.0 and r.stats["AR10"] == 1.0


def test_restricting_img_ids_to_predicted_images_inflates_ap():
    """The docs/design.md §5 probe: raw COCOeval with imgIds = predicted images says 1.0; the truth is 67/101."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets = perfect(GT3)[:2]
    r = evaluate_detections(GT3, dets)
    assert r.stats["AP"] == pytest.approx(67 / 101, abs=EPS) and r.num_images == 3
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(GT3)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), iouType="bbox")
        ev.params.imgIds = [1, 2]  # the pitfall
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0, abs=EPS)


def test_gt_annotation_id_zero_is_renumbered_with_a_warning_and_refused_in_strict_mode():
    """pycocotools turns a match to GT id 0 into a miss (cocoapi #672): AP50 0 for a perfect detector.
    Here the ids are numbered 1..N, and a warning says the number is not a plain pycocotools call's."""
    gt = copy.deepcopy(GT3)
    gt["annotations"][0]["id"] = 0
    with pytest.warns(CocoInputWarning, match=r"id 0 .*cocoapi #672.*NOT a plain pycocotools"):
        r = evaluate_detections(gt, perfect(gt))
    assert r.stats["AP50"] == pytest.approx(1.0, abs=EPS) and len(r.warnings) == 1
    with pytest.raises(ValueError, match=r"id 0 .*strict mode"):
        evaluate_detections(gt, perfect(gt), strict=True)
    gt["annotations"][0]["id"] = 7
    gt["annotations"][1]["id"] = gt["annotations"][2]["id"]  # repeated ids: renumbered as well
    with pytest.warns(CocoInputWarning, match=r"ids \[3\] repeat"):
        assert evaluate_detections(gt, perfect(gt)).stats["AP50"] == pytest.approx(1.0, abs=EPS)


def test_per_image_cap_is_off_by_default_and_counts_what_it_drops():
    gt = make_gt([[[10, 10, 20, 20]]])
    dets = [{"image_id": 1, "category_id": 2, "bbox": [60, 60, 20, 20], "score": 0.9},  # other category
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8}]
    r = evaluate_detections(gt, dets)
    assert r.stats["AP"] == pytest.approx(1.0, abs=EPS) and r.num_capped == 0
    capped = evaluate_detections(gt, dets, max_per_image=1)
    assert capped.stats["AP"] == 0.0 and capped.num_predictions == 1 and capped.num_capped == 1


def test_cap_ties_at_the_cut_keep_input_order():
    gt = make_gt([[[10, 10, 20, 20]]])
    hit = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.5}
    miss = {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.5}
    assert evaluate_detections(gt, [hit, miss], max_per_image=1).stats["AP"] == pytest.approx(1.0, abs=EPS)
    assert evaluate_detections(gt, [miss, hit], max_per_image=1).stats["AP"] == 0.0


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_empty_prediction_set_scores_zero(backend):
    r = evaluate_detections(GT3, [], backend=backend)
    assert r.stats["AP"] == 0.0 and r.stats["AR100"] == 0.0 and r.stats["APl"] is None
    assert r.per_class_ap == {"one": 0.0, "two": None} and r.num_predictions == 0


def _mask_rle(h, w, y0, y1, x0, x1):
    from pycocotools import mask as mask_utils

    m = np.zeros((h, w), np.uint8, order="F")
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(m)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_segm_and_keypoints(backend):
    gt = {"images": [{"id": 7, "width": 80, "height": 60}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [20, 10, 30, 20], "area": 600.0,
                           "segmentation": [[20, 10, 50, 10, 50, 30, 20, 30]],
                           "keypoints": [25, 15, 2, 40, 20, 2, 0, 0, 0]}],
          "categories": [{"id": 3, "name": "thing"}]}
    before = copy.deepcopy(gt)
    seg = [{"image_id": 7, "category_id": 3, "segmentation": _mask_rle(60, 80, 10, 30, 20, 50), "score": 0.9,
            "bbox": [0, 0, 80, 60]}]
    r = evaluate_detections(gt, seg, iou_type="segm", backend=backend)
    assert r.stats["AP"] == pytest.approx(1.0, abs=EPS) and r.stats["APs"] == pytest.approx(1.0, abs=EPS)
    half = [{"image_id": 7, "category_id": 3, "segmentation": _mask_rle(60, 80, 10, 30, 20, 35), "score": 0.9}]
    assert evaluate_detections(gt, half, iou_type="segm", backend=backend).stats["AP50"] == pytest.approx(1, abs=EPS)
    assert evaluate_detections(gt, half, iou_type="segm", backend=backend).stats["AP75"] == 0.0  # IoU 0.5
    kp = [{"image_id": 7, "category_id": 3, "keypoints": [25, 15, 1, 40, 20, 1, 0, 0, 0], "score": 0.9}]
    r = evaluate_detections(gt, kp, iou_type="keypoints", kpt_oks_sigmas=[0.1, 0.1, 0.1], backend=backend)
    assert list(r.stats) == list(KPT_STAT_NAMES) and r.stats["AP"] == pytest.approx(1.0, abs=EPS)
    assert r.stats["APm"] is None and r.stats["APl"] is None  # GT area 600 < 32**2: in no keypoint bucket
    assert gt == before and "num_keypoints" not in gt["annotations"][0]


def test_box_conversions_round_trip():
    xyxy = np.array([[1.0, 2.0, 4.0, 8.0], [0, 0, 0, 0]])
    assert boxes_xyxy_to_xywh(xyxy).tolist() == [[1, 2, 3, 6], [0, 0, 0, 0]]
    assert boxes_xywh_to_xyxy(boxes_xyxy_to_xywh(xyxy)).tolist() == xyxy.tolist()
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        boxes_xyxy_to_xywh([1, 2, 3])


# ---------------------------------------------------------------- every error path
def _det(**kw):
    return [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.5, **kw}]


@pytest.mark.parametrize("dets, message", [
    (_det(image_id=99), r"image_id\(s\) not in the ground truth: \[99\]"),
    (_det(image_id="a"), r"image_id\(s\) not in the ground truth: \['a'\]"),
    (_det(bbox=[10, float("nan"), 20, 20]), r"detection #0 \(image_id 1, category_id 1\).*not finite"),
    (_det(bbox=[10, 10, float("inf"), 20]), r"detection #0 .*not finite"),
    (_det(bbox=[10, 10, -2, 20]), r"detection #0 .*negative width or height"),
    (_det(bbox=[10, 10, 20]), r"detection #0 .*bbox must be 4 numbers"),
    (_det(score=float("nan")), r"detection #0 .*score nan is not finite"),
    (_det(score="high"), r"detection #0 .*score 'high' is not a number"),
    ([{"image_id": 1, "category_id": 1, "score": 0.5}], r"detection #0 lacks \['bbox'\]"),
    ([[1, 1, 10, 10, 20, 20, 0.5]], r"detection #0 is a list"),
])
def test_bad_detections_raise_naming_the_detection(dets, message):
    before = copy.deepcopy(dets)
    with pytest.raises(ValueError, match=message):
        evaluate_detections(GT3, dets)
    assert dets == before


@pytest.mark.parametrize("dets, message", [
    (_det(category_id=5), r"category ids not in the ground truth: \[5\]"),
    (_det(bbox=[60, 60, 95, 90]), r"look like xyxy corners.*boxes_xyxy_to_xywh"),
])
def test_suspicious_detections_warn_and_strict_mode_refuses_them(dets, message):
    with pytest.warns(CocoInputWarning, match=message):
        r = evaluate_detections(GT3, dets)
    assert r.warnings and r.stats["AP"] == 0.0
    with pytest.raises(ValueError, match=message + r".*strict mode"):
        evaluate_detections(GT3, dets, strict=True)


def _gt_with(mutate):
    gt = copy.deepcopy(GT3)
    mutate(gt)
    return gt


@pytest.mark.parametrize("gt, message", [
    ({"images": []}, r"lacks a 'annotations' list"),
    ({"images": [], "annotations": [], "categories": []}, r"no images"),
    (_gt_with(lambda g: g["annotations"][1].pop("area")), r"annotation #1 \(id 2\) lacks \['area'\]"),
    (_gt_with(lambda g: g["annotations"][0].update(bbox=[1, 1, -1, 5])), r"annotation #0 .*negative width"),
    (_gt_with(lambda g: g["annotations"][0].update(area=float("nan"))), r"annotation #0 .*area nan"),
    (_gt_with(lambda g: g["annotations"][0].update(iscrowd="yes")), r"annotation #0 .*iscrowd must be 0 or 1, got 'yes'"),
    (_gt_with(lambda g: g["annotations"][0].update(iscrowd=-1)), r"annotation #0 .*iscrowd .* -1 .*overflows"),
    (_gt_with(lambda g: g["annotations"][0].update(iscrowd=0.5)), r"iscrowd must be 0 or 1, got 0.5"),
    (_gt_with(lambda g: g["images"].__setitem__(0, {"id": "x", "width": 100, "height": 100})),
     r"image ids must be all integers or all strings"),
])
def test_bad_ground_truth_raises(gt, message):
    with pytest.raises(ValueError, match=message):
        evaluate_detections(gt, [])


def _corner_gt(g):
    for a in g["annotations"]:
        x, y, w, h = a["bbox"]
        a["bbox"] = [x, y, x + w + 10, y + h + 10]  # corners that pass the edge when read as xywh


@pytest.mark.parametrize("gt, message", [
    (_gt_with(lambda g: g["images"].append(dict(g["images"][0]))), r"image ids \[1\] more than once"),
    (_gt_with(lambda g: g["images"][0].pop("width")), r"1 ground truth images lack a usable width/height: \[1\]"),
    (_gt_with(lambda g: g["images"][1].update(width=None)), r"lack a usable width/height: \[2\]"),
    (_gt_with(lambda g: g["annotations"][0].update(image_id=42)), r"refer to image ids not in .*\[42\]"),
    (_gt_with(lambda g: g["annotations"][0].update(category_id=9)), r"refer to category ids not in .*\[9\]"),
    (_gt_with(lambda g: g["annotations"][0].update(iscrowd=2)), r"iscrowd is 2; pycocotools treats any non-zero"),
    (_gt_with(_corner_gt), r"ground truth boxes look like xyxy corners"),
])
def test_suspicious_ground_truth_warns_and_strict_mode_refuses_it(gt, message):
    with pytest.warns(CocoInputWarning, match=message):
        evaluate_detections(gt, perfect(GT3)[1:])
    with pytest.raises(ValueError, match=message):
        evaluate_detections(gt, perfect(GT3)[1:], strict=True)


@pytest.mark.parametrize("kwargs, message", [
    ({"iou_type": "mask"}, r"iou_type must be one of"),
    ({"backend": "torchmetrics"}, r"backend must be"),
    ({"max_per_image": 0}, r"max_per_image must be a positive int"),
    ({"kpt_oks_sigmas": [0.1]}, r"only applies to iou_type='keypoints'"),
    ({"iou_type": "keypoints", "kpt_oks_sigmas": [0.1, -1]}, r"positive numbers"),
])
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        evaluate_detections(GT3, [], **kwargs)


def test_bad_segm_and_keypoint_payloads_raise():
    gt = {"images": [{"id": 1, "width": 80, "height": 60}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 10, 30, 20], "area": 600.0,
                           "segmentation": [[20, 10, 50, 10, 50, 30, 20, 30]], "keypoints": [25, 15, 2]}],
          "categories": [{"id": 1, "name": "a"}]}
    seg = {"image_id": 1, "category_id": 1, "score": 1.0}
    with pytest.raises(ValueError, match=r"detection #0 .*RLE size \[h, w\] = \[80, 60\] differs"):
        evaluate_detections(gt, [{**seg, "segmentation": _mask_rle(80, 60, 0, 5, 0, 5)}], iou_type="segm")
    with pytest.raises(ValueError, match=r"detection #0 .*segmentation must be an RLE dict"):
        evaluate_detections(gt, [{**seg, "segmentation": [[1, 1, 5, 1, 5, 5]]}], iou_type="segm")
    with pytest.raises(ValueError, match=r"annotation #0 \(id 1\): keypoints must be 51 numbers"):
        evaluate_detections(gt, [], iou_type="keypoints")  # default sigmas: 17 keypoints
    with pytest.raises(ValueError, match=r"detection #0 .*keypoints must be 3 numbers"):
        evaluate_detections(gt, [{**seg, "keypoints": [1, 2, 1, 3, 4, 1]}], iou_type="keypoints",
                            kpt_oks_sigmas=[0.1])


# ---------------------------------------------------------------- properties
@st.composite
def scenes(draw, max_images=5):
    """(gt, detections): random GT boxes (some crowd, some images empty) and detections that are
    jittered GT boxes or random boxes, scores from a small set so that ties are common."""
    n_images = draw(st.integers(1, max_images))
    images, anns, dets = [], [], []
    for i in range(n_images):
        w, h = draw(st.integers(40, 200)), draw(st.integers(40, 200))
        images.append({"id": 10 * i + 3, "width": w, "height": h})
        for _ in range(draw(st.integers(0, 4))):
            x, y = draw(st.integers(0, w - 4)), draw(st.integers(0, h - 4))
            bw, bh = draw(st.integers(2, w - x)), draw(st.integers(2, h - y))
            anns.append({"id": len(anns) + 1, "image_id": 10 * i + 3, "category_id": draw(st.sampled_from([1, 2])),
                         "bbox": [x, y, bw, bh], "area": float(bw * bh), "iscrowd": int(draw(st.integers(0, 9)) == 0)})
            if draw(st.booleans()):
                jx, jy = draw(st.integers(-2, 2)), draw(st.integers(-2, 2))
                dets.append({"image_id": 10 * i + 3, "category_id": anns[-1]["category_id"],
                             "bbox": [max(0, x + jx), max(0, y + jy), bw, bh]})
        for _ in range(draw(st.integers(0, 3))):
            x, y = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
            dets.append({"image_id": 10 * i + 3, "category_id": draw(st.sampled_from([1, 2])),
                         "bbox": [x, y, draw(st.integers(1, w - x)), draw(st.integers(1, h - y))]})
    for d in dets:
        d["score"] = draw(st.sampled_from([0.25, 0.5, 0.75, 1.0]))
    cats = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]
    return {"images": images, "annotations": anns, "categories": cats}, dets


@settings(max_examples=30)
@given(scenes())
def test_inputs_are_not_mutated(scene):
    gt, dets = scene
    before = copy.deepcopy(scene)
    evaluate_detections(gt, dets)
    assert (gt, dets) == before


@settings(max_examples=30)
@given(scene=scenes(), data=st.data())
def test_detection_order_does_not_matter_without_ties(scene, data):
    """With distinct scores the order of the list is irrelevant (pycocotools sorts by score); with ties it is
    part of pycocotools' number, and the result stays within the tie bounds (tests/test_coco_ties.py)."""
    gt, dets = scene
    dets = [{**d, "score": d["score"] - 1e-3 * i} for i, d in enumerate(dets)]
    order = data.draw(st.permutations(range(len(dets))))
    cap = data.draw(st.sampled_from([None, 1, 2, 100]))
    a = evaluate_detections(gt, dets, max_per_image=cap)
    b = evaluate_detections(gt, [dets[i] for i in order], max_per_image=cap)
    assert a == b


@settings(max_examples=30)
@given(scene=scenes(), data=st.data())
def test_detection_on_an_image_without_gt_never_raises_nor_raises_ap(scene, data):
    gt, dets = scene
    gt = {**gt, "images": gt["images"] + [{"id": 999, "width": 50, "height": 50}]}
    extra = {"image_id": 999, "category_id": data.draw(st.sampled_from([1, 2])),
             "bbox": [1, 1, data.draw(st.integers(1, 49)), 5], "score": data.draw(st.floats(0, 1))}
    base, more = evaluate_detections(gt, dets), evaluate_detections(gt, dets + [extra])
    assert more.num_predictions == base.num_predictions + 1
    for name, value in base.stats.items():
        if name.startswith("AP") and value is not None:
            assert more.stats[name] <= value + EPS, name


def _uncompressed_rle(mask):
    flat = np.asarray(mask, np.uint8).flatten(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))  # run boundaries, starting at 0s
    return {"size": list(mask.shape), "counts": np.diff(np.concatenate([[0], edges])).tolist()}


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_uncompressed_rle_detection_is_accepted_and_not_mutated(backend):
    gt = {"images": [{"id": 1, "width": 8, "height": 6}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 1, 4, 3], "area": 12.0,
                           "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]}],
          "categories": [{"id": 1, "name": "a"}]}
    mask = np.zeros((6, 8), np.uint8)
    mask[1:4, 2:6] = 1
    dets = [{"image_id": 1, "category_id": 1, "segmentation": _uncompressed_rle(mask), "score": 1.0}]
    before = copy.deepcopy(dets)
    assert sum(dets[0]["segmentation"]["counts"]) == 48
    r = evaluate_detections(gt, dets, iou_type="segm", backend=backend)
    assert r.stats["AP50"] == pytest.approx(1.0, abs=EPS) and dets == before


def test_detections_must_be_a_list():
    with pytest.raises(ValueError, match="detections must be a list of COCO result dicts, got dict"):
        evaluate_detections(GT3, {"image_id": 1})
    assert evaluate_detections(GT3, tuple(perfect(GT3))).stats["AP"] == pytest.approx(1.0, abs=EPS)


# ---------------------------------------------------------------- RLE and segmentation input
SEG_GT = {"images": [{"id": 1, "width": 8, "height": 6}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 12.0, "iscrowd": 0,
                           "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]]}],
          "categories": [{"id": 1, "name": "a"}]}


@pytest.mark.parametrize("seg, message", [
    ({"size": [6, 8], "counts": "garbage!!"}, r"not a compressed RLE string: character 'r'"),
    ({"size": [6, 8], "counts": "=33"}, r"run lengths add up to 19 pixels, but its size 6 x 8 has 48"),
    ({"size": [6, 8], "counts": [5, -3, 46]}, r"run length #1 is negative \(-3\)"),
    ({"size": [6, 8], "counts": [5, 1.5, 41.5]}, r"uncompressed RLE counts must be integers"),
    ({"size": [6, 8], "counts": "0P"}, r"ends inside a count"),
    ({"size": [-6, 8], "counts": "0"}, r"RLE size must be \[height, width\]"),
    ({"size": [6, 8]}, r"must be an RLE dict"),
])
def test_corrupt_detection_rle_is_a_clear_error_not_a_silent_zero(seg, message):
    det = [{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": seg}]
    with pytest.raises(ValueError, match=r"detection #0 .*" + message):
        evaluate_detections(SEG_GT, det, iou_type="segm")


def test_corrupt_ground_truth_segmentation_is_a_clear_error():
    bad = copy.deepcopy(SEG_GT)
    bad["annotations"][0]["segmentation"] = {"size": [6, 8], "counts": "garbage!!"}
    with pytest.raises(ValueError, match=r"ground truth annotation #0 \(id 1\): RLE counts 'garbage!!'"):
        evaluate_detections(bad, [], iou_type="segm")
    bad["annotations"][0]["segmentation"] = [[2, 1, 6, 1, 6]]
    with pytest.raises(ValueError, match=r"polygon #0 must be an even count"):
        evaluate_detections(bad, [], iou_type="segm")
    no_size = copy.deepcopy(SEG_GT)
    no_size["images"][0]["width"] = None
    with pytest.raises(ValueError, match=r"lacks a usable width/height, which pycocotools needs to rasterise polygons"):
        evaluate_detections(no_size, [], iou_type="segm")


@settings(max_examples=40)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**16), density=st.floats(0, 1))
def test_rle_decoder_reads_pycocotools_strings(h, w, seed, density):
    """compressed_counts(encode(mask)) are the mask's run lengths (checked by re-encoding them)."""
    from pycocotools import mask as mask_utils

    from bench.metrics.coco_rle import compressed_counts

    mask = (np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    mask[: h // 2, : w // 3] = 1  # long runs: multi-character counts
    rle = mask_utils.encode(np.asfortranarray(mask))
    counts = compressed_counts(rle["counts"].decode("ascii"))
    assert counts.sum() == h * w and counts[1::2].sum() == mask.sum()
    assert mask_utils.frPyObjects({"size": [h, w], "counts": counts.tolist()}, h, w)["counts"] == rle["counts"]


def test_segm_boxes_beside_masks_follow_pycocotools_and_warn():
    det = {"image_id": 1, "category_id": 1, "score": 0.9,
           "segmentation": _mask_rle(6, 8, 1, 4, 2, 6), "bbox": [2, 1, 4, 3]}
    with pytest.warns(CocoInputWarning, match="carry a 'bbox'.*detectron2"):
        evaluate_detections(SEG_GT, [det], iou_type="segm")
    with pytest.raises(ValueError, match=r"detection #1 .*lacks 'bbox' while detection #0 has one"):
        evaluate_detections(SEG_GT, [det, {k: v for k, v in det.items() if k != "bbox"}], iou_type="segm")
