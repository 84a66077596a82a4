"""LAVIS #285 (also BLIP #41, ALBEF #126): with several captions per image in a batch (COCO has 5), ITC used
`arange(B)` targets, so a caption of the SAME image counted as a negative, and ITM could draw it as a "hard
negative" labelled no-match; the fix makes captions with equal image ids positives of each other (ITC targets
spread over them, ITM never samples them as negatives)."""

import pytest
import torch
from hypothesis import given, strategies as st

pytestmark = pytest.mark.qformer


def feats(B, seed):
    gen = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(B, 3, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(B, 8, generator=gen), dim=-1)
    return img, txt


@given(B=st.integers(2, 6), seed=st.integers(0, 999))
def test_swapping_two_captions_of_one_image_keeps_the_itc_loss(api, B, seed):
    img, txt = feats(B, seed)
    # rows 0 and 1: two views of one image (different features, same id) with two different captions
    ids = torch.arange(B)
    ids[1] = 0
    swapped = txt.clone()
    swapped[[0, 1]] = txt[[1, 0]]
    a, b = api.itc_loss(img, txt, 0.07, ids), api.itc_loss(img, swapped, 0.07, ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@given(B=st.integers(2, 6), seed=st.integers(0, 999))
def test_hard_negatives_skip_captions_of_the_same_image(api, B, seed):
    ids = torch.arange(B) // 2
    sim = torch.randn(B, B, generator=torch.Generator().manual_seed(seed)) + 10 * (ids[:, None] == ids[None, :])
    neg_text, neg_image = api.sample_hard_negatives(sim, ids, generator=torch.Generator().manual_seed(seed))
    for b in range(B):
        for picked in (int(neg_text[b]), int(neg_image[b])):
            if (ids != ids[b]).any():
                assert ids[picked] != ids[b]
