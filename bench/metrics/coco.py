"""COCO evaluation (bbox, segm, keypoints) over pycocotools or faster-coco-eval: pycocotools' number,
with the checks beside it (docs/design.md §5).

The number. On every input pycocotools handles correctly, both backends return exactly the 12 (10 for
keypoints) stats and per-class AP of a plain call COCO() + loadRes + COCOeval(iouType)
evaluate/accumulate/summarize on the same lists (tests/test_coco_parity.py: 1e-12 on generated sets
with score ties, edge spills, crowd, > 100 detections per image, string ids, missing sizes):
- detections keep their INPUT order: pycocotools' stable sort keeps tied detections in file order;
- no per-image cap by default (pycocotools applies maxDets per image AND category);
  `max_per_image=100` is the COCO challenge rule, off by default, and reports what it dropped;
- every ground-truth image stays in params.imgIds, the iouType is always passed;
- string ids are numbered in sorted order (as pycocotools orders them) for faster-coco-eval's sake;
- inputs are never mutated (pycocotools writes into both datasets: it only sees private copies);
- an empty prediction set scores 0 (loadRes([]) raises in pycocotools).
Where pycocotools gets the input wrong, this does not follow it: a NaN box (pycocotools matches it to
any object), NaN scores, negative box sizes, corrupt RLE, RLE sizes other than the image's, iscrowd -1
or 'yes' raise ValueError; ground-truth annotation ids 0 or repeated are numbered 1..N (pycocotools
turns matches to id 0 into misses, cocoapi #672, and merges repeated ids) with a warning that the
number differs from a plain pycocotools call.

Beside the number (fields of CocoEvaluation, and warnings):
- `ties`: bounds of the stats over every order of tied scores (bench/metrics/coco_ties.py);
  CocoTieWarning when they differ;
- `xyxy`: whether the boxes look like corners given as xywh (bench/metrics/coco_xyxy.py);
- suspicious input pycocotools scores as given (unknown category ids, string ids, missing image
  sizes, boxes beside masks, xyxy-looking boxes, ...): CocoInputWarning naming the offenders;
  `strict=True` (vsbench run --strict) makes each of them a ValueError instead.
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from bench.metrics.coco_checks import (COCO_KPT_OKS_SIGMAS, DET_STAT_NAMES, KPT_STAT_NAMES, CocoInputWarning,
                                       Findings, GroundTruth, boxes_xywh_to_xyxy, boxes_xyxy_to_xywh,
                                       check_options, prepare_ground_truth, some, stat_names)
from bench.metrics.coco_dets import Detections, prepare_detections
from bench.metrics.coco_tie_inputs import from_faster, from_pycocotools, nonempty_pairs, objects_of
from bench.metrics.coco_ties import TieSensitivity, has_ties, tie_sensitivity, tie_stat_names
from bench.metrics.coco_xyxy import XyxyCheck, check_xyxy

__all__ = ["CocoEvaluation", "CocoInputWarning", "CocoTieWarning", "TieSensitivity", "XyxyCheck",
           "evaluate_detections", "xyxy_evidence", "boxes_xyxy_to_xywh", "boxes_xywh_to_xyxy", "DET_STAT_NAMES", "KPT_STAT_NAMES",
           "COCO_KPT_OKS_SIGMAS"]


class CocoTieWarning(UserWarning):
    """The stats depend on the order of tied scores (see CocoEvaluation.ties)."""


@dataclass
class CocoEvaluation:
    """Result of `evaluate_detections`."""

    stats: dict[str, float | None]  # COCOeval.stats by name (12 for bbox/segm, 10 for keypoints); None = -1
    per_class_ap: dict[str, float | None]  # category name -> AP@[.5:.95] (area all); None = no GT of it
    num_images: int  # ground-truth images evaluated (all of them, predicted or not)
    num_gt: int  # ground-truth annotations evaluated (crowd included)
    num_predictions: int  # detections evaluated
    backend: str  # "pycocotools" or "faster"
    iou_type: str = "bbox"
    num_capped: int = 0  # detections dropped by max_per_image (0 without a cap)
    per_class_ids: dict[str, Any] = field(default_factory=dict)  # category name -> category id as given
    num_unknown_category: int = 0  # detections of categories not in the ground truth (never evaluated)
    warnings: list[str] = field(default_factory=list)  # the CocoInputWarning messages of this evaluation
    ties: TieSensitivity | None = None  # None with tie_report=False
    xyxy: XyxyCheck | None = None  # detection boxes read both ways (bbox only)

    def table_rows(self, per_class: bool = False) -> list[list[Any]]:
        """[[name, value], ...] for a report table (None renders n/a); per-class AP rows appended
        as ["AP[<name>]", value] when per_class is true."""
        rows = [[name, value] for name, value in self.stats.items()]
        if per_class:
            rows += [[f"AP[{name}]", value] for name, value in self.per_class_ap.items()]
        return rows


def evaluate_detections(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *,
                        iou_type: str = "bbox", backend: str = "pycocotools", max_per_image: int | None = None,
                        kpt_oks_sigmas: Sequence[float] | None = None, strict: bool = False,
                        tie_report: bool = True, xyxy_check: bool = True) -> CocoEvaluation:
    """COCO metrics of `detections` (COCO result dicts: image_id, category_id, score and `bbox` [x, y, w, h]
    / `segmentation` RLE / `keypoints` [x, y, v] * K) against the COCO ground-truth dict `gt`.

    max_per_image: keep this many top-scoring detections per image, ties at the cut in input order (None:
        no cap, as pycocotools; the tie report does not cover the cap's own cut). kpt_oks_sigmas: keypoint OKS sigmas (K,), default pycocotools' 17 person sigmas.
    strict: suspicious input raises ValueError instead of a CocoInputWarning.
    tie_report: bound the stats over every order of tied scores (CocoEvaluation.ties).
    xyxy_check: read bbox detections both ways (CocoEvaluation.xyxy); a warning when they look xyxy.
    """
    with _gc_paused():
        result = _evaluate(gt, detections, iou_type, backend, max_per_image, kpt_oks_sigmas, strict,
                           tie_report, xyxy_check)
    for message in result.warnings:
        warnings.warn(message, CocoInputWarning, stacklevel=2)
    if result.ties is not None and any(result.ties.spread(s) > 1e-12 for s in result.ties.low):
        warnings.warn(f"the stats depend on the order of tied scores: {result.ties.summary()}; the number "
                      "uses pycocotools' order (file order within an image)", CocoTieWarning, stacklevel=2)
    return result


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


def _evaluate(gt, detections, iou_type, backend, max_per_image, kpt_oks_sigmas, strict, tie_report,
              xyxy_check) -> CocoEvaluation:
    findings = Findings(strict=bool(strict))
    num_kpts = check_options(iou_type, backend, max_per_image, kpt_oks_sigmas)
    gtp = prepare_ground_truth(gt, iou_type, num_kpts, findings)
    dets = prepare_detections(detections, gtp, iou_type, max_per_image, num_kpts, findings)
    no_size = [gtp.images.original[i] for i, (w, h) in gtp.sizes.items() if math.isnan(w) or math.isnan(h)]
    if no_size:
        findings.suspicious(f"{len(no_size)} ground truth images lack a usable width/height: {some(no_size)}; "
                            f"pycocotools does not need them for {iou_type}, but the xyxy fit test and the RLE size "
                            "check skip those images")
    xyxy = _xyxy(gtp, dets, findings) if iou_type == "bbox" and xyxy_check else None
    ties_needed = tie_report and has_ties(dets.category_ids, dets.scores)
    sigmas = None
    if iou_type == "keypoints":
        sigmas = np.asarray(COCO_KPT_OKS_SIGMAS if kpt_oks_sigmas is None else kpt_oks_sigmas, np.float64)
    run = _run_faster if backend == "faster" else _run_pycocotools
    raw_stats, precision, evaluator = run(gtp.data, dets.results, iou_type, sigmas)

    names = stat_names(iou_type)
    stats = {n: (None if v == -1 else float(v)) for n, v in zip(names, np.asarray(raw_stats).tolist())}
    cat_ids = [int(c["id"]) for c in gtp.data["categories"]]
    labels = [gtp.labels[c] for c in cat_ids]
    per_class = {}
    for k in range(len(cat_ids)):
        p = precision[:, :, k, 0, -1]  # (T iou thresholds, R recall points), area "all", largest maxDets
        p = p[p > -1]
        per_class[labels[k]] = float(p.mean()) if p.size else None
    if not tie_report:
        ties = None
    elif ties_needed:
        ties = _tie_report(evaluator, backend, gtp, dets, labels, iou_type)
    else:
        ties = TieSensitivity(0, 0, 0, 0, {n: stats.get(n) for n in tie_stat_names(iou_type)},
                              {n: stats.get(n) for n in tie_stat_names(iou_type)}, dict(per_class), dict(per_class))
    return CocoEvaluation(stats=stats, per_class_ap=per_class, num_images=len(gtp.data["images"]),
                          num_gt=len(gtp.data["annotations"]), num_predictions=len(dets.results), backend=backend,
                          iou_type=iou_type, num_capped=dets.num_capped,
                          per_class_ids={labels[k]: gtp.categories.original[c] for k, c in enumerate(cat_ids)},
                          num_unknown_category=dets.num_unknown_category, warnings=list(findings.messages),
                          ties=ties, xyxy=xyxy)


def xyxy_evidence(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> XyxyCheck:
    """The xyxy statistic of bbox detections alone (inputs checked as for evaluate_detections, no
    evaluation run; suspicious-input messages are dropped)."""
    findings = Findings()
    gtp = prepare_ground_truth(gt, "bbox", 0, findings)
    return _xyxy(gtp, prepare_detections(detections, gtp, "bbox", None, 0, findings), findings)


def _pair_keys(image_ids: np.ndarray, category_ids: np.ndarray, gtp: GroundTruth) -> np.ndarray:
    """(N,) int64 key of each (image, category) pair."""
    rank = np.searchsorted(gtp.categories.internal, category_ids)
    return image_ids.astype(np.int64) * (len(gtp.categories.internal) + 1) + rank


def _xyxy(gtp: GroundTruth, dets: Detections, findings: Findings) -> XyxyCheck:
    """The xyxy statistic of the detections (with the ground truth's overlap) and of the ground truth."""
    anns = gtp.data["annotations"]
    gt_boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    gt_img = np.asarray([a["image_id"] for a in anns], dtype=np.int64)
    gt_keys = _pair_keys(gt_img, np.asarray([a["category_id"] for a in anns], dtype=np.int64), gtp)

    ids = np.asarray(sorted(gtp.sizes), dtype=np.int64)
    table = np.asarray([gtp.sizes[i] for i in ids.tolist()], dtype=np.float64).reshape(-1, 2)  # (I, 2)

    def sizes(image_ids):
        return table[np.searchsorted(ids, image_ids)]  # (N, 2) width, height of each item's image

    gt_check = check_xyxy(gt_boxes, gt_keys, sizes(gt_img))
    if gt_check.looks_xyxy:
        findings.suspicious(gt_check.message("ground truth boxes"))
    check = check_xyxy(dets.boxes, _pair_keys(dets.image_ids, dets.category_ids, gtp), sizes(dets.image_ids),
                       gt_boxes, gt_keys)
    if check.looks_xyxy:
        findings.suspicious(check.message("detection boxes"))
    return check


def _tie_report(evaluator, backend: str, gtp: GroundTruth, dets: Detections, labels, iou_type) -> TieSensitivity:
    """Tie bounds from the backend's per-image evaluation (area "all", largest maxDets)."""
    p = evaluator.params
    img_ids = np.asarray(p.imgIds, dtype=np.int64)
    cat_ids = np.asarray(p.catIds, dtype=np.int64)
    d_cat, d_img = np.searchsorted(cat_ids, dets.category_ids), np.searchsorted(img_ids, dets.image_ids)
    anns = gtp.data["annotations"]
    g_cat = np.searchsorted(cat_ids, np.asarray([a["category_id"] for a in anns], np.int64))
    g_img = np.searchsorted(img_ids, np.asarray([a["image_id"] for a in anns], np.int64))
    pairs = nonempty_pairs(np.concatenate([d_cat, g_cat]), np.concatenate([d_img, g_img]))
    order = np.lexsort((np.arange(len(dets.scores)), -dets.scores, d_img, d_cat))  # evaluation order per pair
    sorted_scores = dets.scores[order]
    key = d_cat[order] * len(img_ids) + d_img[order]  # non-decreasing
    objects = objects_of(anns, p.areaRng[0], iou_type == "keypoints")

    def pair_spans(k, images):
        wanted = k * len(img_ids) + np.searchsorted(img_ids, np.asarray(images, np.int64))
        return sorted_scores, np.searchsorted(key, wanted, "left"), np.searchsorted(key, wanted, "right")

    def pair_objects(k, image):
        flags = objects.get((int(cat_ids[k]), int(image)), np.zeros((0, 2), bool))
        return evaluator.ious.get((image, int(cat_ids[k])), []), flags[:, 0], flags[:, 1]

    gather = from_faster if backend == "faster" else from_pycocotools
    return tie_sensitivity(gather(evaluator, pairs), len(cat_ids), labels, np.asarray(p.iouThrs),
                           np.asarray(p.recThrs), [int(m) for m in p.maxDets], pair_spans, pair_objects, iou_type)


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


def _run_pycocotools(gt_data, results, iou_type, sigmas):
    """(stats, precision (T, R, K, A, M), evaluator) from pycocotools' COCOeval, its prints silenced."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt, coco_dt = _build(COCO, gt_data, results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        _configure(evaluator, gt_data, sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats), np.asarray(evaluator.eval["precision"]), evaluator


def _run_faster(gt_data, results, iou_type, sigmas):
    """(stats, precision, evaluator) from faster-coco-eval's C++ COCOeval_faster (same params)."""
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
    return np.asarray(evaluator.stats)[:n], np.asarray(evaluator.eval["precision"]), evaluator
