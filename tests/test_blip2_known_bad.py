"""Each switch of the lavis-qformer replica (cases/known_bad/lavis_qformer.py) reproduces its published
mechanism ON ITS OWN, and the reference does not: so every expected failure is caused by the bug it names. The
slow check runs the whole qformer family on the replica having ONLY one switch: it must fail exactly the cases
its expected-failures file lists for that switch (no case is masked by another bug, none fails by accident)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cases.interface.qformer import TINY_CONFIG, one_process_group, random_batch
from cases.known_bad.lavis_qformer import ALL_BUGS, LavisQFormer
from reference.blip2.api import REFERENCE

ROOT = Path(__file__).resolve().parent.parent
LISTED = ROOT / "cases" / "known_bad" / "expected_failures" / "lavis-qformer.txt"


def only(bug):
    return LavisQFormer(f"lavis-{bug}", {bug})


def feats(B=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.nn.functional.normalize(torch.randn(B, 3, 8, generator=gen), dim=-1),
            torch.nn.functional.normalize(torch.randn(B, 8, generator=gen), dim=-1))


def test_107_nan_row_crashes_multinomial():
    sim = torch.randn(4, 4)
    sim[2] = math.nan
    with pytest.raises(RuntimeError):
        only(107).sample_hard_negatives(sim, torch.arange(4))
    neg_text, _ = REFERENCE.sample_hard_negatives(sim, torch.arange(4))
    assert neg_text[2] in (0, 1, 3)


def test_107_all_positive_row_draws_a_positive():
    neg_text, _ = only(107).sample_hard_negatives(torch.randn(3, 3), torch.zeros(3, dtype=torch.long))
    assert (neg_text >= 0).all()  # a positive: there is no negative to draw
    assert (REFERENCE.sample_hard_negatives(torch.randn(3, 3), torch.zeros(3, dtype=torch.long))[0] == -1).all()


def test_inplace_fill_mutates_the_caller_tensor():
    sim = torch.randn(3, 3)
    before = sim.clone()
    only("inplace").sample_hard_negatives(sim, torch.arange(3))
    assert (sim.diagonal() == -10000).all() and not torch.equal(sim, before)


def test_285_arange_targets_ignore_image_ids():
    img, txt = feats()
    ids = torch.tensor([0, 0, 1, 2])
    assert not torch.isclose(only(285).itc_loss(img, txt, 0.07, ids), REFERENCE.itc_loss(img, txt, 0.07, ids))
    torch.testing.assert_close(only(285).itc_loss(img, txt, 0.07, torch.arange(4)),
                               REFERENCE.itc_loss(img, txt, 0.07, torch.arange(4)))


def test_temp_unclamped():
    img, txt = feats()
    assert not torch.isclose(only("temp").itc_loss(img, txt, 1e-4), only("temp").itc_loss(img, txt, 1e-3))
    torch.testing.assert_close(REFERENCE.itc_loss(img, txt, 1e-4), REFERENCE.itc_loss(img, txt, 1e-3))


def test_squeeze_breaks_only_size_one_axes():
    img, txt = feats()
    torch.testing.assert_close(only("squeeze").itc_similarity(img, txt), REFERENCE.itc_similarity(img, txt))
    assert only("squeeze").itc_similarity(img[:1], txt).shape != (1, 4)


def test_537_crash_is_in_the_loss_not_in_the_gather():
    x = torch.ones(2, requires_grad=True)
    assert only(537).gather_features(x) is x  # concat_all_gather is guarded
    torch.manual_seed(0)
    model = REFERENCE.build(TINY_CONFIG)
    with pytest.raises(ValueError, match="process group"):
        only(537).losses(model, *random_batch(TINY_CONFIG, 2, 6))
    with one_process_group():
        assert torch.isfinite(only(537).losses(model, *random_batch(TINY_CONFIG, 2, 6))["loss"])


def test_nograd_gather_loses_the_gradient_only_inside_a_group():
    x = torch.ones(2, requires_grad=True)
    assert only("nograd").gather_features(x).requires_grad
    with one_process_group():
        assert not only("nograd").gather_features(x).requires_grad
        assert REFERENCE.gather_features(x).requires_grad


def test_topk_unclipped_raises_only_past_the_candidates():
    sim = torch.rand(3, 4)

    def itm(i, t):
        return torch.as_tensor(i).float() - torch.as_tensor(t).float()

    for a, b in zip(only("topk").rerank_scores(sim, itm, 3), REFERENCE.rerank_scores(sim, itm, 3)):
        torch.testing.assert_close(a, b)
    with pytest.raises(RuntimeError):
        only("topk").rerank_scores(sim, itm, 4)


@pytest.mark.parametrize("dtype,finite", [("float16", False), ("bfloat16", True)])
def test_267_half_precision_lm_loss(dtype, finite):
    config = {**TINY_CONFIG, "vocab_size": 30523, "dtype": dtype}
    torch.manual_seed(0)
    model = REFERENCE.build(config)
    images, ids, mask = random_batch(config, 3, 10)
    with torch.no_grad():
        bad = only(267).losses(model, images.to(getattr(torch, dtype)), ids, mask)["itg"]
        good = REFERENCE.losses(model, images.to(getattr(torch, dtype)), ids, mask)["itg"]
    assert bool(torch.isfinite(bad)) == finite and torch.isfinite(good)


def test_154_never_uses_the_cache():
    torch.manual_seed(0)
    model = REFERENCE.build(TINY_CONFIG)
    images = torch.randn(2, 6, TINY_CONFIG["image_width"])
    for beams in (1, 2):  # beam search works with the transformers version LAVIS pins
        cached = only(154).generate(model, images, num_beams=beams, max_length=6, min_length=1, use_cache=True)
        assert torch.equal(cached, REFERENCE.generate(model, images, num_beams=beams, max_length=6, min_length=1))


def listed_switches() -> dict[str, list[str]]:
    """switch -> case ids, from the `# <switch>: reason` comment after each case id of lavis-qformer.txt."""
    by_switch: dict[str, list[str]] = {}
    for line in LISTED.read_text().splitlines():
        case, _, comment = line.partition("#")
        if case.strip():
            by_switch.setdefault(comment.strip().split(":", 1)[0], []).append(case.strip())
    return by_switch


def test_every_listed_case_names_a_switch():
    assert set(listed_switches()) == {str(b) for b in ALL_BUGS}


@pytest.mark.slow
@pytest.mark.parametrize("switch", sorted(str(b) for b in ALL_BUGS))
def test_replica_with_only_one_switch_fails_exactly_its_cases(switch, tmp_path):
    expected = tmp_path / "expected.txt"
    expected.write_text("\n".join(listed_switches()[switch]) + "\n")
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cases").glob("test_qformer_*.py"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files,
                           f"--impl=cases.known_bad.lavis_qformer:LAVIS_ONLY_{switch.upper()}",
                           f"--expected-failures={expected}"], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HYPOTHESIS_PROFILE": "ci-noshrink", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert f"{len(listed_switches()[switch])} xfailed" in proc.stdout
