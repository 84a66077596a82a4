"""Behavioural properties of the reference Q-Former: mask semantics observed through outputs, the ITG cache,
cross-attention placement, and clear errors on bad input."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.blip2.qformer import QFormerConfig, build_attention_mask
from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config

Q = 4
SEEDS = st.integers(0, 2**16)


def model(seed=0, layers=3, freq=2, impl="eager") -> Blip2Stage1:
    torch.manual_seed(seed)
    q = QFormerConfig(vocab_size=40, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      intermediate_size=48, max_position_embeddings=32, encoder_width=24, num_query_tokens=Q,
                      cross_attention_freq=freq, attn_implementation=impl)
    return Blip2Stage1(Blip2Stage1Config(qformer=q, embed_dim=16, cls_token_id=2, sep_token_id=3,
                                         dec_token_id=4)).eval()


def batch(seed, B=3, T=8):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (B, T), generator=gen)
    ids[:, 0] = 2
    mask = torch.ones(B, T, dtype=torch.long)
    mask[-1, T - 2:] = 0
    return torch.randn(B, 6, 24, generator=gen), ids, mask


MODEL = model()


@settings(max_examples=10)
@given(seed=SEEDS, position=st.integers(1, 7))
def test_text_never_changes_query_outputs_in_itc_and_itg(seed, position):
    image, ids, mask = batch(seed)
    other = ids.clone()
    other[:, position] = (other[:, position] - 4) % 35 + 5
    with torch.no_grad():
        # ITG without the cache: the joint pass under the decoder mask
        joint = [MODEL.qformer(input_ids=x, attention_mask=torch.cat([torch.ones(3, Q, dtype=torch.long), mask], 1),
                               image_embeds=image, causal=True).last_hidden_state[:, :Q] for x in (ids, other)]
        query = MODEL.query_pass(image).last_hidden_state
    assert torch.equal(joint[0], joint[1])
    torch.testing.assert_close(joint[0], query, atol=1e-6, rtol=0)


@settings(max_examples=10)
@given(seed=SEEDS, position=st.integers(1, 7))
def test_future_text_never_changes_earlier_itg_positions(seed, position):
    image, ids, mask = batch(seed)
    other = ids.clone()
    other[:, position] = (other[:, position] - 4) % 35 + 5
    with torch.no_grad():
        a, b = (MODEL.itg_logits(image, x, mask) for x in (ids, other))
    assert torch.equal(a[:, :position], b[:, :position])
    assert not torch.allclose(a[:, position:], b[:, position:])


@settings(max_examples=8)
@given(seed=SEEDS, position=st.integers(1, 7))
def test_itm_pass_mixes_both_directions(seed, position):
    image, ids, mask = batch(seed)
    mask[:] = 1
    other = ids.clone()
    other[:, position] = (other[:, position] - 4) % 35 + 5
    with torch.no_grad():
        a, b = (MODEL.itm_pass(image, x, mask) for x in (ids, other))
        c = MODEL.itm_pass(image.flip(0), ids, mask)
    assert not torch.allclose(a[:, :Q], b[:, :Q])  # text -> queries
    assert not torch.allclose(a[:, Q:Q + position], b[:, Q:Q + position])  # later text -> earlier text
    assert not torch.allclose(a[:, Q:], c[:, Q:])  # image (via queries) -> text


@settings(max_examples=8)
@given(seed=SEEDS, impl=st.sampled_from(["eager", "sdpa"]))
def test_itg_with_cached_query_kv_equals_recompute(seed, impl):
    m = model(seed % 7, impl=impl)
    image, ids, mask = batch(seed)
    with torch.no_grad():
        cached = m.itg_logits(image, ids, mask, reuse_query_cache=True)
        joint = m.itg_logits(image, ids, mask, reuse_query_cache=False)
    torch.testing.assert_close(cached, joint, atol=1e-5, rtol=1e-5)


def test_step_by_step_decoding_equals_one_pass():
    image, ids, mask = batch(1)
    mask[:] = 1
    with torch.no_grad():
        full = MODEL.itg_logits(image, ids, mask)
        cache = MODEL.query_pass(image, use_cache=True).past_key_values
        steps = []
        for t in range(ids.shape[1]):
            logits, cache = MODEL.decode(ids[:, t:t + 1], torch.ones(3, Q + t + 1, dtype=torch.long), cache,
                                         use_cache=True)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_text_positions_start_at_zero_after_cached_queries():
    """A cached query prefix must not shift the text positions: the text's first decoder position
    uses position embedding 0 (as the unimodal text pass does)."""
    image, ids, mask = batch(2)
    with torch.no_grad():
        MODEL.qformer.position_embeddings.weight[1:] += 5.0  # make position 0 distinguishable
        try:
            cache = MODEL.query_pass(image, use_cache=True).past_key_values
            m = torch.ones(3, Q + 1, dtype=torch.long)
            first = MODEL.decode(ids[:, :1], m, cache)
            alone = MODEL.qformer(input_ids=ids[:, :1], image_embeds=image, causal=True,
                                  attention_mask=m).last_hidden_state[:, Q:]
        finally:
            MODEL.qformer.position_embeddings.weight[1:] -= 5.0
    torch.testing.assert_close(first, MODEL.lm_head(alone), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layers,freq", [(1, 1), (4, 1), (4, 2), (6, 3), (5, 7)])
def test_cross_attention_exactly_at_the_configured_frequency(layers, freq):
    q = model(0, layers, freq).qformer
    assert q.cross_attention_layers == [i for i in range(layers) if i % freq == 0]
    assert sum(1 for name, _ in q.named_modules() if name.endswith("crossattention")) == len(range(0, layers, freq))


def test_text_only_pass_never_runs_cross_attention():
    m = model(3)
    _, ids, mask = batch(3)
    with torch.no_grad():
        before = m.text_pass(ids, mask)
        for i in m.qformer.cross_attention_layers:
            for p in m.qformer.layers[i].crossattention.parameters():
                p.add_(torch.randn_like(p))
        assert torch.equal(before, m.text_pass(ids, mask))


def test_query_and_text_feed_forwards_are_separate_but_start_equal():
    m = model(4)
    for layer in m.qformer.layers:
        for a, b in zip(layer.query_ffn.parameters(), layer.text_ffn.parameters()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_padding_mask_hides_pad_tokens():
    image, ids, mask = batch(5)
    other = ids.clone()
    other[-1, -2:] = 7  # change only padded positions
    with torch.no_grad():
        a, b = (MODEL.itm_pass(image, x, mask) for x in (ids, other))
    torch.testing.assert_close(a[:, :-2], b[:, :-2], atol=1e-6, rtol=0)


@given(past=st.integers(0, 5), rows=st.integers(1, 6), query_length=st.integers(0, 6))
def test_decoder_mask_pattern(past, rows, query_length):
    L = past + rows
    allowed = build_attention_mask(torch.ones(1, L), rows, past, query_length, causal=True)[0, 0]
    for i in range(rows):
        f = past + i
        for j in range(L):
            expected = j < query_length or (f >= query_length and j <= f)
            assert bool(allowed[i, j]) == expected


def test_bad_inputs_are_named():
    q = MODEL.qformer
    with pytest.raises(ValueError, match="nothing to run"):
        q()
    with pytest.raises(ValueError, match="attention_mask has shape"):
        q(input_ids=torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="image_embeds are required"):
        q(with_queries=True, input_ids=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        q(input_ids=torch.ones(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        QFormerConfig(hidden_size=30, num_attention_heads=4)
    with pytest.raises(ValueError, match="dec_token_id"):
        Blip2Stage1Config(qformer=QFormerConfig(vocab_size=10), cls_token_id=1, sep_token_id=2, dec_token_id=10)
