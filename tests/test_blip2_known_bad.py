"""Each switch of the lavis-qformer replica (cases/known_bad/lavis_qformer.py) reproduces its published
mechanism ON ITS OWN, and the reference does not: so every expected failure is caused by the bug it names."""

import math

import pytest
import torch

from cases.interface.qformer import TINY_CONFIG, random_batch
from cases.known_bad.lavis_qformer import LavisQFormer
from reference.blip2.api import REFERENCE


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


def test_537_gather_needs_a_process_group():
    with pytest.raises((RuntimeError, ValueError)):
        only(537).gather_features(torch.ones(2))


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


def test_154_no_cache_and_double_beam_expansion():
    torch.manual_seed(0)
    model = REFERENCE.build(TINY_CONFIG)
    images = torch.randn(2, 6, TINY_CONFIG["image_width"])
    greedy = only(154).generate(model, images, num_beams=1, max_length=6, min_length=1)
    assert torch.equal(greedy, REFERENCE.generate(model, images, num_beams=1, max_length=6, min_length=1))
    with pytest.raises(RuntimeError):
        only(154).generate(model, images, num_beams=2, max_length=6, min_length=1)
