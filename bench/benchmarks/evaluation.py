"""Benchmark `evaluation` -> reports/evaluation.md: is `evaluate_detections` pycocotools' number, and
what does it report beside it (docs/design.md §5)?

- parity: max |stat difference| and max |per-class AP difference| against a plain pycocotools call
  (bench/metrics/coco_peer.py) on generated probes, for both backends;
- tie sensitivity: the tie bounds of the probes, how far a shuffled file moves pycocotools' own number,
  and the bounds checked against brute force over every tie order on small sets;
- the xyxy statistic: how often it fires on valid xywh sets (false positives) and stays silent on
  corners given as xywh (misses), per generated scenario.
CPU only, ~1 minute (`ctx.quick`: a few seconds).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

from bench.datasets.coco_probes import (cap_probe, detection_probe, in_image_corners_probe, probe_summary,
                                        with_string_ids, without_sizes, xyxy_scenarios)
from bench.metrics.coco import evaluate_detections, xyxy_evidence
from bench.metrics.coco_peer import direct_call
from bench.progress import Progress, progress
from bench.registry import RunContext, register_benchmark
from bench.results import BenchmarkResult, Section, Table

PARITY_TOLERANCE = 1e-12
TIE_STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AR1": 6, "AR10": 7, "AR100": 8}


def parity_probes(quick: bool) -> dict[str, tuple[dict, list[dict]]]:
    """The generated probes of the parity table (name -> (gt, detections))."""
    n = 20 if quick else 60
    probes = {f"scores {mode}": detection_probe(n, per_image=100, num_categories=20, crowd=0.02, seed=i, scores=mode)
              for i, mode in enumerate(("float", "clip", "round1", "round2"))}
    probes["> 100 per image and class"] = detection_probe(4 if quick else 10, per_image=260, num_categories=2,
                                                          crowd=0.05, seed=7, scores="round2")
    probes["string image ids"] = with_string_ids(*detection_probe(n // 3, per_image=60, num_categories=5, seed=8,
                                                                  scores="round1"))
    gt, dets = detection_probe(n // 3, per_image=60, num_categories=5, seed=9)
    probes["images without sizes"] = (without_sizes(gt, share=0.5, seed=1), dets)
    probes["per-image cap probe"] = cap_probe()
    probes["corners inside the image"] = in_image_corners_probe(50, seed=3)
    return probes


def _stat_array(result) -> np.ndarray:
    return np.array([-1.0 if v is None else v for v in result.stats.values()])


def _parity(probes) -> tuple[list[list], dict]:
    rows, worst = [], {"pycocotools": 0.0, "faster": 0.0}
    for name, (gt, dets) in progress(probes.items(), desc="parity", unit="probe"):
        stats, per_class = direct_call(gt, dets)
        s = probe_summary(gt, dets)
        diffs = {}
        for backend in ("pycocotools", "faster"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = evaluate_detections(gt, dets, backend=backend)
            pc = max((abs(a - b) for a, b in zip(r.per_class_ap.values(), per_class) if a is not None and b is not None),
                     default=0.0)
            diffs[backend] = max(float(np.abs(_stat_array(r) - stats).max()), pc)
            worst[backend] = max(worst[backend], diffs[backend])
        rows.append([name, s["images"], s["detections"], s["crowd"], s["spilling"], s["max_per_image"], s["tied_scores"],
                     float(stats[0]), diffs["pycocotools"], diffs["faster"]])
    return rows, worst


def _tie_rows(probes, seed: int) -> list[list]:
    rows = []
    for name, (gt, dets) in probes.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = evaluate_detections(gt, dets)
        order = np.random.default_rng(seed).permutation(len(dets))
        shuffled = direct_call(gt, [dets[i] for i in order])[0][0]
        t = r.ties
        rows.append([name, t.tied_groups, t.straddling_groups, t.conflicting_groups, r.stats["AP"], shuffled,
                     t.low["AP"], t.high["AP"], t.low["AP50"], t.high["AP50"], "range" if t.attained else "bound"])
    return rows


def _tied_scene(rng: np.random.Generator) -> tuple[dict, list[dict]]:
    """1-3 images, 1-3 objects each (two classes, some crowd), jittered copies and stray boxes; scores 0.5 or 1.0."""
    images, anns, dets = [], [], []
    for i in range(int(rng.integers(1, 4))):
        images.append({"id": i + 1, "width": 100, "height": 100})
        for _ in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(10, 40, 2)
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, w, h],
                         "area": float(w * h), "iscrowd": int(rng.uniform() < 0.15)})
            for _ in range(int(rng.integers(0, 3))):
                j = rng.normal(0, 4, 4)
                dets.append({"image_id": i + 1, "category_id": cat,
                             "bbox": [x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])]})
        if rng.uniform() < 0.5:
            dets.append({"image_id": i + 1, "category_id": int(rng.integers(1, 3)),
                         "bbox": [*rng.uniform(0, 50, 2).tolist(), *rng.uniform(5, 40, 2).tolist()]})
    for d in dets:
        d["score"] = float(rng.choice([0.5, 1.0]))
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, dets


def tie_orders(dets: list[dict]):
    """Every order of each category's tied detections, as detection lists whose distinct scores keep it."""
    groups: dict = {}
    for i, d in enumerate(dets):
        groups.setdefault((d["category_id"], d["score"]), []).append(i)
    groups = list(groups.values())
    for combo in itertools.product(*[itertools.permutations(g) for g in groups]):
        rank = {i: r for perm in combo for r, i in enumerate(perm)}
        yield [{**d, "score": d["score"] - rank[i] * 1e-6} for i, d in enumerate(dets)]


def count_tie_orders(dets: list[dict]) -> int:
    """How many orders `tie_orders` yields: the product of each tied group's factorial."""
    sizes: dict = {}
    for d in dets:
        sizes[(d["category_id"], d["score"])] = sizes.get((d["category_id"], d["score"]), 0) + 1
    return math.prod(math.factorial(v) for v in sizes.values())


def _brute_force(num_scenes: int, seed: int, max_orders: int = 120) -> dict:
    """Tie bounds vs every tie order on small scenes: violations, exactness where attained, looseness."""
    rng = np.random.default_rng(seed)
    out = {"scenes": 0, "orders": 0, "violations": 0, "attained_scenes": 0, "attained_inexact": 0,
           "excess_ap": [], "excess_ap_conflicts": []}
    with Progress(total=num_scenes, desc="tie brute force", unit="scene") as bar:
        while out["scenes"] < num_scenes:
            gt, dets = _tied_scene(rng)
            if not 2 <= count_tie_orders(dets) <= max_orders:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = evaluate_detections(gt, dets).ties
            runs = np.array([direct_call(gt, o)[0][list(TIE_STATS.values())] for o in tie_orders(dets)])
            out["scenes"] += 1
            out["orders"] += len(runs)
            for j, name in enumerate(TIE_STATS):
                lo, hi = t.low[name], t.high[name]
                if lo is None:
                    continue
                out["violations"] += int(runs[:, j].min() < lo - 1e-12 or runs[:, j].max() > hi + 1e-12)
                if name == "AP":
                    key = "excess_ap" if t.attained else "excess_ap_conflicts"
                    excess = (hi - lo) - (runs[:, j].max() - runs[:, j].min())
                    out[key].append(excess if excess > 1e-12 else 0.0)  # below 1e-12: rounding of the means
            if t.attained:
                out["attained_scenes"] += 1
                for name in ("AP50", "AP75"):
                    j = list(TIE_STATS).index(name)
                    if t.low[name] is not None and (abs(runs[:, j].min() - t.low[name]) > 1e-12
                                                    or abs(runs[:, j].max() - t.high[name]) > 1e-12):
                        out["attained_inexact"] += 1
            bar.update(1)
    for key in ("excess_ap", "excess_ap_conflicts"):
        values = out.pop(key)
        out[f"max_{key}"] = float(max(values)) if values else 0.0
        out[f"mean_{key}"] = float(np.mean(values)) if values else 0.0
        out[f"n_{key}"] = len(values)
    return out


def _xyxy_rows(num_sets: int, seed: int) -> tuple[list[list], dict]:
    rows, totals = [], {"valid": [0, 0], "corners": [0, 0]}
    for name, (corners, sets) in progress(xyxy_scenarios(num_sets, seed).items(), desc="xyxy", unit="scenario"):
        fired = sum(xyxy_evidence(gt, dets).looks_xyxy for gt, dets in sets)
        wrong = len(sets) - fired if corners else fired
        totals["corners" if corners else "valid"][0] += wrong
        totals["corners" if corners else "valid"][1] += len(sets)
        rows.append([name, "corners" if corners else "xywh", len(sets), fired, 100.0 * wrong / len(sets)])
    rates = {"false_positive_rate": totals["valid"][0] / totals["valid"][1], "valid_sets": totals["valid"][1],
             "miss_rate": totals["corners"][0] / totals["corners"][1], "corner_sets": totals["corners"][1]}
    return rows, rates


@register_benchmark("evaluation", description="COCO evaluation: parity with pycocotools, tie sensitivity, xyxy rates",
                    report="evaluation", order=0, report_title="COCO evaluation")
def run(ctx: RunContext) -> BenchmarkResult:
    probes = parity_probes(ctx.quick)
    parity_rows, worst = _parity(probes)
    tie_rows = _tie_rows({k: v for k, v in probes.items() if k.startswith(("scores", "> 100", "string"))}, ctx.seed)
    brute = _brute_force(8 if ctx.quick else 40, ctx.seed)
    xyxy_rows, rates = _xyxy_rows(10 if ctx.quick else 100, ctx.seed)
    ok = max(worst.values()) <= PARITY_TOLERANCE and brute["violations"] == 0 and brute["attained_inexact"] == 0
    parity = Section("Parity with a plain pycocotools call", text=(
        "Each probe is scored by a plain call (COCO() + loadRes + COCOeval(iouType='bbox') evaluate / accumulate / "
        "summarize on copies) and by `evaluate_detections` with default settings on each backend. The difference "
        "is the largest over the 12 stats and the per-class AP. Target: <= 1e-12 on every probe: "
        f"{'met' if max(worst.values()) <= PARITY_TOLERANCE else 'NOT met'} (pycocotools backend "
        f"{worst['pycocotools']:.2g}, faster-coco-eval {worst['faster']:.2g}). Probes: generated COCO-like sets "
        "(bench/datasets/coco_probes.py): 2-14 objects per image, crowd regions, one to three jittered copies per "
        "object plus random boxes, 5% of the boxes pushed past the right or bottom edge (valid xywh); scores as "
        "floats, clipped at 1.0, or rounded to 1 or 2 decimals (ties)."), tables=[Table(
            ["probe", "images", "detections", "crowd", "boxes past the edge", "max per image", "tied scores", "AP",
             "max diff, pycocotools backend", "max diff, faster backend"], parity_rows,
            kinds=["text", "count", "count", "count", "count", "count", "count", "metric", "diff", "diff"])])
    ties = Section("Tie sensitivity", text=(
        "pycocotools sorts detections by score with a stable sort, so the order of tied detections (file order "
        "within an image, image ids across images) is part of its number. `CocoEvaluation.ties` bounds each stat "
        "over every order of tied scores (bench/metrics/coco_ties.py); 'range' where no tied run changes the "
        "matching (the AP50 bound is then reached by some order), 'bound' otherwise. 'shuffled file' is the AP of a "
        f"plain pycocotools call on the same detections in a random order. Brute force over every tie order on "
        f"{brute['scenes']} small scenes ({brute['orders']} orders, each scored by pycocotools): "
        f"{brute['violations']} bound violations; {brute['attained_scenes']} scenes without conflicts, "
        f"{brute['attained_inexact']} of them with AP50/AP75 bounds off the brute-force extremes; the AP bound is "
        f"wider than the true range by {brute['mean_excess_ap']:.2g} on average (max {brute['max_excess_ap']:.2g}) "
        f"without conflicts and {brute['mean_excess_ap_conflicts']:.2g} (max {brute['max_excess_ap_conflicts']:.2g}) "
        f"with them."), tables=[Table(
            ["probe", "tied groups", "straddling a match", "changing the matching", "AP (pycocotools order)",
             "AP, shuffled file", "AP low", "AP high", "AP50 low", "AP50 high", "kind"], tie_rows,
            kinds=["text", "count", "count", "count", "metric", "metric", "metric", "metric", "metric", "metric", "text"])])
    xyxy = Section("xyxy detection", text=(
        "The statistic reads every box both ways (bench/metrics/coco_xyxy.py) and warns (an error under --strict) "
        f"when the boxes look like corners; it never changes the number. Measured on generated sets (5 images of "
        f"640 x 480, 10 detections each unless stated): false-positive rate on valid xywh sets "
        f"{100 * rates['false_positive_rate']:.1f}% ({rates['valid_sets']} sets), miss rate on corners given as "
        f"xywh {100 * rates['miss_rate']:.1f}% ({rates['corner_sets']} sets)."), tables=[Table(
            ["scenario", "boxes are", "sets", "flagged", "wrong (%)"], xyxy_rows,
            kinds=["text", "text", "count", "count", "percent"])])
    return BenchmarkResult(benchmark="evaluation", report="evaluation", title="COCO evaluation",
                           metrics={"parity_max_diff": worst, "tie_brute_force": brute, "xyxy": rates,
                                    "tie_probes": {r[0]: {"low": r[6], "high": r[7], "ap": r[4], "shuffled": r[5]}
                                                   for r in tie_rows}},
                           config={"quick": ctx.quick, "tolerance": PARITY_TOLERANCE}, seeds={"seed": ctx.seed},
                           sections=[parity, ties, xyxy], ok=bool(ok),
                           problems=[] if ok else [f"parity {worst}, brute force {brute}"])
