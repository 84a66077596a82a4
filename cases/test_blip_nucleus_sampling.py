"""Nucleus sampling of the CapFilt captioner (BLIP §3.3, top_p = 0.9; Holtzman et al., 2019): sample from the
SMALLEST set of most probable tokens whose mass reaches top_p. A widespread re-implementation drops every token
whose cumulative mass exceeds top_p, which removes the token that crosses the threshold (rasbt/reasoning-from-scratch
#164, fishaudio/fish-speech #1171, Biohub/esm #360, thu-nics/C2C #21) and, when the top token alone exceeds top_p,
every token: `torch.multinomial` on all-zero weights then fails ("invalid multinomial distribution")."""

import pytest
import torch
from hypothesis import given, strategies as st

from cases.interface.blip import TINY_CONFIG, TOKENS, random_batch

pytestmark = [pytest.mark.blip]
NUCLEUS = pytest.mark.case(stands_for="the nucleus keeps the token that crosses top_p and is never empty",
                           stage="nucleus (top-p) filter")


def kept(api, probs, top_p):
    out = torch.as_tensor(api.top_p_filter(torch.log(torch.tensor([probs])), top_p))[0]
    return sorted(int(i) for i in torch.isfinite(out).nonzero().reshape(-1))


@NUCLEUS
@pytest.mark.parametrize("probs,top_p,expected", [
    ([0.5, 0.35, 0.10, 0.05], 0.9, [0, 1, 2]),  # 0.85 < 0.9: the third token crosses and is kept
    ([0.4, 0.3, 0.2, 0.1], 0.8, [0, 1, 2]),
    ([0.05, 0.95], 0.9, [1]),  # the top token alone exceeds top_p
    ([0.25, 0.25, 0.25, 0.25], 1.0, [0, 1, 2, 3]),
])
def test_hand_derived_nuclei(api, probs, top_p, expected):
    assert kept(api, probs, top_p) == expected


@NUCLEUS
@given(data=st.data(), V=st.integers(2, 12), top_p=st.floats(0.05, 0.99))
def test_the_nucleus_is_the_smallest_set_reaching_top_p(api, data, V, top_p):
    logits = torch.tensor(data.draw(st.lists(st.floats(-6, 6), min_size=V, max_size=V)))
    probs = torch.softmax(logits.double(), dim=0)
    out = torch.as_tensor(api.top_p_filter(logits[None], top_p))[0]
    keep = torch.isfinite(out)
    assert keep.any(), "the nucleus is empty"
    assert torch.equal(out[keep].float(), logits[keep].float()), "kept logits were changed"
    mass = float(probs[keep].sum())
    assert mass >= top_p - 1e-6, f"kept mass {mass} below top_p {top_p}"
    smallest_kept = float(probs[keep].min())
    assert mass - smallest_kept < top_p + 1e-6, "a smaller set would already reach top_p"
    assert not (probs[~keep] > smallest_kept + 1e-6).any(), "a more probable token was dropped"  # float32 ties


@pytest.mark.case(stands_for="generated captions: [SEP] not before min_length, at most max_length, [PAD] after "
                             "[SEP]", stage="caption generation (nucleus sampling)")
@given(seed=st.integers(0, 99), min_length=st.integers(0, 3), extra=st.integers(0, 4))
def test_generation_respects_the_length_limits(api, seed, min_length, extra):
    torch.manual_seed(seed)
    model = api.build_blip(TINY_CONFIG)
    feats, _, _ = random_batch(3, 4, seed=seed)
    max_length = min_length + extra + 1
    out = torch.as_tensor(api.generate_captions(model, feats, max_length, min_length, 0.9,
                                       generator=torch.Generator().manual_seed(seed)))
    assert out.dim() == 2 and out.shape[0] == 3 and 1 <= out.shape[1] <= max_length
    for row in out.tolist():
        sep = row.index(TOKENS["sep"]) if TOKENS["sep"] in row else len(row)
        assert sep >= min_length, f"[SEP] at {sep} before min_length {min_length}: {row}"
        assert all(t == TOKENS["pad"] for t in row[sep + 1:]), f"tokens after [SEP]: {row}"
        assert TOKENS["pad"] not in row[:sep], f"[PAD] generated inside the caption: {row}"
