"""CapFilt's noise bookkeeping and the filter's precision / recall (reference/blip/noise.py), with hand-derived
values, and the bootstrapped set rebuilt from a record (bench/training/blip.py)."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.blip.noise import admissible_donor, as_captions, filter_precision_recall, inject_noise

RED_CIRCLE, BLUE_SQUARE, RED_SQUARE, GREEN_STAR = ("red", "circle"), ("blue", "square"), ("red", "square"), \
    ("green", "star")


def test_admissible_donor_by_hand():
    # shares the pair (red, circle): its inventory caption would be half true
    assert not admissible_donor([RED_CIRCLE, BLUE_SQUARE], [RED_CIRCLE])
    # no shared pair, but the same shape counts: "a circle and a square" is true for both
    assert not admissible_donor([RED_CIRCLE, BLUE_SQUARE], [("blue", "circle"), RED_SQUARE])
    # no shared pair, other shapes, but two shapes in red and blue for both: the colour caption is true
    assert not admissible_donor([RED_CIRCLE, BLUE_SQUARE], [("red", "star"), ("blue", "star")])
    # nothing in common
    assert admissible_donor([RED_CIRCLE, BLUE_SQUARE], [GREEN_STAR])
    assert admissible_donor([RED_CIRCLE], [GREEN_STAR, GREEN_STAR])
    assert not admissible_donor([], [])  # two empty images: "an empty background" fits both


def test_precision_recall_by_hand():
    removed = [True, True, False, False, True, False]
    injected = [True, False, True, False, True, False]
    # tp: 0, 4 -> 2; fp: 1 -> 1; fn: 2 -> 1; tn: 3, 5 -> 2
    out = filter_precision_recall(removed, injected)
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (2, 1, 1, 2)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 / 3) and (out["removed"], out["injected"], out["captions"]) == (3, 3, 6)
    nothing = filter_precision_recall([False] * 3, [True, False, False])
    assert nothing["precision"] is None and nothing["recall"] == 0 and nothing["f1"] is None
    everything = filter_precision_recall([True] * 4, [True, False, False, False])
    assert everything["precision"] == 0.25 and everything["recall"] == 1.0 and everything["f1"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="3 removal flags for 2"):
        filter_precision_recall([True] * 3, [True] * 2)


def toy_dataset(n_images: int):
    colours = ["red", "green", "blue", "white"]
    shapes = ["circle", "square", "star", "triangle"]
    objects = {i: [(colours[i % 4], shapes[i % 4])] * (1 + i % 3) for i in range(n_images)}
    captions = {i: [f"image {i} caption {k}" for k in range(5)] for i in range(n_images)}
    return captions, objects


@settings(max_examples=25, deadline=None)
@given(per_image=st.integers(0, 5), seed=st.integers(0, 2**16), n=st.integers(4, 12))
def test_inject_noise_bookkeeping(per_image, seed, n):
    captions, objects = toy_dataset(n)
    noisy = inject_noise(captions, objects, per_image, seed)
    assert len(noisy) == 5 * n
    for image_id in captions:
        mine = [c for c in noisy if c.image_id == image_id]
        assert [c.index for c in mine] == list(range(5))
        assert sum(c.injected for c in mine) == per_image  # exactly the known fraction per image
        for c in mine:
            if c.injected:  # another image's caption, recorded, and false for this image
                assert c.donor_image_id != image_id and c.text == captions[c.donor_image_id][c.donor_index]
                assert admissible_donor(objects[image_id], objects[c.donor_image_id])
            else:
                assert c.text == captions[image_id][c.index] and c.donor_image_id is None
    assert inject_noise(captions, objects, per_image, seed) == noisy  # deterministic


def test_inject_noise_refusals_and_as_captions():
    captions, objects = toy_dataset(4)
    with pytest.raises(ValueError, match="fewer than per_image=6"):
        inject_noise(captions, objects, 6)
    with pytest.raises(ValueError, match="objects lacks the images"):
        inject_noise(captions, {0: objects[0]}, 1)
    same = {i: [RED_CIRCLE] for i in range(3)}
    with pytest.raises(ValueError, match="no admissible donor"):
        inject_noise({i: ["a red circle"] for i in range(3)}, same, 1, max_tries=20)
    noisy = inject_noise(captions, objects, 2, seed=1)
    keep = [not c.injected for c in noisy]
    clean_left = {i: [t for k, t in enumerate(caps) if not noisy[5 * i + k].injected] for i, caps in captions.items()}
    assert as_captions(noisy, keep) == clean_left  # removing exactly the injected ones leaves the untouched ones
    assert all(len(c) == 3 for c in clean_left.values())
    assert {i: len(c) for i, c in as_captions(noisy).items()} == {i: 5 for i in captions}
    with pytest.raises(ValueError, match="2 keep flags for 20"):
        as_captions(noisy, [True, False])


def test_filter_report_scores_removals_against_the_injected_captions():
    from bench.training.blip import filter_report

    captions, objects = toy_dataset(4)
    noisy = inject_noise(captions, objects, 2, seed=0)
    # a filter that gives every injected caption P(match) 0.2 and every clean one 0.7, except one of each flipped
    prob = torch.tensor([0.2 if c.injected else 0.7 for c in noisy])
    first_injected = next(n for n, c in enumerate(noisy) if c.injected)
    first_clean = next(n for n, c in enumerate(noisy) if not c.injected)
    prob[first_injected], prob[first_clean] = 0.9, 0.1
    out = filter_report(prob, noisy, threshold=0.5)
    # 8 injected, 12 clean: removed = 7 injected + 1 clean
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (7, 1, 1, 11)
    assert out["precision"] == pytest.approx(7 / 8) and out["recall"] == pytest.approx(7 / 8)
    # AUC of 1 - P(match), injected (seven 0.8, one 0.1) vs clean (eleven 0.3, one 0.9), 8 * 12 = 96 pairs: each
    # 0.8 beats the eleven 0.3 and loses to the 0.9 (7 * 11 = 77 wins); the 0.1 beats nothing -> 77 / 96
    assert out["auc_injected_vs_clean"] == pytest.approx(77 / 96)


def test_bootstrapped_set_from_a_record():
    from bench.training.blip import bootstrapped

    captions, objects = toy_dataset(4)
    noisy = inject_noise(captions, objects, 2, seed=3)
    keep = "".join("0" if c.injected else "1" for c in noisy)
    record = {"keep_web": keep, "synthetic": [[0, "a synthetic caption", True], [1, "a dropped one", False]]}
    out = bootstrapped(record, noisy)
    untouched = {i: [c.text for c in noisy if c.image_id == i and not c.injected] for i in captions}
    assert out[0] == untouched[0] + ["a synthetic caption"] and out[1] == untouched[1]
    assert out[2] == untouched[2] and out[3] == untouched[3] and len(out[3]) == 3
    with pytest.raises(ValueError, match="19 keep flags for 20 captions"):
        bootstrapped({**record, "keep_web": keep[:-1]}, noisy)
