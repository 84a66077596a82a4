"""LAVIS #154, #211, #227, #310: captioning with newer transformers breaks beam search (the image features
were expanded for the beams twice: a size mismatch), and the KV cache is silently never used because the
cache argument was renamed (`past` -> `past_key_values`): each step recomputes the queries, their
cross-attention and the whole text. Generation must use its cache (far fewer FLOPs than recomputing), give
exactly the tokens of the recompute, and beam search must work batched, equal to one image at a time."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cases.interface.qformer import TINY_CONFIG

pytestmark = [pytest.mark.qformer,
              pytest.mark.case(stands_for="LAVIS #154 / #211 / #227 / #310: generation never uses its KV cache "
                                          "(prepare_inputs_for_generation gets past=None); beam search must match "
                                          "greedy-style recompute and batching",
                               stage="caption generation")]


@pytest.fixture(scope="module")
def model(api):
    torch.manual_seed(0)
    m = api.build(TINY_CONFIG)
    for p in getattr(m, "parameters", lambda: [])():
        p.requires_grad_(False)  # FlopCounterMode's module tracker needs no autograd here
    return m


def images(B=3, seed=0):
    return torch.randn(B, 6, TINY_CONFIG["image_width"], generator=torch.Generator().manual_seed(seed))


def flops(api, model, use_cache, num_beams=1):
    with FlopCounterMode(display=False) as counter:
        api.generate(model, images(2), num_beams=num_beams, max_length=16, min_length=16, use_cache=use_cache)
    return counter.get_total_flops()


def test_generation_uses_its_kv_cache(api, model):
    cached, recomputed = flops(api, model, True), flops(api, model, False)
    assert cached < 0.5 * recomputed, f"cached generation costs {cached} FLOPs, recompute {recomputed}"


def cached_equals_recompute(api, model, num_beams):
    a = api.generate(model, images(), num_beams=num_beams, max_length=10, min_length=2, use_cache=True)
    b = api.generate(model, images(), num_beams=num_beams, max_length=10, min_length=2, use_cache=False)
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_cached_greedy_generation_equals_recompute(api, model):
    cached_equals_recompute(api, model, 1)


def test_cached_beam_search_equals_recompute(api, model):
    cached_equals_recompute(api, model, 3)


@pytest.mark.parametrize("num_beams", [2, 3])
def test_batched_beam_search_equals_one_image_at_a_time(api, model, num_beams):
    pad = TINY_CONFIG["pad_token_id"]
    batch = torch.as_tensor(api.generate(model, images(), num_beams=num_beams, max_length=10, min_length=2))
    assert batch.shape[0] == 3
    for b in range(3):
        single = torch.as_tensor(api.generate(model, images()[b:b + 1], num_beams=num_beams, max_length=10,
                                              min_length=2))[0]
        width = max(single.numel(), batch.shape[1])
        padded = [torch.nn.functional.pad(x, (0, width - x.numel()), value=pad) for x in (single, batch[b])]
        assert torch.equal(*padded)


def test_min_and_max_length_are_respected(api, model):
    out = torch.as_tensor(api.generate(model, images(), num_beams=3, max_length=7, min_length=5))
    assert out.shape[1] <= 7
    for row in out.tolist():
        if TINY_CONFIG["sep_token_id"] in row:
            assert row.index(TINY_CONFIG["sep_token_id"]) >= 5
