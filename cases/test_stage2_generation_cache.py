"""Stage-2 captioning on the LM's KV cache (prompts and [BOS] run once, then one token per step) must give
exactly the tokens of the recompute (the whole [prompts ; tokens] sequence every step), greedy and beam
search, and must actually use the cache (far fewer FLOPs). Cache bugs seen in public code: positions
restarted at 0 for each new token, the prompts left out of the cache, beams not reordered with the cache."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cases.interface.blip2_stage2 import TINY_CONFIG

pytestmark = [getattr(pytest.mark, "blip2-stage2"),
              pytest.mark.case(stands_for="stage-2 generation with the LM's KV cache equals the recompute",
                               stage="generation")]


@pytest.fixture(scope="module")
def model(api):
    return sharpened(api)


def sharpened(api, seed=0):
    """A random model with large weights (std 0.3), so that greedy / beam choices differ between images and
    steps (a 0.02-std init writes one token, the same for every image)."""
    torch.manual_seed(seed)
    m = api.build(TINY_CONFIG)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*m.parameters(), *api.language_model(m).parameters()]:
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        for p in m.parameters():
            p.requires_grad_(False)
    return m


def images(B=3, seed=0):
    return torch.randn(B, 6, TINY_CONFIG["image_width"], generator=torch.Generator().manual_seed(seed))


def check_cache_equals_recompute(api, model, num_beams: int) -> None:
    a = torch.as_tensor(api.generate(model, images(), num_beams=num_beams, max_length=10, min_length=2, use_cache=True))
    b = torch.as_tensor(api.generate(model, images(), num_beams=num_beams, max_length=10, min_length=2,
                                     use_cache=False))
    assert len({tuple(r) for r in b.tolist()}) > 1, f"degenerate test model: one caption for all, {b.tolist()}"
    assert torch.equal(a, b), f"cached {a.tolist()} != recomputed {b.tolist()}"


def test_cached_greedy_equals_recompute(api, model):
    check_cache_equals_recompute(api, model, 1)


def test_cached_beam_search_equals_recompute(api, model):
    check_cache_equals_recompute(api, model, 3)


def test_generation_uses_the_cache(api, model):
    def flops(use_cache):
        with FlopCounterMode(display=False) as counter:
            api.generate(model, images(2), num_beams=1, max_length=16, min_length=16, use_cache=use_cache)
        return counter.get_total_flops()

    cached, recomputed = flops(True), flops(False)
    assert cached < 0.5 * recomputed, f"cached generation costs {cached} FLOPs, recompute {recomputed}"
