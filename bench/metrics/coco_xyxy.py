"""Do these COCO boxes look like corners (x0, y0, x1, y1) passed as (x, y, w, h)? A statistic beside
the number, never a change to it (docs/design.md §5).

Each box is read both ways. Read as corners a box must have x1 >= x0 and y1 >= y0: one box that does
not proves the set is not (all) xyxy, and valid xywh sets nearly always hold many such boxes (a
small object right of its own width). Among sets where every box reads as corners, the evidence is:
- overlap with the ground truth: the mean, over detections, of the best IoU with a ground-truth box of
  the same image and category, each way; corners that overlap the objects much better than the
  xywh reading are xyxy, whether or not the boxes stay inside the image;
- fit to the image, when the overlap says nothing (no ground truth near either reading): read as
  xywh, boxes pass the right/bottom edge by more than 10% of the side; read as corners, none do.
A valid xywh set whose boxes spill past the edge is not flagged: its xywh reading overlaps the objects
(or some boxes do not read as corners). Rates on generated sets: the `evaluation` benchmark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

IOU_MARGIN = 0.1  # mean best IoU read as corners must beat the xywh reading by this much
SPILL_FRACTION = 0.05  # fit test: at least this share of boxes spill as xywh (and none as corners)
NO_OVERLAP = 0.05  # below this mean best IoU either way, the overlap says nothing
_PAIRS_PER_CHUNK = 1_000_000


@dataclass
class XyxyCheck:
    """Evidence that boxes given as xywh are corners; `looks_xyxy` is the verdict."""

    boxes: int  # boxes examined
    valid_as_corners: float  # share of boxes with x1 >= x0 and y1 >= y0 when read as corners
    spill_xywh: float | None  # share passing the right/bottom edge by > 10% read as xywh (None: no sizes)
    spill_corners: float | None  # same, read as corners
    mean_iou_xywh: float | None  # mean best IoU with same-image same-category GT boxes (None: no GT)
    mean_iou_corners: float | None
    looks_xyxy: bool
    reason: str

    def message(self, what: str) -> str:
        return (f"{what} look like xyxy corners (x0, y0, x1, y1) given as COCO xywh: {self.reason}. "
                "Convert with bench.metrics.coco.boxes_xyxy_to_xywh if so")


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of xywh boxes a (P, 4) and b (P, 4), as pycocotools' bbox IoU (no +1)."""
    iw = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def best_iou(boxes: np.ndarray, keys: np.ndarray, gt_boxes: np.ndarray, gt_keys: np.ndarray) -> np.ndarray:
    """(N,) best IoU of each box (N, 4) with the gt boxes (G, 4) of the same key (an int64 per
    image-category pair); 0 where there is none."""
    best = np.zeros(len(boxes))
    if not len(boxes) or not len(gt_boxes):
        return best
    order = np.argsort(gt_keys, kind="stable")
    sorted_keys = gt_keys[order]
    lo, hi = np.searchsorted(sorted_keys, keys, "left"), np.searchsorted(sorted_keys, keys, "right")
    counts = hi - lo
    ends = np.cumsum(counts)
    start = 0
    while start < len(boxes):  # chunks of detections holding about _PAIRS_PER_CHUNK pairs
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _PAIRS_PER_CHUNK)))
        stop = min(stop, len(boxes))
        c = counts[start:stop]
        det = np.repeat(np.arange(start, stop), c)  # (P,) detection of each pair
        first = np.repeat(np.cumsum(c) - c, c)
        gt = order[np.repeat(lo[start:stop], c) + np.arange(len(det)) - first]  # (P,) gt of each pair
        np.maximum.at(best, det, _iou(boxes[det], gt_boxes[gt]))
        start = stop
    return best


def _mean(values: np.ndarray) -> float:
    """Mean with a correctly rounded sum: the same whatever the order of the boxes."""
    return math.fsum(values.tolist()) / len(values)


def _spill(boxes: np.ndarray, sizes: np.ndarray) -> float | None:
    """Share of boxes (xywh) passing the right/bottom edge by more than max(1 px, 10% of the side)."""
    known = np.isfinite(sizes).all(axis=1)
    if not known.any():
        return None
    b, s = boxes[known], sizes[known]
    over = b[:, :2] + b[:, 2:] - s  # (M, 2)
    return float(((over > np.maximum(1.0, 0.1 * s)).any(axis=1)).mean())


def check_xyxy(boxes: np.ndarray, keys: np.ndarray, sizes: np.ndarray, gt_boxes: np.ndarray | None = None,
               gt_keys: np.ndarray | None = None) -> XyxyCheck:
    """The statistic for boxes (N, 4) xywh with their pair keys (N,) and image sizes (N, 2) (width,
    height; NaN unknown); the ground truth's boxes (G, 4) and keys (G,) give the overlap evidence."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return XyxyCheck(0, 0.0, None, None, None, None, False, "no boxes")
    corners = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)  # read as x0, y0, x1, y1
    valid = (corners[:, 2:] >= 0).all(axis=1)
    share = float(valid.mean())
    if share < 1.0:  # settled: no need for the overlap (the common case, and the cheap one)
        return XyxyCheck(n, share, None, None, None, None, False,
                         f"{n - int(valid.sum())} of {n} boxes cannot be corners (x1 < x0 or y1 < y0)")
    spill_xywh, spill_corners = _spill(boxes, sizes), _spill(corners, sizes)
    iou_xywh = iou_corners = None
    if gt_boxes is not None and len(gt_boxes):
        iou_xywh = _mean(best_iou(boxes, keys, gt_boxes, gt_keys))
        iou_corners = _mean(best_iou(corners, keys, gt_boxes, gt_keys))
    check = XyxyCheck(n, share, spill_xywh, spill_corners, iou_xywh, iou_corners, False, "")
    if iou_xywh is not None and max(iou_xywh, iou_corners) >= NO_OVERLAP:
        check.looks_xyxy = iou_corners >= iou_xywh + IOU_MARGIN
        check.reason = (f"all {n} boxes read as corners; mean best IoU with the ground truth {iou_corners:.3f} "
                        f"read as corners vs {iou_xywh:.3f} read as xywh")
        return check
    if spill_xywh is not None and spill_corners is not None:
        check.looks_xyxy = spill_xywh >= SPILL_FRACTION and spill_corners == 0.0
        check.reason = (f"all {n} boxes read as corners; no overlap with the ground truth either way; "
                        f"{100 * spill_xywh:.1f}% pass the image edge by > 10% read as xywh, "
                        f"{100 * spill_corners:.1f}% read as corners")
        return check
    check.reason = f"all {n} boxes read as corners, but there is no ground truth overlap nor image size to tell"
    return check
