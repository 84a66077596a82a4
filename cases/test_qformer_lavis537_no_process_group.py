"""LAVIS #537: single-GPU / CPU runs crash with "Default process group has not been initialized" because the
feature gather for ITC calls torch.distributed unconditionally. Without a process group the gather must be
the identity and the stage-1 losses must run."""

import pytest
import torch
import torch.distributed as dist

from cases.interface.qformer import TINY_CONFIG, random_batch

pytestmark = pytest.mark.qformer


@pytest.fixture(autouse=True)
def no_process_group():
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialised in this test process")


def test_gather_without_process_group_returns_the_input(api):
    x = torch.randn(3, 4, requires_grad=True)
    y = api.gather_features(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3, 4))


def test_stage1_losses_without_process_group(api):
    torch.manual_seed(0)
    model = api.build(TINY_CONFIG)
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8)
    out = api.losses(model, images, ids, mask, image_ids=torch.tensor([0, 1, 2]))
    assert all(torch.isfinite(torch.as_tensor(out[k]).float()) for k in ("itc", "itm", "itg"))
