"""Public BLIP-2 stage-1 code: `torch.matmul(image_feats.unsqueeze(1), text_feat_all.unsqueeze(-1)).squeeze()`
drops EVERY size-1 dimension, so at a global batch of 1 (one GPU, batch 1; or the last, short batch) the
similarity loses its image / text axes and the max over queries runs over the wrong axis."""

import pytest
import torch
from hypothesis import given, strategies as st

from cases.interface.qformer import TINY_CONFIG, one_process_group, random_batch

pytestmark = [pytest.mark.qformer,
              pytest.mark.case(stands_for="`.squeeze()` on the ITC similarity drops the batch axes at batch 1",
                               stage="ITC similarity")]


@given(Bi=st.integers(1, 4), Bt=st.integers(1, 4), Q=st.integers(1, 4), seed=st.integers(0, 999))
def test_similarity_keeps_its_shape_and_is_the_max_over_queries(api, Bi, Bt, Q, seed):
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(Bi, Q, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(Bt, 8, generator=gen), dim=-1)
    sim = api.itc_similarity(img, txt)
    assert tuple(sim.shape) == (Bi, Bt)
    expected = torch.stack([torch.stack([(img[i] @ txt[t]).max() for t in range(Bt)]) for i in range(Bi)])
    torch.testing.assert_close(sim.float(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.case(stands_for="`.squeeze()` on the ITC similarity drops the batch axes at batch 1", stage="ITC loss")
def test_itc_loss_at_batch_one_is_finite(api):
    img = torch.nn.functional.normalize(torch.randn(1, 4, 8), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)
    assert torch.isfinite(api.itc_loss(img, txt, 0.07))


@pytest.mark.case(stands_for="`.squeeze()` on the ITC similarity drops the batch axes at batch 1",
                  stage="stage-1 forward at batch 1 (one-process group)")
def test_stage1_losses_at_batch_one(api):
    torch.manual_seed(0)
    model = api.build(TINY_CONFIG)
    images, ids, mask = random_batch(TINY_CONFIG, 1, 8)
    with one_process_group():
        out = api.losses(model, images, ids, mask)
    for name in ("itc", "itm", "itg"):
        assert torch.isfinite(torch.as_tensor(out[name]).float()).all(), name
