"""CapFilt (BLIP §3.3): the filter is the ITM head; a web or synthetic text is removed when the head predicts it
unmatched, i.e. kept iff P(match) = softmax(itm_logits)[:, 1] >= threshold (0.5: the argmax). The bootstrapped set
holds exactly the kept pairs, each under its own image id, the web texts and the synthetic captions alike."""

import pytest
import torch
from hypothesis import given, strategies as st

pytestmark = [pytest.mark.blip]


@pytest.mark.case(stands_for="the filter keeps a pair iff softmax(ITM)[match] >= threshold", stage="CapFilt filter")
@given(data=st.data(), N=st.integers(1, 8), threshold=st.sampled_from([0.1, 0.5, 0.9]))
def test_filter_keeps_a_pair_iff_its_match_probability_reaches_the_threshold(api, data, N, threshold):
    logits = torch.tensor(data.draw(st.lists(st.floats(-8, 8), min_size=2 * N, max_size=2 * N))).reshape(N, 2)
    keep = torch.as_tensor(api.filter_keep(logits, threshold)).reshape(-1).bool()
    prob = torch.softmax(logits.double(), dim=1)[:, 1]
    clear = (prob - threshold).abs() > 1e-6  # leave exact ties to the implementation's rounding
    assert torch.equal(keep[clear], (prob >= threshold)[clear]), f"P(match) {prob.tolist()} threshold {threshold}"


@pytest.mark.case(stands_for="the bootstrapped set = the kept web and synthetic pairs, each with its image id",
                  stage="CapFilt bootstrapping")
@given(data=st.data(), n_web=st.integers(0, 6), n_syn=st.integers(0, 6))
def test_bootstrap_keeps_exactly_the_kept_pairs(api, data, n_web, n_syn):
    web = [(i // 2, f"web caption {i}") for i in range(n_web)]
    synthetic = [(i, f"synthetic caption {i}") for i in range(n_syn)]
    keep_web = data.draw(st.lists(st.booleans(), min_size=n_web, max_size=n_web))
    keep_syn = data.draw(st.lists(st.booleans(), min_size=n_syn, max_size=n_syn))
    out = [tuple(pair) for pair in api.bootstrap(web, synthetic, keep_web, keep_syn)]
    expected = [p for p, k in zip(web, keep_web) if k] + [p for p, k in zip(synthetic, keep_syn) if k]
    assert sorted(out) == sorted(expected)
