"""COCO evaluation (bbox, segm, keypoints) over pycocotools or faster-coco-eval, with the pitfalls of
DESIGN.md §5 handled:

- the iouType is always passed (COCOeval's default is segm);
- an empty prediction set evaluates like any other (0.0 where the ground truth has objects, None where
  a bucket has none) instead of crashing in loadRes([]);
- unknown image/category ids, NaN/inf/negative-size boxes and boxes that look like xyxy raise ValueError
  naming the offender (bench/metrics/coco_checks.py);
- every ground-truth image stays in params.imgIds, predicted or not (its objects count as misses);
- the top `max_per_image` detections per image by score are kept first (COCO challenge rule); ties are
  broken by content, so the result does not depend on the order of `detections`;
- inputs are never mutated: pycocotools writes into both datasets, so it only sees private copies;
- ground-truth annotation ids are renumbered 1..N in the private copy: id 0 silently turns matches
  into misses (cocoapi #672) and duplicate ids collapse in COCO's index;
- for segm the detection's box is dropped so that the size buckets use the mask area (as detectron2).

The 'faster' backend (faster-coco-eval, imported lazily) gets the same prepared inputs and params and
gives the same numbers (tests/test_coco_eval.py checks 1e-9).
"""

from __future__ import annotations

import contextlib
import gc
import io
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bench.metrics.coco_checks import (
    COCO_KPT_OKS_SIGMAS,
    DET_STAT_NAMES,
    KPT_STAT_NAMES,
    boxes_xywh_to_xyxy,
    boxes_xyxy_to_xywh,
    check_options,
    prepare_detections,
    prepare_ground_truth,
    stat_names,
)

__all__ = ["CocoEvaluation", "evaluate_detections", "boxes_xyxy_to_xywh", "boxes_xywh_to_xyxy",
           "DET_STAT_NAMES", "KPT_STAT_NAMES", "COCO_KPT_OKS_SIGMAS"]


@dataclass
class CocoEvaluation:
    """Result of `evaluate_detections`."""

    stats: dict[str, float | None]  # COCOeval.stats by name (12 for bbox/segm, 10 for keypoints); None = -1
    per_class_ap: dict[str, float | None]  # category name -> AP@[.5:.95] (area all); None = no GT of it
    num_images: int  # ground-truth images evaluated (all of them, predicted or not)
    num_gt: int  # ground-truth annotations (crowd included)
    num_predictions: int  # detections evaluated, after the per-image cap
    backend: str  # "pycocotools" or "faster"
    iou_type: str = "bbox"
    num_capped: int = 0  # detections dropped by the per-image cap
    per_class_ids: dict[str, int] = field(default_factory=dict)  # category name -> category id

    def table_rows(self, per_class: bool = False) -> list[list[Any]]:
        """[[name, value], ...] for a report table (None renders n/a); per-class AP rows appended
        as ["AP[<name>]", value] when per_class is true."""
        rows = [[name, value] for name, value in self.stats.items()]
        if per_class:
            rows += [[f"AP[{name}]", value] for name, value in self.per_class_ap.items()]
        return rows


def evaluate_detections(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *,
                        iou_type: str = "bbox", backend: str = "pycocotools", max_per_image: int | None = 100,
                        kpt_oks_sigmas: Sequence[float] | None = None,
                        xyxy_tolerance: float | None = 0.1) -> CocoEvaluation:
    """COCO metrics of `detections` (COCO result dicts: image_id, category_id, score and `bbox` [x, y, w, h]
    / `segmentation` RLE / `keypoints` [x, y, v] * K) against the COCO ground-truth dict `gt`.

    max_per_image: keep this many top-scoring detections per image (None: no cap).
    kpt_oks_sigmas: keypoint OKS sigmas (K,), default pycocotools' 17 person sigmas.
    xyxy_tolerance: a box whose x+w (y+h) passes the image width (height) by more than
        max(1 px, tolerance * side) is rejected as probably xyxy; None disables the check.
    """
    with _gc_paused():
        return _evaluate(gt, detections, iou_type, backend, max_per_image, kpt_oks_sigmas, xyxy_tolerance)


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: building ~10^6 small dicts otherwise triggers repeated full
    collections that cost as much as the evaluation itself (measured: 7.0 s -> 4.1 s on 100k detections)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _evaluate(gt, detections, iou_type, backend, max_per_image, kpt_oks_sigmas, xyxy_tolerance) -> CocoEvaluation:
    num_kpts = check_options(iou_type, backend, max_per_image, kpt_oks_sigmas)
    if xyxy_tolerance is not None and not (xyxy_tolerance >= 0):
        raise ValueError(f"xyxy_tolerance must be >= 0 or None, got {xyxy_tolerance!r}")
    gt_data = prepare_ground_truth(gt, iou_type, num_kpts, xyxy_tolerance)
    results = prepare_detections(detections, gt_data, iou_type, max_per_image, num_kpts, xyxy_tolerance)
    sigmas = None
    if iou_type == "keypoints":
        sigmas = np.asarray(COCO_KPT_OKS_SIGMAS if kpt_oks_sigmas is None else kpt_oks_sigmas, np.float64)
    run = _run_faster if backend == "faster" else _run_pycocotools
    raw_stats, precision = run(gt_data, results, iou_type, sigmas)

    names = stat_names(iou_type)
    stats = {n: (None if v == -1 else float(v)) for n, v in zip(names, np.asarray(raw_stats).tolist())}
    cat_ids = sorted(c["id"] for c in gt_data["categories"])
    labels = _category_labels(gt_data["categories"])
    per_class, ids = {}, {}
    for k, cid in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]  # (T iou thresholds, R recall points), area "all", largest maxDets
        p = p[p > -1]
        per_class[labels[cid]] = float(p.mean()) if p.size else None
        ids[labels[cid]] = cid
    num_in = len(detections)
    return CocoEvaluation(stats=stats, per_class_ap=per_class, num_images=len(gt_data["images"]),
                          num_gt=len(gt_data["annotations"]), num_predictions=len(results), backend=backend,
                          iou_type=iou_type, num_capped=num_in - len(results), per_class_ids=ids)


def _category_labels(categories: list[dict[str, Any]]) -> dict[int, str]:
    """category id -> its name, made unique with the id where names repeat (or are missing)."""
    names = [str(c.get("name", c["id"])) for c in categories]
    return {c["id"]: (n if names.count(n) == 1 else f"{n} (id {c['id']})") for c, n in zip(categories, names)}


def _configure(evaluator, gt_data: dict[str, Any], sigmas: np.ndarray | None) -> None:
    p = evaluator.params
    p.imgIds = sorted(img["id"] for img in gt_data["images"])  # every GT image, predicted or not
    p.catIds = sorted(c["id"] for c in gt_data["categories"])
    if sigmas is not None:
        p.kpt_oks_sigmas = sigmas


def _build(coco_cls, gt_data: dict[str, Any], results: list[dict[str, Any]]):
    """(ground-truth COCO, result COCO) built in memory; loadRes([]) raises, so an empty result set
    gets an empty dataset with the same images and categories."""
    coco_gt = coco_cls()
    coco_gt.dataset = gt_data
    coco_gt.createIndex()
    if results:
        coco_dt = coco_gt.loadRes(results)
    else:
        coco_dt = coco_cls()
        coco_dt.dataset = {"images": list(gt_data["images"]), "categories": list(gt_data["categories"]),
                           "annotations": []}
        coco_dt.createIndex()
    return coco_gt, coco_dt


def _run_pycocotools(gt_data, results, iou_type, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """(stats, precision (T, R, K, A, M)) from pycocotools' COCOeval, its prints silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _build(COCO, gt_data, results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        _configure(evaluator, gt_data, sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats), np.asarray(evaluator.eval["precision"])


def _run_faster(gt_data, results, iou_type, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """(stats, precision) from faster-coco-eval's C++ COCOeval_faster (same params)."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError as err:  # optional dependency
        raise ImportError("backend='faster' needs faster-coco-eval: pip install 'vsbench[fast]'") from err

    def quiet(*args, **kwargs):
        return None

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _build(COCO, gt_data, results)
        evaluator = COCOeval_faster(coco_gt, coco_dt, iouType=iou_type, print_function=quiet)
        _configure(evaluator, gt_data, sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    n = len(stat_names(iou_type))
    return np.asarray(evaluator.stats)[:n], np.asarray(evaluator.eval["precision"])
