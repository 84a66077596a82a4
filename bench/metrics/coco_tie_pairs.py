"""Per image-and-category bounds for the tie report (bench/metrics/coco_ties.py explains the method).

For one pair, in evaluation order: which detections' outcomes depend on the order of tied scores
(the taint), and bounds on its matches and misses after each run of equal scores, given as
increments placed on each run's last detection (a cumulative sum read at run ends gives the bounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TP, IGNORED, FP = 2, 1, 0  # outcome codes


@dataclass
class PairEval:
    """One (category, image) pair of the backend's per-image evaluation (area "all", largest maxDets)."""

    k: int  # category index in params.catIds
    image: Any  # internal image id
    scores: np.ndarray  # (D,) detection scores in evaluation order (stable, descending)
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    num_gt: int  # ground-truth objects that are not ignored


@dataclass
class PairBounds:
    """Per detection (n = evaluated + those a tied run cut by maxDets could bring in) and threshold."""

    scores: np.ndarray  # (n,)
    up_tp: np.ndarray  # (T, n) increments: upper bound on matches
    lo_fp: np.ndarray  # (T, n) lower bound on misses
    lo_tp: np.ndarray  # (T, n) lower bound on matches
    up_fp: np.ndarray  # (T, n) upper bound on misses
    may_tp: np.ndarray  # (T, n) bool: a match in some order
    may_fp: np.ndarray  # (T, n) bool: a miss in some order
    may_non_tp: np.ndarray  # (T, n) bool: not a match (miss, ignored or left out) in some order
    conflicting: int  # runs of this pair whose order changes the matching
    num_gt: int = 0  # objects of the pair that are not ignored


def runs(scores: np.ndarray) -> np.ndarray:
    """(N,) run id of each element: consecutive equal scores share one."""
    return np.concatenate([[0], np.cumsum(scores[1:] != scores[:-1])]) if len(scores) else np.zeros(0, np.int64)


def _candidates(ious: Any, crowd: np.ndarray, thresholds: np.ndarray, D: int) -> np.ndarray:
    """(T, D, G) bool: non-crowd objects each detection could claim at each threshold (pycocotools:
    IoU >= min(t, 1 - 1e-10))."""
    m = np.asarray(ious, dtype=np.float64)
    m = m.reshape(D, -1) if m.size else np.zeros((D, 0))
    thr = np.minimum(np.asarray(thresholds, dtype=np.float64), 1 - 1e-10)
    return (m[None, :, :] >= thr[:, None, None]) & ~np.asarray(crowd, bool)[None, None, :]


def _taint(cand: np.ndarray, bounds: list[tuple[int, int]]) -> tuple[np.ndarray, int]:
    """(tainted (T, D), conflicting runs): tied detections sharing a candidate object, and any later
    detection that could claim an object a tainted one could."""
    T, D, G = cand.shape
    tainted = np.zeros((T, D), dtype=bool)
    starts = [(a, b) for a, b in bounds if b - a > 1 and (cand[0, a:b].sum(axis=0) >= 2).any()]
    if not starts:  # at the loosest threshold no tied run shares an object: nothing depends on order
        return tainted, 0
    taken = np.zeros((T, G), dtype=bool)  # objects a tainted detection could claim
    conflicting = 0
    for a, b in bounds:
        c = cand[:, a:b]  # (T, m, G)
        shared = c & (c.sum(axis=1, keepdims=True) >= 2)
        conflicting += bool(shared.any())
        hit = shared.any(axis=2) | (c & taken[:, None, :]).any(axis=2)  # (T, m)
        tainted[:, a:b] = hit
        taken |= (c & hit[:, :, None]).any(axis=1)
    return tainted, conflicting


def _first_run(mask: np.ndarray, run_of: np.ndarray, num_runs: int) -> np.ndarray:
    """mask (T, D, G) -> (T, G) index of the first run holding a True, num_runs where none."""
    hit = np.where(mask, run_of[None, :, None], num_runs)
    return hit.min(axis=1) if mask.shape[1] else np.full((mask.shape[0], mask.shape[2]), num_runs)


def _by_run(first: np.ndarray, num_runs: int) -> np.ndarray:
    """(T, G) first-run indices -> (T, R) how many objects have appeared by the end of each run."""
    T = first.shape[0]
    counts = np.zeros((T, num_runs + 1))
    np.add.at(counts, (np.repeat(np.arange(T), first.shape[1]), first.reshape(-1)), 1)
    return np.cumsum(counts[:, :num_runs], axis=1)


def pair_bounds(p: PairEval, objects: tuple[Any, np.ndarray, np.ndarray] | None, thresholds: np.ndarray,
                extra: np.ndarray) -> PairBounds:
    """Bounds of one pair. objects: (ious (D, G), crowd (G,), ignored (G,)) or None when no run of the
    pair is tied; extra: scores of the detections past the maxDets cut that tie with the last one kept."""
    T, D = len(thresholds), len(p.scores)
    outcome = np.where(p.ignored, IGNORED, np.where(p.matched, TP, FP)).reshape(T, D)
    scores = np.concatenate([p.scores, extra])
    n = len(scores)
    wild = np.zeros(n, dtype=bool)  # a run cut by maxDets: each member in or out depending on order
    if len(extra):
        wild[scores == p.scores[-1]] = True
    tainted, conflicting = np.zeros((T, D), dtype=bool), int(len(extra) > 0)
    run_of = runs(scores)
    R = int(run_of[-1]) + 1 if n else 0
    bounds = [(int(a), int(b)) for a, b in zip(*_edges(run_of))]
    if objects is not None and D:
        cand = _candidates(objects[0], objects[1], thresholds, D)
        tainted, c = _taint(cand, bounds[:R - 1] if len(extra) else bounds)
        conflicting += c
    tainted &= ~wild[None, :D]
    sure = np.concatenate([~tainted & ~wild[None, :D], np.zeros((T, n - D), bool)], axis=1)  # (T, n)
    out = np.concatenate([outcome, np.full((T, n - D), IGNORED)], axis=1)
    tp_u, fp_u = ((out == TP) & sure).astype(float), ((out == FP) & sure).astype(float)
    wild_t = np.broadcast_to(wild, (T, n))
    if not tainted.any() and not wild.any():
        return PairBounds(scores, tp_u, fp_u, tp_u, fp_u, out == TP, out == FP, out != TP, conflicting)

    ends = np.array([b - 1 for _, b in bounds])  # last index of each run
    cum_tp, cum_fp = np.cumsum(tp_u, axis=1)[:, ends], np.cumsum(fp_u, axis=1)[:, ends]
    n_wild = np.cumsum(wild_t, axis=1)[:, ends].astype(float)
    up_tp, lo_tp, lo_fp, up_fp = cum_tp + n_wild, cum_tp.copy(), cum_fp.copy(), cum_fp + n_wild
    may_tp = (out == TP) & sure | wild_t
    if tainted.any():
        ious, crowd, ignored = objects
        ignored = np.asarray(ignored, bool)
        tc = cand & tainted[:, :, None]  # (T, D, G) candidates of tainted detections
        run_d = run_of[:D]
        could = (tc & ~ignored[None, None, :]).any(axis=2)  # a tainted detection able to match
        n_could = np.cumsum(np.pad(could, ((0, 0), (0, n - D))), axis=1)[:, ends]
        distinct = _by_run(_first_run(tc & ~ignored[None, None, :], run_d, R), R)
        up_tp += np.minimum(n_could, distinct)
        crowd_hit = (_candidates(ious, ~np.asarray(crowd, bool), thresholds, D) & tainted[:, :, None]).any(axis=2)
        only_objects = tainted & ~crowd_hit  # can avoid a miss only by claiming a non-crowd object
        n_only = np.cumsum(np.pad(only_objects, ((0, 0), (0, n - D))), axis=1)[:, ends]
        objs_only = _by_run(_first_run(cand & only_objects[:, :, None], run_d, R), R)
        lo_fp += np.maximum(0.0, n_only - objs_only)
        # an object no sure detection could claim goes to the first tainted detection able to claim it,
        # which then matches; objects whose claimants do not overlap give distinct matches
        eligible = ~ignored[None, :] & ~(cand & sure[:, :D, None]).any(axis=1)  # (T, G)
        s = tc & eligible[:, None, :]
        overlap = np.einsum("tdg,tdh->tgh", s.astype(np.int32), s.astype(np.int32)) > 0  # (T, G, G)
        isolated = eligible & ~((overlap & ~np.eye(overlap.shape[1], dtype=bool)[None]).any(axis=2))
        sure_tp = _by_run(np.where(isolated, _first_run(s, run_d, R), R), R)
        lo_tp += sure_tp
        n_tainted = np.cumsum(np.pad(tainted, ((0, 0), (0, n - D))), axis=1)[:, ends]
        up_fp += n_tainted - sure_tp
        may_tp = may_tp | np.pad(could, ((0, 0), (0, n - D)))
    lo_tp, lo_fp = np.maximum.accumulate(lo_tp, axis=1), np.maximum.accumulate(lo_fp, axis=1)
    up_tp = np.minimum.accumulate(up_tp[:, ::-1], axis=1)[:, ::-1]
    up_fp = np.minimum.accumulate(up_fp[:, ::-1], axis=1)[:, ::-1]
    loose = np.pad(tainted, ((0, 0), (0, n - D))) | wild_t
    return PairBounds(scores, *(_increments(v, ends, n) for v in (up_tp, lo_fp, lo_tp, up_fp)),
                      may_tp, (out == FP) & sure | loose, (out != TP) & sure | loose, conflicting)


def _edges(run_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the runs."""
    change = np.flatnonzero(np.diff(run_of)) + 1
    return np.concatenate([[0], change]), np.concatenate([change, [len(run_of)]])


def _increments(cum: np.ndarray, ends: np.ndarray, n: int) -> np.ndarray:
    """(T, R) bounds after each run -> (T, n) increments on each run's last detection."""
    inc = np.zeros((cum.shape[0], n))
    inc[:, ends] = np.diff(np.concatenate([np.zeros((cum.shape[0], 1)), cum], axis=1), axis=1)
    return inc
