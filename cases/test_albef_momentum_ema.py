"""Momentum encoders (ALBEF §3.3, after MoCo; salesforce/ALBEF models/model_pretrain.py copy_params /
_momentum_update): the momentum copy starts equal to the online encoders, is a separate set of parameters that takes
no gradient, and after each step moves by exactly p_m <- m * p_m + (1 - m) * p. A swapped coefficient (m on the
online side), a copy that aliases the online parameters (the EMA becomes a no-op) or one that still requires
gradients (the optimizer moves it) all train without an error."""

import copy

import pytest
import torch
from hypothesis import given, strategies as st
from torch import nn

pytestmark = [pytest.mark.albef,
              pytest.mark.case(stands_for="momentum encoders: an exact EMA p_m <- m p_m + (1-m) p of a separate, "
                                          "gradient-free copy", stage="momentum copy and EMA update")]

DYADIC_M = st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.875, 0.9921875, 1.0])  # exact in float32 (k / 2^j)


def module(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))


def frozen_copy(online: nn.Module) -> nn.Module:
    """The momentum module, made here (not by the implementation) so that ema_update is tested on its own."""
    m = copy.deepcopy(online)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def set_dyadic(mod: nn.Module, seed: int) -> None:
    """Parameters on the grid k/64 in [-2, 2]: every product and sum of the EMA is exact in float32."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mod.parameters():
            p.copy_(torch.randint(-128, 129, p.shape, generator=gen).float() / 64)


def test_momentum_copy_is_equal_separate_and_gradient_free(api):
    online = module(0)
    mom = api.momentum_copy(online)
    pairs = list(zip(online.parameters(), mom.parameters()))
    assert pairs and len(list(mom.parameters())) == len(list(online.parameters()))
    online_ids = {id(p) for p in online.parameters()}
    for p, p_m in pairs:
        assert id(p_m) not in online_ids, "the momentum copy shares a parameter object with the online module"
        assert p_m.data_ptr() != p.data_ptr(), "the momentum copy shares storage with the online module"
        assert torch.equal(p, p_m) and not p_m.requires_grad
    out = mom(torch.randn(5, 4)).sum()
    assert not out.requires_grad, "gradients would flow into the momentum copy"


@given(m=DYADIC_M, seed=st.integers(0, 999))
def test_ema_update_is_exact(api, m, seed):
    online, mom = module(seed), None
    set_dyadic(online, seed)
    mom = frozen_copy(online)
    set_dyadic(mom, seed + 1)
    before_m = [p.clone() for p in mom.parameters()]
    before = [p.clone() for p in online.parameters()]
    api.ema_update(online, mom, m)
    for p, p0, p_m, p_m0 in zip(online.parameters(), before, mom.parameters(), before_m):
        assert torch.equal(p, p0), "the EMA update changed an online parameter"
        assert torch.equal(p_m, m * p_m0 + (1 - m) * p0), f"p_m != {m} * p_m + {1 - m} * p"


@given(m=st.floats(0.0, 1.0), seed=st.integers(0, 999), steps=st.integers(1, 5))
def test_repeated_updates_follow_the_closed_form(api, m, seed, steps):
    """With fixed online weights p, k updates give m^k p_m + (1 - m^k) p; m = 0.995 is the default."""
    online = module(seed)
    mom = frozen_copy(module(seed + 1))
    start = [p.clone() for p in mom.parameters()]
    for _ in range(steps):
        api.ema_update(online, mom, m)
    for p, p_m0, p_m in zip(online.parameters(), start, mom.parameters()):
        expected = m ** steps * p_m0.double() + (1 - m ** steps) * p.detach().double()
        torch.testing.assert_close(p_m.double(), expected, atol=1e-6, rtol=1e-5)


def test_ema_update_records_no_autograd_graph(api):
    online = module(1)
    mom = frozen_copy(module(2))
    api.ema_update(online, mom, 0.995)
    for p_m in mom.parameters():
        assert p_m.grad_fn is None and not p_m.requires_grad
    assert all(p.grad is None for p in online.parameters())
