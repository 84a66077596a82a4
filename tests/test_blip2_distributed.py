"""ITC with features gathered across processes (gloo, 2 CPU processes) equals the single-process loss on the
whole batch: each rank's loss covers its own rows against every column, so the mean over ranks is the
full-batch loss; gradients flow through the gather."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reference.blip2.losses import gather_features, itc_loss

B, WORLD = 3, 2


def features():
    gen = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(B * WORLD, 4, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(B * WORLD, 8, generator=gen), dim=-1)
    return img, txt


def worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        img, txt = features()
        local_img = img[rank * B:(rank + 1) * B].clone().requires_grad_(True)
        local_txt = txt[rank * B:(rank + 1) * B]
        loss = itc_loss(local_img, local_txt, 0.07)
        loss.backward()
        assert gather_features(local_txt).shape == (B * WORLD, 8)
        torch.save({"loss": loss.detach(), "grad": local_img.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_itc_equals_single_process(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    mp.spawn(worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    img, txt = features()
    full = itc_loss(img, txt, 0.07)
    torch.testing.assert_close(sum(r["loss"] for r in results) / WORLD, full, atol=1e-6, rtol=1e-6)
    assert all(torch.isfinite(r["grad"]).all() and r["grad"].abs().sum() > 0 for r in results)
