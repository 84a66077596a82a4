"""ITM hard negatives (ALBEF §3.2; salesforce/ALBEF models/model_pretrain.py and model_retrieval.py forward,
salesforce/BLIP models/blip_pretrain.py forward): for each image a negative text (and for each text a negative
image) drawn with probability softmax(sim) after zeroing the positive with `fill_diagonal_(0)`, one
`torch.multinomial` per row. Published failures:
- "invalid multinomial distribution (sum of probabilities <= 0)" at batch size 1 or 2 (ALBEF #18, #93, BLIP #76:
  the maintainer's fix adds 1e-4 to the weights, which leaves batch 1 with no negative at all);
- the same error from NaN similarities under mixed precision (ALBEF #107);
- in pre-training a second caption of the SAME image is drawn as a "negative" labelled no-match (ALBEF #126).
The sampler's contract is the qformer family's: -1 where a row has no negative, never a caption of its own image."""

import math

import pytest
import torch
from hypothesis import given, strategies as st

from cases.test_qformer_lavis107_multinomial_nan import batch, check

pytestmark = [pytest.mark.albef]


@pytest.mark.case(stands_for="multinomial on a row without negatives: batch size 1, or every caption of one image "
                             "(ALBEF #18, #93, BLIP #76)", stage="ITM hard-negative sampling")
@pytest.mark.parametrize("ids", [[0], [0, 0], [3, 3, 3]])
def test_a_row_without_negatives_gives_minus_one(api, ids):
    ids = torch.tensor(ids)
    sim = torch.randn(len(ids), len(ids), generator=torch.Generator().manual_seed(len(ids)))
    check(sim, ids, *api.itm_negatives(sim, ids, generator=torch.Generator().manual_seed(0)))


@pytest.mark.case(stands_for="multinomial on NaN / inf similarity rows (ALBEF #107)",
                  stage="ITM hard-negative sampling")
@given(B=st.integers(2, 6), seed=st.integers(0, 999), value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_and_inf_similarities_never_crash(api, B, seed, value):
    sim = torch.randn(B, B, generator=torch.Generator().manual_seed(seed))
    sim[seed % B, (seed // B) % B] = value
    sim[(seed + 1) % B] = math.nan
    ids = torch.arange(B)
    check(sim, ids, *api.itm_negatives(sim, ids, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.case(stands_for="a second caption of the same image drawn as an ITM negative (ALBEF #126)",
                  stage="ITM hard-negative sampling")
@given(data=batch(special=False), seed=st.integers(0, 999))
def test_captions_of_the_same_image_are_never_drawn(api, data, seed):
    sim, ids = data
    check(sim, ids, *api.itm_negatives(sim.float(), ids, generator=torch.Generator().manual_seed(seed)))
