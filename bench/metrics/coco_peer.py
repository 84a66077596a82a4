"""The peer the COCO evaluation is checked against: a plain call as a user writes it, with no harness
code on the path. COCO() + loadRes(copies) + COCOeval(iouType) evaluate / accumulate / summarize, and
per-class AP = mean of precision[:, :, k, area all, last maxDets] over entries > -1. Used by the parity
tests, the `evaluation` benchmark and `perf-eval`."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def direct_call(gt: dict, dets: list[dict], iou_type: str = "bbox", sigmas=None, backend: str = "pycocotools",
                copy_inputs: bool = True) -> tuple[np.ndarray, list[float | None]]:
    """(stats (12,) or (10,), per-class AP in catIds order; None where a class has no GT).
    copy_inputs=False hands the caller's lists over (pycocotools writes into them)."""
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster as Eval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt) if copy_inputs else gt
        coco_gt.createIndex()
        ev = Eval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets) if copy_inputs else dets), iouType=iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = np.asarray(ev.eval["precision"])
    per_class = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0, -1]
        per_class.append(float(p[p > -1].mean()) if (p > -1).any() else None)
    n = 10 if iou_type == "keypoints" else 12
    return np.asarray(ev.stats)[:n], per_class
