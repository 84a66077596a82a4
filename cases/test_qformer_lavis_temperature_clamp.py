"""Public BLIP-2 stage-1 code: the learnable ITC temperature is divided into the similarities without the
clamp to [0.001, 0.5] that ALBEF / BLIP apply, so a temperature pushed towards 0 (or below) by the optimiser
gives huge or sign-flipped logits. The ITC loss must act as if the temperature were clamped."""

import pytest
import torch
from hypothesis import given, strategies as st

pytestmark = [pytest.mark.qformer,
              pytest.mark.case(stands_for="public BLIP-2 code: the ITC temperature is never clamped to [0.001, 0.5]",
                               stage="ITC loss")]


def feats(seed, B=4):
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(B, 3, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(B, 8, generator=gen), dim=-1)
    return img, txt


@given(temp=st.floats(-1.0, 0.001, exclude_max=True), seed=st.integers(0, 999))
def test_temperature_below_the_range_acts_as_0_001(api, temp, seed):
    img, txt = feats(seed)
    loss = api.itc_loss(img, txt, torch.tensor(temp))
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, api.itc_loss(img, txt, torch.tensor(0.001)), atol=1e-4, rtol=1e-5)


@given(temp=st.floats(0.5, 100.0, exclude_min=True), seed=st.integers(0, 999))
def test_temperature_above_the_range_acts_as_0_5(api, temp, seed):
    img, txt = feats(seed)
    torch.testing.assert_close(api.itc_loss(img, txt, torch.tensor(temp)), api.itc_loss(img, txt, torch.tensor(0.5)),
                               atol=1e-5, rtol=1e-5)
