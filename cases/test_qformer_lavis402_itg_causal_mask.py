"""LAVIS #402, #360: doubts about the ITG (image-grounded text generation) mask. Checked as behaviour: in
the decoder pass a text position never sees later text (changing a future token leaves earlier logits
unchanged), the text does see the image through the queries, and the queries never see the text (their
outputs in the ITM pass, which is bidirectional, do change with the text; in the ITC query pass they cannot)."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.interface.qformer import FIRST_WORD_ID, TINY_CONFIG, random_batch

pytestmark = pytest.mark.qformer
ITG_MASK = "LAVIS #402 / #360: ITG decoder mask (text causal over text, sees every query; queries never see text)"
Q = TINY_CONFIG["num_query_tokens"]


@pytest.fixture(scope="module")
def model(api):
    torch.manual_seed(0)
    return api.build(TINY_CONFIG)


def decoder_batch(seed):
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8, seed=seed)
    mask[:] = 1
    ids = ids.clone()
    ids[:, 0] = TINY_CONFIG["dec_token_id"]
    return images, ids, mask


def change(ids, position):
    other = ids.clone()
    span = TINY_CONFIG["vocab_size"] - FIRST_WORD_ID
    other[:, position] = (other[:, position] - FIRST_WORD_ID + 1) % span + FIRST_WORD_ID
    return other


@pytest.mark.case(stands_for=ITG_MASK, stage="ITG decoder logits (cached query keys/values)")
@settings(max_examples=15)
@given(seed=st.integers(0, 999), position=st.integers(1, 7))
def test_future_tokens_never_change_earlier_logits(api, model, seed, position):
    images, ids, mask = decoder_batch(seed)
    with torch.no_grad():
        a = api.itg_logits(model, images, ids, mask)
        b = api.itg_logits(model, images, change(ids, position), mask)
    torch.testing.assert_close(a[:, :position], b[:, :position], atol=1e-5, rtol=0)
    assert not torch.allclose(a[:, position:], b[:, position:], atol=1e-5)


@pytest.mark.case(stands_for=ITG_MASK, stage="ITG decoder logits (cached query keys/values)")
@settings(max_examples=10)
@given(seed=st.integers(0, 999))
def test_text_generation_sees_the_image(api, model, seed):
    images, ids, mask = decoder_batch(seed)
    with torch.no_grad():
        a = api.itg_logits(model, images, ids, mask)
        b = api.itg_logits(model, images.roll(1, dims=0), ids, mask)
    assert not torch.allclose(a, b, atol=1e-5)


@pytest.mark.case(stands_for=ITG_MASK, stage="ITM pass and query pass")
@settings(max_examples=10)
@given(seed=st.integers(0, 999), position=st.integers(1, 6))
def test_itm_queries_see_the_text_but_query_pass_does_not_depend_on_it(api, model, seed, position):
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8, seed=seed)
    mask[:] = 1
    with torch.no_grad():
        a = api.itm_pass(model, images, ids, mask)
        b = api.itm_pass(model, images, change(ids, position), mask)
        q = api.query_pass(model, images)
    assert not torch.allclose(a[:, :Q], b[:, :Q], atol=1e-5)
    assert tuple(q.shape[:2]) == (3, Q)
