"""A reported AP50 / AP equals COCO's (pycocotools COCOeval, iouType "bbox", computed here directly) on
fixed imperfect tables, including the situations where a VOC-style mAP@0.5 and COCO's AP50 differ:
crowd regions, duplicate detections, more than 100 detections of a class in one image, many classes
(docs/design.md §5). The tables are made by the reference, so only `evaluate` is tested."""

import contextlib
import copy
import io

import numpy as np
import pandas as pd
import pytest

from cases.strategies import reference_for

pytestmark = pytest.mark.pix2seq
TOLERANCE = 1e-3


def _box(rng, width, height, size=(10, 60)):
    w, h = rng.integers(*size), rng.integers(*size)
    return [int(rng.integers(0, width - w)), int(rng.integers(0, height - h)), int(w), int(h)]


def _jitter(rng, bbox, amount):
    x, y, w, h = bbox
    dx, dy = rng.uniform(-amount, amount, 2) * np.array([w, h])
    return [float(x + dx), float(y + dy), float(w * rng.uniform(1 - amount, 1 + amount)),
            float(h * rng.uniform(1 - amount, 1 + amount))]


def situation(name: str, seed: int = 12):
    """(gt, detections [(image_id, label, score, xywh)]) of one fixed imperfect situation."""
    rng = np.random.default_rng(seed)
    n_classes = 25 if name == "many_classes" else 3
    images = [{"id": 10 + 7 * i, "width": int(rng.integers(200, 640)), "height": int(rng.integers(200, 640))}
              for i in range(12 if name != "over_100" else 2)]
    anns, dets = [], []
    for im in images:
        count = 120 if name == "over_100" else int(rng.integers(2, 6))
        for _ in range(count):
            label = int(rng.integers(0, n_classes if name != "over_100" else 1))
            bbox = _box(rng, im["width"], im["height"], (4, 20) if name == "over_100" else (10, 60))
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 3 * label + 1, "bbox": bbox,
                         "area": float(bbox[2] * bbox[3]), "iscrowd": 0})
            if rng.uniform() < 0.8:  # found, more or less well placed
                dets.append((im["id"], label, float(rng.uniform(0.05, 1.0)), _jitter(rng, bbox, 0.35)))
            if name == "duplicates" and rng.uniform() < 0.6:
                dets.append((im["id"], label, float(rng.uniform(0.05, 1.0)), _jitter(rng, bbox, 0.05)))
            if name == "duplicates" and rng.uniform() < 0.3:  # the same object annotated twice, found twice
                anns.append({**anns[-1], "id": len(anns) + 1})
                dets.append((im["id"], label, float(rng.uniform(0.05, 1.0)), [float(v) for v in bbox]))
        for _ in range(int(rng.integers(1, 4))):  # false positives, some in classes without ground truth
            dets.append((im["id"], int(rng.integers(0, n_classes)), float(rng.uniform(0.05, 0.9)),
                         [float(v) for v in _box(rng, im["width"], im["height"])]))
        if name == "crowd":  # a crowd region with detections inside it: ignored by COCO, not by VOC
            crowd = [0, 0, im["width"] // 2, im["height"] // 2]
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": 1, "bbox": crowd,
                         "area": float(crowd[2] * crowd[3]), "iscrowd": 1})
            for _ in range(3):
                dets.append((im["id"], 0, float(rng.uniform(0.3, 1.0)),
                             [float(v) for v in _box(rng, crowd[2], crowd[3], (8, 30))]))
        if name == "over_100":  # 150 detections of one class: COCO keeps each image's best 100
            dets += [(im["id"], 0, float(rng.uniform(0.01, 0.5)), [float(v) for v in _box(rng, im["width"],
                                                                                      im["height"], (4, 20))])
                     for _ in range(30)]
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 3 * c + 1, "name": f"class{c}"} for c in range(n_classes)]}
    return gt, dets


def pycocotools_stats(gt, dets) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        cats = sorted(c["id"] for c in gt["categories"])
        coco_dt = coco_gt.loadRes([{"image_id": i, "category_id": cats[lab], "score": s, "bbox": list(b)}
                                   for i, lab, s, b in dets])
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1])}


def as_table(ref, gt, dets) -> pd.DataFrame:
    ids = [im["id"] for im in gt["images"]]
    per_image = {i: [d for d in dets if d[0] == i] for i in ids}
    detections = [{"boxes": np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for _, _, _, b in per_image[i]]).reshape(-1, 4),
                   "labels": np.array([lab for _, lab, _, _ in per_image[i]], np.int64),
                   "scores": np.array([s for _, _, s, _ in per_image[i]])} for i in ids]
    return ref.prediction_table(ids, detections, gt)


@pytest.mark.case(stands_for="a reported AP50 / AP equals COCO's (pycocotools) within 1e-3 (a VOC-style "
                  "mAP@0.5 differs: all-point interpolation, no crowd regions, no 100-per-class cap)",
                  stage="evaluate")
@pytest.mark.parametrize("name", ["localisation", "crowd", "duplicates", "over_100", "many_classes"])
def test_reported_metrics_equal_coco(api, name):
    ref = reference_for(api)
    gt, dets = situation(name)
    want = pycocotools_stats(gt, dets)
    got = api.evaluate(gt, as_table(ref, gt, dets))
    if "AP50" not in got:
        pytest.fail(f"evaluate returned no 'AP50' (keys: {sorted(got)})", pytrace=False)
    assert got["AP50"] == pytest.approx(want["AP50"], abs=TOLERANCE), f"AP50 {got['AP50']}, COCO's {want['AP50']}"
    if got.get("AP") is not None:
        assert got["AP"] == pytest.approx(want["AP"], abs=TOLERANCE), f"AP {got['AP']}, COCO's {want['AP']}"
