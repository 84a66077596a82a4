"""`perf-eval`: COCO evaluation speed. pycocotools vs faster-coco-eval called directly, and the same
through the harness's `evaluate_detections` (checks, copies, top-100 cap): the harness overhead.
All timings in one run on the same generated detections; stats parity between the backends."""

from __future__ import annotations

import contextlib
import copy
import io
import time

import numpy as np

from bench.metrics.coco import evaluate_detections
from bench.registry import RunContext, register_benchmark
from bench.results import BenchmarkResult, Section, Table


def synthetic_detections(num_images: int, per_image: int = 100, seed: int = 0, side: int = 640, ties: bool = True):
    """A COCO gt dict (3-10 objects per image, 5 categories) and `per_image` detections per image:
    jittered copies of the GT (true positives at varied IoU) plus random boxes; with `ties` the scores
    are rounded to 2 decimals so that ties occur."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": side, "height": side})
        n = int(rng.integers(3, 11))
        xy = rng.uniform(0, side * 0.7, (n, 2))
        wh = rng.uniform(8, side * 0.3, (n, 2))
        cats = rng.integers(1, 6, n)
        for box_xy, box_wh, cat in zip(xy, wh, cats):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(cat), "iscrowd": 0,
                         "bbox": [*box_xy.tolist(), *box_wh.tolist()], "area": float(box_wh.prod())})
        pick = rng.integers(0, n, per_image // 2)
        jitter = rng.normal(0, 0.08, (per_image // 2, 4)) * np.concatenate([wh[pick], wh[pick]], 1)
        boxes = np.concatenate([xy[pick], wh[pick]], 1) + jitter
        rand_xy = rng.uniform(0, side * 0.8, (per_image - per_image // 2, 2))
        rand_wh = rng.uniform(4, side * 0.2, (per_image - per_image // 2, 2))
        boxes = np.concatenate([boxes, np.concatenate([rand_xy, rand_wh], 1)])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        boxes[:, :2] = np.clip(boxes[:, :2], 0, side - boxes[:, 2:])
        det_cats = np.concatenate([cats[pick], rng.integers(1, 6, per_image - per_image // 2)])
        scores = rng.uniform(0, 1, per_image)
        scores = np.round(scores, 2) if ties else scores
        for box, cat, score in zip(boxes.tolist(), det_cats.tolist(), scores.tolist()):
            dets.append({"image_id": image_id, "category_id": int(cat), "bbox": box, "score": score})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in range(1, 6)]}
    return gt, dets


def evaluate_directly(gt: dict, dets: list[dict], backend: str) -> np.ndarray:
    """What a user writes without the harness: build COCO objects, loadRes, evaluate, return stats."""
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster as Eval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval as Eval
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = Eval(coco_gt, coco_gt.loadRes(dets), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats)[:12]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def measure(num_images: int, seed: int, backends: tuple[str, ...], ties: bool = True) -> dict:
    gt, dets = synthetic_detections(num_images, seed=seed, ties=ties)
    out = {"images": num_images, "detections": len(dets), "score_ties": ties}
    for backend in backends:
        raw, t_raw = timed(evaluate_directly, copy.deepcopy(gt), copy.deepcopy(dets), backend)
        res, t_harness = timed(evaluate_detections, gt, dets, backend=backend)
        harness_stats = np.array([(-1.0 if v is None else v) for v in res.stats.values()])
        out[backend] = {"direct_s": t_raw, "harness_s": t_harness, "overhead": t_harness / t_raw - 1.0,
                        "stats": harness_stats.tolist(), "max_diff_vs_direct": float(np.abs(harness_stats - raw).max())}
    if len(backends) == 2:
        a, b = (np.array(out[k]["stats"]) for k in backends)
        out["backend_max_diff"] = float(np.abs(a - b).max())
        out["speedup_direct"] = out["pycocotools"]["direct_s"] / out["faster"]["direct_s"]
    return out


@register_benchmark("perf-eval", description="COCO evaluation speed: pycocotools vs faster-coco-eval, harness overhead",
                    report="performance", order=2, report_title="Performance")
def run(ctx: RunContext) -> BenchmarkResult:
    large = 500 if ctx.quick else 5000
    small = 200 if ctx.quick else 1000
    runs = [measure(large, ctx.seed, ("pycocotools", "faster")),
            measure(small, ctx.seed + 1, ("pycocotools", "faster"), ties=False)]
    rows = []
    for r in runs:
        for backend in ("pycocotools", "faster"):
            m = r[backend]
            rows.append([r["images"], r["detections"], "yes" if r["score_ties"] else "no", backend, m["direct_s"], m["harness_s"], 100 * m["overhead"],
                         m["max_diff_vs_direct"]])
    parity = [[r["images"], "yes" if r["score_ties"] else "no", r["speedup_direct"], r["backend_max_diff"]] for r in runs]
    text = (f"Generated ground truth (3-10 objects per image, 5 categories) and 100 detections per image "
            f"(half jittered ground truth, half random, scores rounded to 2 decimals so ties occur). 'direct' "
            f"= COCO() + loadRes + COCOeval evaluate/accumulate/summarize as a user would call it; 'harness' = "
            f"`bench.metrics.coco.evaluate_detections` (input checks, private copies, top-100 cap, all images "
            f"kept, garbage collector paused). Overhead = harness / direct - 1 (negative: the harness is faster). "
            f"With score ties the harness differs from a direct call by design: it orders tied detections by "
            f"content (so the result does not depend on input order), COCOeval by input position; without ties "
            f"they agree. Targets: the fast path <= 10 s on 5000 x 100; harness overhead <= 10%.")
    return BenchmarkResult(
        benchmark="perf-eval", report="performance", title="COCO evaluation speed",
        metrics={"runs": runs}, config={"images": [large, small], "per_image": 100, "quick": ctx.quick},
        seeds={"seed": ctx.seed},
        sections=[Section("Evaluation time", text=text, tables=[
            Table(["images", "detections", "score ties", "backend", "direct (s)", "harness (s)", "harness overhead (%)",
                   "max |stat diff| harness vs direct"], rows, floatfmt=".3g"),
            Table(["images", "score ties", "pycocotools / faster-coco-eval (direct)", "max |stat diff| between backends"], parity,
                  title="Backend speed ratio and parity", floatfmt=".3g")])])
