"""Invariants of the Q-Former passes and of the model-level scores (ITM logits, ITC similarity): a text's
padding never changes its features or scores (the attention mask is honoured in the text, ITM and query passes),
and no row's output depends on the other rows of the batch (masks and the query expansion broadcast per row;
a batch of one keeps its axes). These are the parts every peer has (transformers' BLIP-2 included), so they are
also the parity cases of the family: the same contract checked on each implementation's own random weights.
"""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.interface.qformer import TINY_CONFIG, random_batch

pytestmark = pytest.mark.qformer
PAD = TINY_CONFIG["pad_token_id"]
TOL = dict(atol=1e-5, rtol=1e-4)

PADDING = "padding (mask 0) must not change a text's outputs: the attention mask is honoured"
BATCH = "a row's output must not depend on the other rows of the batch (batch of one included)"
ITM_LOGITS = "ITM logits (ITM pass + head, mean over queries)"
ITC_SCORES = "ITC scores (normalised query and [CLS] features, max over queries)"


@pytest.fixture(scope="module")
def model(api):
    torch.manual_seed(0)
    return api.build(TINY_CONFIG)


def padded(ids, mask, extra):
    """The same texts with `extra` more pad positions (mask 0) on the right."""
    B = ids.shape[0]
    return (torch.cat([ids, torch.full((B, extra), PAD, dtype=ids.dtype)], dim=1),
            torch.cat([mask, torch.zeros(B, extra, dtype=mask.dtype)], dim=1))


def out(x):
    return torch.as_tensor(x).detach().float()


@pytest.mark.case(stands_for=PADDING, stage="unimodal text pass")
@settings(max_examples=10)
@given(seed=st.integers(0, 999), extra=st.integers(1, 6))
def test_text_pass_ignores_padding(api, model, seed, extra):
    _, ids, mask = random_batch(TINY_CONFIG, 3, 8, seed=seed)
    with torch.no_grad():
        a = out(api.text_pass(model, ids, mask))
        b = out(api.text_pass(model, *padded(ids, mask, extra)))
    real = mask.bool()
    torch.testing.assert_close(b[:, :8][real], a[real], **TOL)


@pytest.mark.case(stands_for=PADDING, stage="ITM pass (queries and text, bidirectional)")
@settings(max_examples=10)
@given(seed=st.integers(0, 999), extra=st.integers(1, 6))
def test_itm_pass_queries_ignore_padding(api, model, seed, extra):
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8, seed=seed)
    Q = TINY_CONFIG["num_query_tokens"]
    with torch.no_grad():
        a = out(api.itm_pass(model, images, ids, mask))
        b = out(api.itm_pass(model, images, *padded(ids, mask, extra)))
    torch.testing.assert_close(b[:, :Q], a[:, :Q], **TOL)


@pytest.mark.case(stands_for=BATCH, stage="query pass (unimodal queries over the image)")
@settings(max_examples=8)
@given(B=st.integers(1, 4), seed=st.integers(0, 999))
def test_query_pass_rows_do_not_depend_on_the_batch(api, model, B, seed):
    images, _, _ = random_batch(TINY_CONFIG, B, 8, seed=seed)
    with torch.no_grad():
        batch = out(api.query_pass(model, images))
        assert tuple(batch.shape) == (B, TINY_CONFIG["num_query_tokens"], TINY_CONFIG["hidden_size"])
        for b in range(B):
            torch.testing.assert_close(out(api.query_pass(model, images[b:b + 1]))[0], batch[b], **TOL)


@pytest.mark.case(stands_for=BATCH, stage=ITM_LOGITS)
@settings(max_examples=8)
@given(B=st.integers(1, 4), seed=st.integers(0, 999))
def test_itm_logits_do_not_depend_on_the_batch(api, model, B, seed):
    images, ids, mask = random_batch(TINY_CONFIG, B, 8, seed=seed)
    with torch.no_grad():
        batch = out(api.itm_logits(model, images, ids, mask))
        assert tuple(batch.shape) == (B, 2)
        for b in range(B):
            one = out(api.itm_logits(model, images[b:b + 1], ids[b:b + 1], mask[b:b + 1]))
            torch.testing.assert_close(one.reshape(2), batch[b], **TOL)


@pytest.mark.case(stands_for=BATCH, stage=ITC_SCORES)
@settings(max_examples=8)
@given(Bi=st.integers(1, 3), Bt=st.integers(1, 3), seed=st.integers(0, 999))
def test_itc_scores_keep_their_shape_and_do_not_depend_on_the_batch(api, model, Bi, Bt, seed):
    images, _, _ = random_batch(TINY_CONFIG, Bi, 8, seed=seed)
    _, ids, mask = random_batch(TINY_CONFIG, Bt, 8, seed=seed + 1)
    with torch.no_grad():
        scores = out(api.itc_scores(model, images, ids, mask))
        assert tuple(scores.shape) == (Bi, Bt)
        assert bool((scores.abs() <= 1 + 1e-5).all()), "cosine similarities must lie in [-1, 1]"
        for i in range(Bi):
            for t in range(Bt):
                one = out(api.itc_scores(model, images[i:i + 1], ids[t:t + 1], mask[t:t + 1]))
                torch.testing.assert_close(one.reshape(()), scores[i, t], **TOL)


def assert_ignores_padding(api, model, score, seed, extra):
    images, ids, mask = random_batch(TINY_CONFIG, 3, 8, seed=seed)
    scores = getattr(api, score)
    with torch.no_grad():
        torch.testing.assert_close(out(scores(model, images, *padded(ids, mask, extra))),
                                   out(scores(model, images, ids, mask)), **TOL)


@pytest.mark.case(stands_for=PADDING, stage=ITM_LOGITS)
@settings(max_examples=8)
@given(seed=st.integers(0, 999), extra=st.integers(1, 6))
def test_itm_logits_ignore_padding(api, model, seed, extra):
    assert_ignores_padding(api, model, "itm_logits", seed, extra)


@pytest.mark.case(stands_for=PADDING, stage=ITC_SCORES)
@settings(max_examples=8)
@given(seed=st.integers(0, 999), extra=st.integers(1, 6))
def test_itc_scores_ignore_padding(api, model, seed, extra):
    assert_ignores_padding(api, model, "itc_scores", seed, extra)
