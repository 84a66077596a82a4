"""Detections for the COCO evaluation: validated, copied, in INPUT order (pycocotools sorts them by score
with a stable mergesort, so tied detections keep their file order and the order is part of the number).

Errors (always): image ids not in the ground truth (pycocotools asserts), non-finite scores or values,
boxes of negative size, malformed or corrupt RLE, RLE sizes other than the image's. Suspicious (a
warning, strict mode an error): category ids not in the ground truth (pycocotools never evaluates
them: they are dropped here too), boxes given beside masks or keypoints (pycocotools then takes each
detection's area from its box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from bench.metrics.coco_checks import (PAYLOAD, Findings, GroundTruth, check_boxes, check_finite, float_rows,
                                       some)
from bench.metrics.coco_rle import check_rle


@dataclass
class Detections:
    """Result dicts for loadRes (input order) and the arrays the extra checks read."""

    results: list[dict[str, Any]]
    image_ids: np.ndarray  # (N,) int64 internal image id of each result
    category_ids: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float64
    boxes: np.ndarray | None  # (N, 4) float64 xywh for iou_type bbox, else None
    num_input: int  # detections given
    num_unknown_category: int  # dropped: category not in the ground truth
    num_capped: int  # dropped by max_per_image


def top_per_image(image_ids: np.ndarray, scores: np.ndarray, max_per_image: int) -> np.ndarray:
    """Bool mask (N,) of the detections kept by a per-image cap: the `max_per_image` highest scores of each
    image, ties broken by input order (as pycocotools' stable sort would)."""
    order = np.lexsort((np.arange(len(scores)), -scores, image_ids))
    sorted_ids = image_ids[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_ids, sorted_ids, side="left")  # rank within its image
    keep = np.zeros(len(scores), dtype=bool)
    keep[order[rank < max_per_image]] = True
    return keep


def prepare_detections(detections: Sequence[Mapping[str, Any]], gt: GroundTruth, iou_type: str,
                       max_per_image: int | None, num_keypoints: int, findings: Findings) -> Detections:
    """Validate COCO result dicts against a prepared ground truth; fresh result dicts in input order."""
    if not isinstance(detections, (list, tuple)):
        raise ValueError(f"detections must be a list of COCO result dicts, got {type(detections).__name__}")
    payload = PAYLOAD[iou_type]
    try:  # fast path: one comprehension per field; the loop below only runs to name a bad detection
        fields = [[d[k] for d in detections] for k in ("image_id", "category_id", "score", payload)]
    except (KeyError, TypeError, IndexError):
        for i, d in enumerate(detections):
            if not isinstance(d, Mapping):
                raise ValueError(f"detection #{i} is a {type(d).__name__}, not a COCO result dict") from None
            missing = [k for k in ("image_id", "category_id", "score", payload) if k not in d]
            if missing:
                raise ValueError(f"detection #{i} lacks {missing} (needed for iou_type={iou_type!r})") from None
        raise
    img, img_ok = gt.images.lookup(fields[0])
    if not img_ok.all():
        raise ValueError(f"detections refer to image_id(s) not in the ground truth: "
                         f"{some(fields[0][i] for i in np.flatnonzero(~img_ok))} (pycocotools refuses them too)")
    cat, cat_ok = gt.categories.lookup(fields[1])

    def name(i):
        return f"detection #{i} (image_id {fields[0][i]!r}, category_id {fields[1][i]!r})"

    try:
        scores = np.asarray(fields[2], dtype=np.float64).reshape(-1)
        if scores.size != len(detections):
            raise ValueError
    except (TypeError, ValueError):
        i = next(i for i, v in enumerate(fields[2]) if isinstance(v, bool) or not isinstance(v, (int, float, np.number)))
        raise ValueError(f"{name(i)}: score {fields[2][i]!r} is not a number") from None
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{name(bad[0])}: score {scores[bad[0]]} is not finite")

    if iou_type == "bbox":
        values = float_rows(fields[3], 4, name, "bbox")
        check_boxes(values, name)
    elif iou_type == "keypoints":
        values = float_rows(fields[3], 3 * num_keypoints, name, "keypoints")
        check_finite(values, name, "keypoints")
    else:
        values = [_rle(seg, gt.sizes[int(img[i])], name(i)) for i, seg in enumerate(fields[3])]
    extra_boxes = _boxes_beside(detections, iou_type, name, findings)

    if not cat_ok.all():
        findings.suspicious(f"{int((~cat_ok).sum())} detections have category ids not in the ground truth: "
                            f"{some(fields[1][i] for i in np.flatnonzero(~cat_ok))}; pycocotools never "
                            "evaluates them, nor does this (dropped)")
    keep = cat_ok.copy()
    num_capped = 0
    if max_per_image is not None:
        capped = np.zeros(len(keep), dtype=bool)
        kept_idx = np.flatnonzero(keep)
        capped[kept_idx] = top_per_image(img[kept_idx], scores[kept_idx], max_per_image)
        num_capped = int(keep.sum() - capped.sum())
        keep = capped
    idx = np.flatnonzero(keep)
    img_l, cat_l, score_l = img.tolist(), cat.tolist(), scores.tolist()
    rows = values.tolist() if isinstance(values, np.ndarray) else values
    results = [{"image_id": img_l[i], "category_id": cat_l[i], payload: rows[i], "score": score_l[i]}
               for i in idx.tolist()]
    if extra_boxes is not None:
        for r, i in zip(results, idx.tolist()):
            r["bbox"] = extra_boxes[i]
    return Detections(results, img[idx], cat[idx], scores[idx], values[idx] if iou_type == "bbox" else None,
                      len(detections), int((~cat_ok).sum()), num_capped)


def _boxes_beside(detections, iou_type: str, name, findings: Findings) -> list | None:
    """For segm / keypoints: pycocotools' loadRes takes EVERY result's area from its 'bbox' when the first
    result has a non-empty one (detectron2 drops the boxes for that reason). Mirrored here, with a warning;
    returns the boxes as lists, or None when loadRes would ignore them."""
    if iou_type == "bbox" or not detections:
        return None
    first = detections[0].get("bbox")
    if first is None or (isinstance(first, (list, tuple)) and len(first) == 0):
        return None
    missing = [i for i, d in enumerate(detections) if "bbox" not in d]
    if missing:
        raise ValueError(f"{name(missing[0])} lacks 'bbox' while detection #0 has one: pycocotools would take "
                         "every area from 'bbox' and fail here; give boxes to all detections or to none")
    boxes = float_rows([d["bbox"] for d in detections], 4, name, "bbox")
    check_boxes(boxes, name)
    findings.suspicious(f"{iou_type} detections carry a 'bbox': pycocotools then takes each detection's area "
                        f"from its box, not its {'mask' if iou_type == 'segm' else 'keypoints'}, for the size "
                        "buckets (APs/APm/APl); done here too. Drop 'bbox' for mask areas (detectron2 does)")
    return boxes.tolist()


def _rle(seg: Any, size_wh: tuple[float, float], name: str) -> dict[str, Any]:
    """A detection's segmentation as a validated compressed RLE dict (a fresh copy)."""
    from pycocotools import mask as mask_utils

    h, w = check_rle(seg, name)
    if not (math.isnan(size_wh[0]) or math.isnan(size_wh[1])) and (w, h) != size_wh:
        raise ValueError(f"{name}: RLE size [h, w] = {[h, w]} differs from the image's "
                         f"[{size_wh[1]:g}, {size_wh[0]:g}] (pycocotools would give IoU -1: never a match)")
    counts = seg["counts"]
    if isinstance(counts, (list, tuple, np.ndarray)):  # uncompressed RLE -> compressed
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": [int(c) for c in counts]}, h, w)
        return {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    return {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts)}
