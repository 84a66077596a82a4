"""What the tie report reads from a backend, gathered per category in a few array operations.

From the per-image evaluation (area "all", the largest maxDets) of pycocotools (`evalImgs`) or
faster-coco-eval (its C++ COCOevalEvaluateImages, ImageEvaluation states): each detection's score, match and ignore
flags at every IoU threshold, and each image's count of objects that are not ignored. Only the
(image, category) pairs that hold a detection or an object are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np


@dataclass
class CategoryEval:
    """One category's evaluated detections, pair-major (each image's detections in evaluation order)."""

    k: int  # category index in params.catIds
    scores: np.ndarray  # (N,)
    matched: np.ndarray  # (T, N) bool
    ignored: np.ndarray  # (T, N) bool
    pair: np.ndarray  # (N,) index into `images`
    images: np.ndarray  # (P,) internal image id of each pair
    num_gt: np.ndarray  # (P,) objects of the pair that are not ignored

    @property
    def pos(self) -> np.ndarray:
        """(N,) position of each detection within its pair."""
        starts = np.searchsorted(self.pair, self.pair, side="left")
        return np.arange(len(self.pair)) - starts


def nonempty_pairs(cat_index: np.ndarray, image_index: np.ndarray) -> np.ndarray:
    """Sorted unique (category index, image index) rows (M, 2) of the given items."""
    if not len(cat_index):
        return np.zeros((0, 2), np.int64)
    width = int(image_index.max()) + 1
    key = np.unique(cat_index.astype(np.int64) * width + image_index)
    return np.stack([key // width, key % width], axis=1)


def _gather(k: int, rows: list, T: int, images: np.ndarray) -> CategoryEval:
    """rows: per pair (scores list, flat (T, D) match list, flat (T, D) ignore list, gt-ignore list)."""
    sizes = np.fromiter((len(r[0]) for r in rows), np.int64, len(rows))
    scores = np.fromiter(chain.from_iterable(r[0] for r in rows), np.float64, int(sizes.sum()))
    matched_flat = np.fromiter(chain.from_iterable(r[1] for r in rows), np.float64, int(T * sizes.sum()))
    ignored_flat = np.fromiter(chain.from_iterable(r[2] for r in rows), np.float64, int(T * sizes.sum()))
    gt_sizes = np.fromiter((len(r[3]) for r in rows), np.int64, len(rows))
    gt_ignored = np.fromiter(chain.from_iterable(r[3] for r in rows), np.float64, int(gt_sizes.sum()))
    pair_of_gt = np.repeat(np.arange(len(rows)), gt_sizes)
    num_gt = np.bincount(pair_of_gt, gt_ignored == 0, len(rows)).astype(np.int64)
    pair = np.repeat(np.arange(len(rows)), sizes)
    offset = np.repeat(T * (np.cumsum(sizes) - sizes), sizes)  # start of each detection's pair block
    pos = np.arange(len(pair)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    index = offset[None, :] + np.arange(T)[:, None] * sizes[pair][None, :] + pos[None, :]  # (T, N) row-major blocks
    return CategoryEval(k, scores, matched_flat[index] > 0, ignored_flat[index] > 0, pair, images, num_gt)


def from_pycocotools(evaluator, pairs: np.ndarray) -> list[CategoryEval]:
    """Categories from pycocotools' evalImgs; pairs (M, 2) of (category index, image index)."""
    p = evaluator.params
    T, I, A = len(p.iouThrs), len(p.imgIds), len(p.areaRng)
    out = []
    for k in np.unique(pairs[:, 0]).tolist():
        images = pairs[pairs[:, 0] == k, 1]
        entries = [evaluator.evalImgs[k * A * I + i] for i in images.tolist()]
        keep = [j for j, e in enumerate(entries) if e is not None]
        rows = [(entries[j]["dtScores"], np.asarray(entries[j]["dtMatches"]).ravel().tolist(),
                 np.asarray(entries[j]["dtIgnore"]).ravel().tolist(), np.asarray(entries[j]["gtIgnore"]).tolist())
                for j in keep]
        out.append(_gather(k, rows, T, np.asarray([p.imgIds[i] for i in images[keep].tolist()])))
    return out


def from_faster(evaluator, pairs: np.ndarray) -> list[CategoryEval]:
    """Categories from faster-coco-eval: its C++ per-image evaluation run again for area "all" only (a
    quarter of the work of separate_eval), on the IoUs and datasets its evaluate() left behind."""
    import faster_coco_eval.faster_eval_api_cpp as _C

    p = evaluator.params
    T, I = len(p.iouThrs), len(p.imgIds)
    cat_ids = list(p.catIds)
    ious = [[evaluator.ious[img, cat] for cat in cat_ids] for img in p.imgIds]
    states = _C.COCOevalEvaluateImages([list(p.areaRng[0])], p.maxDets[-1], list(p.iouThrs), ious,
                                       evaluator.gt_dataset, evaluator.dt_dataset, list(p.imgIds), cat_ids,
                                       bool(p.useCats))
    out = []
    for k in np.unique(pairs[:, 0]).tolist():
        images = pairs[pairs[:, 0] == k, 1]
        raw = [states[k * I + i].__getstate__() for i in images.tolist()]
        keep = [j for j, r in enumerate(raw) if r[2] or r[3]]
        rows = [(raw[j][2], raw[j][0], raw[j][4], raw[j][3]) for j in keep]
        out.append(_gather(k, rows, T, np.asarray([p.imgIds[i] for i in images[keep].tolist()])))
    return out


def objects_of(annotations: list[dict[str, Any]], area_range, keypoints: bool) -> dict:
    """(category id, image id) -> (crowd (G,), ignored at area "all" (G,)) in dataset order."""
    lo, hi = area_range
    flags: dict = {}
    for a in annotations:
        ignored = bool(a["iscrowd"]) or not lo <= a["area"] <= hi or (keypoints and a["num_keypoints"] == 0)
        flags.setdefault((a["category_id"], a["image_id"]), []).append((bool(a["iscrowd"]), ignored))
    return {key: np.asarray(v, bool).reshape(-1, 2) for key, v in flags.items()}
