"""Public BLIP-2 code: the hard-negative step masks the positives with `masked_fill_(mask, -10000)` /
`fill_diagonal_(-10000)` IN PLACE on `sim_i2t` / `sim_t2i`, the very tensors the ITC loss was computed from
(and that callers may still log or reuse). Sampling must leave its inputs untouched."""

import pytest
import torch
from hypothesis import given, strategies as st

pytestmark = [pytest.mark.qformer,
              pytest.mark.case(stands_for="public BLIP-2 code: masked_fill_ / fill_diagonal_(-10000) in place on the "
                                          "similarities the ITC loss used",
                               stage="ITM hard-negative sampling")]


@given(B=st.integers(1, 6), seed=st.integers(0, 999), repeated=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float16]))
def test_sampler_leaves_the_similarity_matrix_unchanged(api, B, seed, repeated, dtype):
    # finite similarities only: NaN / inf rows are LAVIS #107's case, and would stop a sampler with that bug first
    sim = torch.randn(B, B, generator=torch.Generator().manual_seed(seed)).to(dtype)
    ids = torch.arange(B) // 2 if repeated else torch.arange(B)
    before, ids_before = sim.clone(), ids.clone()
    api.sample_hard_negatives(sim, ids, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(sim, before), "similarities were modified in place"
    assert torch.equal(ids, ids_before)


def test_itc_loss_is_the_same_before_and_after_sampling(api):
    gen = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(4, 3, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 8, generator=gen), dim=-1)
    before = api.itc_loss(img, txt, 0.07)
    sim = api.itc_similarity(img, txt)
    sim_before = sim.clone()
    api.sample_hard_negatives(sim, torch.arange(4), generator=gen)
    assert torch.equal(sim, sim_before)
    assert torch.equal(api.itc_loss(img, txt, 0.07), before)
