"""The tie report (bench/metrics/coco_ties.py) against brute force: every order of the tied detections
is realised by giving them distinct scores in that order and scoring it with pycocotools; the bounds
must hold every result (soundness), and where no tied run changes the matching (`attained`) the AP50
and AP75 bounds must equal the brute-force extremes (exactness)."""

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from bench.benchmarks.evaluation import count_tie_orders as num_orders, tie_orders
from bench.metrics.coco import CocoTieWarning, evaluate_detections
from bench.metrics.coco_peer import direct_call as pycocotools_direct

STATS = {"AP": 0, "AP50": 1, "AP75": 2, "AR1": 6, "AR10": 7, "AR100": 8}
MAX_ORDERS = 120


@st.composite
def tied_scenes(draw):
    """1-3 images of 100 px, 1-3 objects each (some crowd, 2 categories), 0-2 jittered copies per object
    and up to one random box per image; scores 0.5 or 1.0, so that ties are everywhere."""
    images, anns, dets = [], [], []
    for i in range(draw(st.integers(1, 3))):
        images.append({"id": i + 1, "width": 100, "height": 100})
        for _ in range(draw(st.integers(1, 3))):
            x, y, w, h = (draw(st.integers(0, 60)), draw(st.integers(0, 60)), draw(st.integers(10, 40)),
                          draw(st.integers(10, 40)))
            cat = draw(st.sampled_from([1, 2]))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": [x, y, w, h],
                         "area": float(w * h), "iscrowd": int(draw(st.integers(0, 6)) == 0)})
            for _ in range(draw(st.integers(0, 2))):
                jx, jy, jw = draw(st.integers(-6, 6)), draw(st.integers(-6, 6)), draw(st.integers(-8, 8))
                dets.append({"image_id": i + 1, "category_id": cat, "bbox": [x + jx, y + jy, max(1, w + jw), h]})
        if draw(st.booleans()):
            dets.append({"image_id": i + 1, "category_id": draw(st.sampled_from([1, 2])),
                         "bbox": [draw(st.integers(0, 60)), draw(st.integers(0, 60)), 20, 25]})
    for d in dets:
        d["score"] = draw(st.sampled_from([0.5, 1.0]))
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}, dets


def check_against_brute_force(gt, dets, backend="pycocotools"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = evaluate_detections(gt, dets, backend=backend)
    runs = np.array([pycocotools_direct(gt, o)[0][list(STATS.values())] for o in tie_orders(dets)])
    for j, name in enumerate(STATS):
        lo, hi = r.ties.low[name], r.ties.high[name]
        if lo is None:
            assert r.stats[name] is None
            continue
        assert lo - 1e-12 <= runs[:, j].min() and runs[:, j].max() <= hi + 1e-12, name
        assert lo - 1e-12 <= r.stats[name] <= hi + 1e-12, name
        if r.ties.attained and name in ("AP50", "AP75"):
            assert runs[:, j].min() == pytest.approx(lo, abs=1e-12) and runs[:, j].max() == pytest.approx(hi, abs=1e-12)
    return r


@settings(max_examples=60, deadline=None)
@given(tied_scenes())
def test_bounds_hold_every_tie_order_and_are_exact_without_conflicts(scene):
    gt, dets = scene
    assume(2 <= num_orders(dets) <= MAX_ORDERS)
    check_against_brute_force(gt, dets)


@settings(max_examples=15, deadline=None)
@given(tied_scenes())
def test_faster_backend_gives_the_same_tie_report(scene):
    gt, dets = scene
    assume(len(dets) > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = (evaluate_detections(gt, dets, backend=k).ties for k in ("pycocotools", "faster"))
    counts = ("tied_groups", "tied_detections", "straddling_groups", "conflicting_groups", "attained")
    assert [getattr(a, c) for c in counts] == [getattr(b, c) for c in counts]
    for bounds in ("low", "high", "per_class_low", "per_class_high"):  # without ties: each backend's own
        x, y = getattr(a, bounds), getattr(b, bounds)                   # stats, equal to 1e-12
        assert x.keys() == y.keys() and all((x[k] is None) == (y[k] is None) for k in x), bounds
        assert all(x[k] == pytest.approx(y[k], abs=1e-12) for k in x if x[k] is not None), bounds


def test_a_tied_run_cut_by_max_dets():
    """101 detections of one image and class; the last three tie at the 100-detection cut, and only one of
    them matches: which one survives decides AR100 (0.5 or 1.0) and AP."""
    gt = {"images": [{"id": 1, "width": 1000, "height": 1000}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500.0, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [300, 300, 50, 50], "area": 2500.0, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [600 + i, 600, 20, 20], "score": 0.9 - i * 1e-3} for i in range(98)]
    dets.append({"image_id": 1, "category_id": 1, "bbox": [300, 300, 50, 50], "score": 0.95})
    tied = [{"image_id": 1, "category_id": 1, "bbox": b, "score": 0.1}
            for b in ([10, 10, 50, 50], [800, 10, 50, 50], [10, 800, 50, 50])]
    r = evaluate_detections(gt, dets + tied)
    runs = np.array([pycocotools_direct(gt, dets + [tied[i] for i in p])[0] for p in itertools.permutations(range(3))])
    assert (r.ties.low["AR100"], r.ties.high["AR100"]) == (runs[:, 8].min(), runs[:, 8].max()) == (0.5, 1.0)
    assert r.ties.low["AP"] - 1e-12 <= runs[:, 0].min() and runs[:, 0].max() <= r.ties.high["AP"] + 1e-12
    assert r.ties.conflicting_groups == 1 and not r.ties.attained


def test_no_ties_means_no_spread_and_no_warning():
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900.0, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.8}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = evaluate_detections(gt, dets)
    assert r.ties.tied_groups == 0 and r.ties.spread("AP") == 0.0 and r.ties.low == {k: r.stats[k] for k in STATS}
    assert evaluate_detections(gt, dets, tie_report=False).ties is None


def test_a_tie_that_decides_the_number_warns():
    """One miss and one match tied at the top: AP 0.5 when the miss comes first, 1.0 otherwise."""
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900.0, "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    with pytest.warns(CocoTieWarning, match="1 of 1 tied-score groups straddle"):
        r = evaluate_detections(gt, dets)
    assert r.stats["AP"] == pytest.approx(0.5, abs=1e-12)  # file order: the miss first
    assert r.ties.low["AP"] == pytest.approx(0.5, abs=1e-12) and r.ties.high["AP"] == pytest.approx(1.0, abs=1e-12)
    assert r.ties.attained and r.ties.straddling_groups == 1
