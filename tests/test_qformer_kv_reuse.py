"""Image keys/values projected once and reused (reference/blip2/qformer.py `image_kv`): the same numbers as
projecting them inside every pass, in retrieval re-ranking (one image beside its candidate texts, batched) and in
the stage-1 training step (the ITM pass reusing the ITC query pass's projections), with operation counts that
show the reuse happens."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.blip2.qformer import QFormerConfig, gather_image_kv
from reference.blip2.retrieval import SharedImageITM, per_pair_itm, rerank_scores
from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config

SEEDS = st.integers(0, 2**16)


def model(seed=0, layers=3, freq=2, heads=4, Q=4, impl="sdpa", width=24) -> Blip2Stage1:
    torch.manual_seed(seed)
    q = QFormerConfig(vocab_size=40, hidden_size=32, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=48, max_position_embeddings=32, encoder_width=width, num_query_tokens=Q,
                      cross_attention_freq=freq, attn_implementation=impl)
    return Blip2Stage1(Blip2Stage1Config(qformer=q, embed_dim=16, cls_token_id=2, sep_token_id=3,
                                         dec_token_id=4)).eval()


def texts(seed, B, T):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 40, (B, T), generator=gen)
    ids[:, 0] = 2
    mask = torch.ones(B, T, dtype=torch.long)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, mask


def count_key_rows(m: Blip2Stage1) -> list[int]:
    """Install hooks counting the image rows projected by every cross-attention key projection."""
    rows = [0]
    for i in m.qformer.cross_attention_layers:
        m.qformer.layers[i].crossattention.key.register_forward_hook(
            lambda mod, args, out: rows.__setitem__(0, rows[0] + args[0].shape[0]))
    return rows


@settings(max_examples=12, deadline=None)
@given(seed=SEEDS, layers=st.integers(1, 4), freq=st.integers(1, 3), heads=st.sampled_from([1, 2, 4]),
       B=st.integers(1, 5), N=st.integers(1, 9), T=st.integers(1, 6), impl=st.sampled_from(["eager", "sdpa"]))
def test_precomputed_image_kv_equals_projecting_inside(seed, layers, freq, heads, B, N, T, impl):
    m = model(seed % 11, layers, freq, heads, impl=impl)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(B, N, 24, generator=gen)
    ids, mask = texts(seed, B, T)
    with torch.no_grad():
        kv = m.qformer.image_kv(images)
        torch.testing.assert_close(m.query_pass(None, image_kv=kv).last_hidden_state,
                                   m.query_pass(images).last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m.itm_logits(None, ids, mask, image_kv=kv), m.itm_logits(images, ids, mask),
                                   atol=1e-5, rtol=1e-5)
        # one image shared by every row (batch-1 keys/values) = that image repeated beside each text
        shared = m.itm_logits(None, ids, mask, image_kv=gather_image_kv(kv, torch.tensor([0])))
        repeated = m.itm_logits(images[:1].expand(B, -1, -1), ids, mask)
    torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=1e-5)
    assert [e is None for e in kv] == [not layer.has_cross_attention for layer in m.qformer.layers]


@settings(max_examples=10, deadline=None)
@given(seed=SEEDS, Ni=st.integers(1, 5), Nt=st.integers(1, 9), k=st.integers(1, 12),
       batch=st.integers(1, 16), per_image=st.booleans())
def test_shared_image_reranking_equals_per_pair_and_projects_each_image_once(seed, Ni, Nt, k, batch, per_image):
    m = model(seed % 5)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(Ni, 5, 24, generator=gen)
    ids, mask = texts(seed, Nt, 6)
    sim = torch.randn(Ni, Nt, generator=gen)
    calls = []
    shared = SharedImageITM(m, images, ids, mask)

    def recording(i, t):
        calls.append(i.clone())
        return shared(i, t)

    with torch.no_grad():
        a_i2t, a_t2i = rerank_scores(sim, recording, k, batch_size=batch, per_image=per_image)  # k > candidates: clipped
        b_i2t, b_t2i = rerank_scores(sim, per_pair_itm(m, images, ids, mask), k, batch_size=batch)
    torch.testing.assert_close(a_i2t, b_i2t, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a_t2i, b_t2i, atol=1e-5, rtol=1e-5)
    assert (a_i2t > -100).sum(dim=1).tolist() == [min(k, Nt)] * Ni
    assert (a_t2i > -100).sum(dim=1).tolist() == [min(k, Ni)] * Nt
    kk = min(k, Nt)
    assert torch.equal(a_i2t.topk(kk, dim=1).indices.sort(dim=1).values, b_i2t.topk(kk, dim=1).indices.sort(dim=1).values)
    assert all(c.numel() <= batch for c in calls)
    if per_image:  # one image per call, each image projected once in all
        assert all(c.unique().numel() == 1 for c in calls)
        assert shared.projections == torch.cat(calls).unique().numel() <= Ni
    else:  # each image at most once per call it appears in
        assert torch.cat(calls).unique().numel() <= shared.projections <= sum(c.unique().numel() for c in calls)


def test_shared_scorer_handles_mixed_image_calls():
    m = model(1)
    images, (ids, mask) = torch.randn(3, 5, 24), texts(1, 4, 6)
    i, t = torch.tensor([0, 0, 2, 1, 1, 0]), torch.tensor([0, 3, 1, 2, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(SharedImageITM(m, images, ids, mask)(i, t), per_pair_itm(m, images, ids, mask)(i, t),
                                   atol=1e-5, rtol=1e-5)


def step(m: Blip2Stage1, reuse: bool, images, ids, mask, image_ids=None):
    """Losses and gradients of one stage-1 step in training mode (dropout seeded alike)."""
    m.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    out = m(images, ids, mask, image_ids=image_ids, generator=torch.Generator().manual_seed(7), reuse_image_kv=reuse)
    out["loss"].backward()
    return ({k: v.detach() for k, v in out.items()},
            {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})


@settings(max_examples=6, deadline=None)
@given(seed=SEEDS, B=st.integers(1, 5), layers=st.integers(1, 3), freq=st.integers(1, 2),
       repeat_image=st.booleans())
def test_training_step_reusing_image_kv_equals_recompute(seed, B, layers, freq, repeat_image):
    m = model(seed % 7, layers, freq).train()
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 5, 24, generator=gen)
    ids, mask = texts(seed, B, 7)
    image_ids = torch.tensor([0] + list(range(B - 1))) if repeat_image and B > 1 else None  # two captions of one image
    rows = count_key_rows(m)
    losses_r, grads_r = step(m, True, images, ids, mask, image_ids)
    reuse_rows, rows[0] = rows[0], 0
    losses_c, grads_c = step(m, False, images, ids, mask, image_ids)
    for name in losses_c:
        torch.testing.assert_close(losses_r[name], losses_c[name], atol=1e-5, rtol=1e-5)
    assert grads_r.keys() == grads_c.keys()
    for name in grads_c:
        torch.testing.assert_close(grads_r[name], grads_c[name], atol=1e-5, rtol=1e-5, msg=name)
    cross = len(m.qformer.cross_attention_layers)
    assert reuse_rows == cross * B  # each image projected once per cross-attention layer
    assert rows[0] > reuse_rows  # the recompute re-projects the images of the ITM pass


def test_image_kv_arguments_are_checked():
    m = model(0)
    images = torch.randn(2, 5, 24)
    kv = m.qformer.image_kv(images)
    ids, mask = texts(0, 3, 4)
    with pytest.raises(ValueError, match="not both"):
        m.qformer(image_embeds=images, image_kv=kv)
    with pytest.raises(ValueError, match="image_kv of batch 2 for 3 rows"):
        m.itm_logits(None, ids, mask, image_kv=kv)
    with pytest.raises(ValueError, match="one per layer"):
        m.qformer(image_kv=kv[:1])
    with pytest.raises(ValueError, match=r"image_embeds must be \(B, N, 24\)"):
        m.qformer.image_kv(torch.randn(2, 5, 7))
