"""Tie sensitivity of a COCO evaluation: how far the stats could move if tied detections (equal scores)
were taken in another order. Reported beside the number, never folded into it (docs/design.md §5).

pycocotools sorts by score with a stable mergesort: within an image and category, tied detections keep
their file order (which decides who claims an object first, and who survives the maxDets cut); across
images they follow the sorted image ids. Another evaluator, or the same file in another order, may
order them otherwise. How the bounds are built, per category and IoU threshold (area "all"):

- each detection's outcome (match, miss, ignored) comes from the backend's per-image evaluation. Within
  one image, tied detections that could claim the same non-crowd object (IoU >= threshold), or a tied
  run cut by maxDets, make outcomes order-dependent: those detections are tainted, and so is any later
  one that could claim an object a tainted one could (propagated in score order);
- per image, after each run of equal scores, the count of matches is bounded above (by the tainted
  detections that could match, and by the distinct objects they could claim) and below (an object only
  tainted detections can claim is matched by the first of them, whatever the order); misses likewise;
- across images, within a run of equal scores, the upper bound puts matches first and the lower bound
  misses first; no order does better or worse (interpolated precision only rises when a match moves
  ahead of a miss). Bounds on these counts give bounds on every point of the precision envelope.

So `low` / `high` are sound bounds over every tie order. Without conflicts (`attained`) the counts are
exact, and each category's bound at each threshold is reached by some order: the AP50 and AP75 ranges
are exact; AP (a mean over thresholds, each with its own best order) and AR may be slightly looser.
tests/test_coco_ties.py checks both against brute force over all orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from bench.metrics.coco_tie_inputs import CategoryEval
from bench.metrics.coco_tie_pairs import PairEval, pair_bounds, runs

__all__ = ["TieSensitivity", "PairEval", "has_ties", "tie_sensitivity", "tie_stat_names"]


@dataclass
class TieSensitivity:
    """How much the reported stats depend on the order of tied scores (bounds over every order)."""

    tied_groups: int  # runs of >= 2 evaluated detections of one category sharing a score
    tied_detections: int  # detections in those runs
    straddling_groups: int  # tied runs holding a possible match and a possible miss at some IoU threshold
    conflicting_groups: int  # tied runs within one image and category whose order changes the matching itself
    low: dict[str, float | None] = field(default_factory=dict)  # stat -> lower bound over tie orders
    high: dict[str, float | None] = field(default_factory=dict)  # stat -> upper bound
    per_class_low: dict[str, float | None] = field(default_factory=dict)  # category name -> AP lower bound
    per_class_high: dict[str, float | None] = field(default_factory=dict)
    attained: bool = True  # no conflicting run: per-threshold bounds are reached (AP50 / AP75 exact)

    def spread(self, stat: str = "AP") -> float:
        """high - low of one stat (0.0 where undefined)."""
        lo, hi = self.low.get(stat), self.high.get(stat)
        return 0.0 if lo is None or hi is None else hi - lo

    def summary(self) -> str:
        kind = "range" if self.attained else "bound"
        return (f"{self.straddling_groups} of {self.tied_groups} tied-score groups straddle a match decision "
                f"({self.conflicting_groups} change the matching itself); AP {kind} over tie orders "
                f"{_fmt(self.low.get('AP'))}..{_fmt(self.high.get('AP'))}, AP50 {_fmt(self.low.get('AP50'))}.."
                f"{_fmt(self.high.get('AP50'))}")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def tie_stat_names(iou_type: str) -> tuple[str, ...]:
    """The stats whose tie bounds are reported: AP at three thresholds and AR at each maxDets."""
    return ("AP", "AP50", "AP75", "AR", "AR50", "AR75") if iou_type == "keypoints" else \
        ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")


def has_ties(category_ids: np.ndarray, scores: np.ndarray) -> bool:
    """True when two detections of one category share a score (else nothing depends on tie order)."""
    order = np.lexsort((scores, category_ids))
    c, s = category_ids[order], scores[order]
    return bool(np.any((c[1:] == c[:-1]) & (s[1:] == s[:-1])))


def _upper_curve(tp: np.ndarray, fp: np.ndarray, num_gt: int, rec_thrs: np.ndarray) -> np.ndarray:
    """(R,) interpolated precision when each run's matches come first: tp, fp (L,) are the bounds after
    each score level (matches: upper, misses: lower). The best point with x matches has the misses of
    the level before the one where x is reached."""
    top = int(tp[-1]) if len(tp) else 0
    if top == 0:
        return np.zeros(len(rec_thrs))
    x = np.arange(1, top + 1, dtype=float)
    level = np.searchsorted(tp, x, side="left")  # first level whose bound reaches x matches
    misses = np.where(level > 0, fp[np.maximum(level - 1, 0)], 0.0)
    pr = x / (misses + x + np.spacing(1))
    env = np.maximum.accumulate(pr[::-1])[::-1]
    inds = np.searchsorted(x / num_gt, rec_thrs, side="left")
    return np.where(inds < top, env[np.minimum(inds, top - 1)], 0.0)


def _lower_curve(tp: np.ndarray, fp: np.ndarray, num_gt: int, rec_thrs: np.ndarray) -> np.ndarray:
    """(R,) interpolated precision when each run's misses come first: only the level ends count."""
    if len(tp) == 0:
        return np.zeros(len(rec_thrs))
    pr = tp / (fp + tp + np.spacing(1))
    env = np.maximum.accumulate(pr[::-1])[::-1]
    inds = np.searchsorted(tp / num_gt, rec_thrs, side="left")
    return np.where(inds < len(tp), env[np.minimum(inds, len(tp) - 1)], 0.0)


def tie_sensitivity(categories: Iterable[CategoryEval], num_categories: int, labels: list[str],
                    thresholds: np.ndarray, rec_thrs: np.ndarray, max_dets: list[int],
                    pair_spans: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray]],
                    pair_objects: Callable[[int, Any], tuple[Any, np.ndarray, np.ndarray]],
                    iou_type: str) -> TieSensitivity:
    """Bounds of the tie-order-dependent stats from the backend's per-image evaluation.

    pair_spans(k, images): (all scores of the category's detections in evaluation order per pair, beyond the
    maxDets cut too (n,), start (P,), stop (P,)) for the given images;
    pair_objects(k, image): (ious (D, G), crowd (G,), ignored (G,)) for the evaluated detections."""
    T = len(thresholds)
    count = {"groups": 0, "tied": 0, "straddling": 0, "conflicting": 0}
    ap = {"low": np.full((T, num_categories), np.nan), "high": np.full((T, num_categories), np.nan)}
    recall = {s: np.full((len(max_dets), T, num_categories), np.nan) for s in ("low", "high")}
    first_threshold = min(float(thresholds[0]), 1 - 1e-10)
    for ce in categories:
        k, num_gt = ce.k, int(ce.num_gt.sum())
        special = _special_pairs(ce, pair_spans, pair_objects, thresholds, first_threshold)
        count["conflicting"] += sum(b.conflicting for b in special.values())
        scores, inc, pair, pos, pair_gt = _assemble(ce, special)
        order = np.argsort(-scores, kind="mergesort")
        level = runs(scores[order])  # category-level runs of equal scores
        sizes = np.bincount(level)
        count["groups"] += int((sizes >= 2).sum())
        count["tied"] += int(sizes[sizes >= 2].sum())
        mixed = (_per_group(level, inc["may_tp"][:, order], len(sizes)) > 0) & \
                (_per_group(level, inc["may_fp"][:, order], len(sizes)) > 0)  # (T, L)
        count["straddling"] += int((mixed.any(axis=0) & (sizes >= 2)).sum())
        if num_gt == 0:
            continue
        ends = np.flatnonzero(np.diff(np.concatenate([level, [len(sizes)]])))  # last index of each level
        cum = {key: np.cumsum(inc[key][:, order], axis=1)[:, ends] for key in ("up_tp", "lo_fp", "lo_tp", "up_fp")}
        for t in range(T):
            ap["high"][t, k] = _upper_curve(cum["up_tp"][t], cum["lo_fp"][t], num_gt, rec_thrs).mean()
            ap["low"][t, k] = _lower_curve(cum["lo_tp"][t], cum["up_fp"][t], num_gt, rec_thrs).mean()
        within = runs(scores) + pair * (len(scores) + 1)  # pair-level runs (never shared by two pairs)
        first, last = np.searchsorted(within, within, "left"), np.searchsorted(within, within, "right")
        run_start, run_end = pos - (np.arange(len(pos)) - first), pos - (np.arange(len(pos)) - last)
        num_pairs = len(ce.images) + len(special)
        caps = np.zeros(num_pairs)
        caps[pair] = pair_gt  # no image matches more objects than it has
        for mi, m in enumerate(max_dets):
            certain, straddle = run_end <= m, (run_start < m) & (run_end > m)
            slots = np.zeros(num_pairs)
            slots[pair[straddle]] = m - run_start[straddle]
            hi = _per_group(pair[certain], inc["up_tp"][:, certain], num_pairs) + np.minimum(
                slots, _per_group(pair[straddle], inc["may_tp"][:, straddle], num_pairs))  # (T, P)
            lo = _per_group(pair[certain], inc["lo_tp"][:, certain], num_pairs) + np.maximum(
                0, slots - _per_group(pair[straddle], inc["may_non_tp"][:, straddle], num_pairs))
            recall["high"][mi, :, k] = np.minimum(hi, caps).sum(axis=1) / num_gt
            recall["low"][mi, :, k] = lo.sum(axis=1) / num_gt
    return _result(ap, recall, count, labels, max_dets, iou_type, T)


def _per_group(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(T, n) sums of values (T, N) over the columns of each group id (N,) in 0..n-1."""
    T = values.shape[0]
    flat = (group[None, :] + n * np.arange(T)[:, None]).ravel()
    return np.bincount(flat, values.astype(float).ravel(), T * n).reshape(T, n)


def _shares_an_object(scores: np.ndarray, objects, threshold: float) -> bool:
    """Whether two tied detections of the pair could claim the same non-crowd object at the loosest threshold."""
    if objects is None:
        return False
    ious, crowd, _ = objects
    m = np.asarray(ious, dtype=np.float64)
    if m.size == 0:
        return False
    run_of = runs(scores)
    tied = np.bincount(run_of)[run_of] >= 2
    cand = (m.reshape(len(scores), -1)[tied] >= threshold) & ~np.asarray(crowd, bool)[None, :]
    rid = run_of[tied]
    starts = np.flatnonzero(np.concatenate([[True], rid[1:] != rid[:-1]]))
    return bool((np.add.reduceat(cand.astype(np.int64), starts, axis=0) >= 2).any())


def _special_pairs(ce: CategoryEval, pair_spans, pair_objects, thresholds, first_threshold) -> dict:
    """Bounds of the pairs whose outcomes a tie order can change: a tied run cut by maxDets, or tied
    detections that could claim one object. {pair index: PairBounds}."""
    P = len(ce.images)
    sizes = np.bincount(ce.pair, minlength=P)
    first = np.cumsum(sizes) - sizes
    all_scores, start, stop = pair_spans(ce.k, ce.images)
    nxt = np.minimum(start + sizes, len(all_scores) - 1) if len(all_scores) else start
    last = np.maximum(start + sizes - 1, 0)
    cut = (sizes > 0) & (stop - start > sizes) & (all_scores[nxt] == all_scores[last]) if len(all_scores) else sizes < 0
    same = (ce.scores[1:] == ce.scores[:-1]) & (ce.pair[1:] == ce.pair[:-1])
    out = {}
    for j in sorted(set(np.flatnonzero(cut).tolist()) | set(np.unique(ce.pair[1:][same]).tolist())):
        sl = slice(int(first[j]), int(first[j] + sizes[j]))
        p = PairEval(ce.k, ce.images[j], ce.scores[sl], ce.matched[:, sl], ce.ignored[:, sl], int(ce.num_gt[j]))
        objects = pair_objects(ce.k, p.image) if sizes[j] > 1 and np.any(p.scores[1:] == p.scores[:-1]) else None
        if not cut[j] and not _shares_an_object(p.scores, objects, first_threshold):
            continue
        extra = all_scores[start[j] + sizes[j]:stop[j]] if cut[j] else np.zeros(0)
        out[j] = pair_bounds(p, objects, thresholds, extra[extra == p.scores[-1]])
        out[j].num_gt = p.num_gt
    return out


def _assemble(ce: CategoryEval, special: dict):
    """Category-wide arrays, pair-major: scores (N,), increments and flags {key: (T, N)}, pair (N,), position
    in the pair (N,), the pair's objects (N,). Outcomes of the other pairs are exact, vectorised here;
    the special pairs' columns are replaced by their bounds (under new pair indices, after the others)."""
    plain = ~np.isin(ce.pair, list(special)) if special else np.ones(len(ce.pair), dtype=bool)
    tp = (ce.matched & ~ce.ignored)[:, plain].astype(float)
    fp = (~ce.matched & ~ce.ignored)[:, plain].astype(float)
    base = {"up_tp": tp, "lo_fp": fp, "lo_tp": tp, "up_fp": fp, "may_tp": tp > 0, "may_fp": fp > 0,
            "may_non_tp": tp == 0}
    bounds = list(special.values())
    inc = {key: np.concatenate([value] + [getattr(b, key) for b in bounds], axis=1) for key, value in base.items()}
    P = len(ce.images)
    extra_sizes = [len(b.scores) for b in bounds]
    pair = np.concatenate([ce.pair[plain], np.repeat(P + np.arange(len(bounds)), extra_sizes)]).astype(np.int64)
    pos = np.concatenate([ce.pos[plain]] + [np.arange(n) for n in extra_sizes]).astype(np.int64)
    pair_gt = np.concatenate([ce.num_gt[ce.pair[plain]], np.repeat([b.num_gt for b in bounds], extra_sizes)])
    scores = np.concatenate([ce.scores[plain]] + [b.scores for b in bounds])
    return scores, inc, pair, pos, pair_gt


def _result(ap, recall, count, labels, max_dets, iou_type, T) -> TieSensitivity:
    names = tie_stat_names(iou_type)
    low, high = {}, {}
    at75 = 5 if T > 5 else T - 1
    for side, out in (("low", low), ("high", high)):
        a, r = ap[side], recall[side]
        out[names[0]], out[names[1]], out[names[2]] = _mean(a), _mean(a[0]), _mean(a[at75])
        if iou_type == "keypoints":
            out[names[3]], out[names[4]], out[names[5]] = _mean(r[-1]), _mean(r[-1, 0]), _mean(r[-1, at75])
        else:
            for mi, m in enumerate(max_dets):
                out[f"AR{m}"] = _mean(r[mi])
    return TieSensitivity(count["groups"], count["tied"], count["straddling"], count["conflicting"], low, high,
                          {name: _mean(ap["low"][:, k]) for k, name in enumerate(labels)},
                          {name: _mean(ap["high"][:, k]) for k, name in enumerate(labels)},
                          attained=count["conflicting"] == 0)


def _mean(values: np.ndarray) -> float | None:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
