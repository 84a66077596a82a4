"""LAVIS #537: single-GPU / CPU runs crash with "Default process group has not been initialized". In the public
code the feature gather is guarded (concat_all_gather returns its input without a process group); the crash is
`rank = dist.get_rank()` in the stage-1 loss itself (and `all_gather_with_grad`'s unguarded
`get_world_size()` right after it). Without a process group the gather must be the identity and the stage-1
losses must run. Inside a process group, the gather must keep the gradient of this process's slice: a gather
under no_grad (concat_all_gather is `@torch.no_grad()`) makes the ITC gradients of a one-process group run
differ from the same run without a group."""

import pytest
import torch
import torch.distributed as dist

from cases.interface.qformer import TINY_CONFIG, one_process_group, random_batch

pytestmark = pytest.mark.qformer


@pytest.fixture
def no_process_group():
    if dist.is_available() and dist.is_initialized():
        pytest.skip("a process group is initialised in this test process")


@pytest.mark.case(stands_for="LAVIS #537: without a process group the feature gather is the identity",
                  stage="feature gather, no process group")
def test_gather_without_process_group_returns_the_input(api, no_process_group):
    x = torch.randn(3, 4, requires_grad=True)
    y = api.gather_features(x)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3, 4))


@pytest.mark.case(stands_for="LAVIS #537: dist.get_rank() in the stage-1 loss crashes runs without a process group",
                  stage="stage-1 forward, no process group")
def test_stage1_losses_without_process_group(api, no_process_group):
    torch.manual_seed(0)
    model = api.build(TINY_CONFIG)
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8)
    out = api.losses(model, images, ids, mask, image_ids=torch.tensor([0, 1, 2]))
    assert all(torch.isfinite(torch.as_tensor(out[k]).float()) for k in ("itc", "itm", "itg"))


@pytest.mark.case(stands_for="a gather under no_grad (LAVIS concat_all_gather) drops the local slice's gradient",
                  stage="feature gather, one-process group")
def test_gather_in_a_one_process_group_keeps_the_gradient(api):
    x = torch.randn(3, 4, requires_grad=True)
    with one_process_group():
        y = api.gather_features(x)
        assert tuple(y.shape) == (3, 4)
        torch.testing.assert_close(y.detach(), x.detach())
        assert y.requires_grad, "the gathered features carry no gradient"
        (y * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(4.0).expand(3, 4))
