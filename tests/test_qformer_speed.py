"""The re-ranking and training-step comparisons of perf-qformer (bench/qformer_speed.py) at a micro size: the
public loop and the reference give the same scores, the FLOP columns add up to what FlopCounterMode counts on
the whole call, and the counter sees the CPU attention kernel."""

import torch
import torch.nn.functional as F

from bench import qformer_speed as qs
from bench.flops import count_flops

MICRO = dict(config=dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, encoder_width=24, num_query_tokens=4), patches=5, text=6)
KV = ("crossattention.key", "crossattention.value")


def test_public_loop_equals_reference_in_both_directions_with_k_clipped():
    model = qs.build(MICRO, 0, "cpu").eval()
    embeds, ids, mask, sim = qs.inputs(model, MICRO, 3, 5, 1, "cpu")
    for directions in (("i2t",), ("t2i",), ("i2t", "t2i")):
        p_i2t, p_t2i = qs.public_rerank(model, embeds, ids, mask, sim, 4, directions)  # t2i: k = 4 > 3 images
        r_i2t, r_t2i, projections = qs.reference_rerank(model, embeds, ids, mask, sim, 4, directions)
        torch.testing.assert_close(p_i2t, r_i2t, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(p_t2i, r_t2i, atol=1e-5, rtol=1e-5)
        assert qs.same_rankings(p_i2t, r_i2t) and qs.same_rankings(p_t2i, r_t2i)
        assert projections == 3
    assert ((p_t2i > qs.FILL).sum(dim=1) == 3).all() and ((p_i2t > qs.FILL).sum(dim=1) == 4).all()


def test_flop_units_add_up_to_the_counted_calls():
    model = qs.build(MICRO, 0, "cpu").eval()
    units = qs.pair_flops(model, MICRO, "cpu")
    assert units["pair_kv"] == units["projection"]  # the K/V share of a pair is exactly one projection
    embeds, ids, mask, sim = qs.inputs(model, MICRO, 2, 5, 1, "cpu")
    public = count_flops(lambda: qs.public_rerank(model, embeds, ids, mask, sim, 3, ("i2t", "t2i")))
    reference = count_flops(lambda: qs.reference_rerank(model, embeds, ids, mask, sim, 3, ("i2t",)))
    pairs = 2 * 3 + 5 * 2  # i2t: 2 images x 3 texts; t2i: 5 texts x 2 images (k clipped)
    assert public.total == pairs * units["pair"]
    assert reference.total == reference.result[2] * units["projection"] + 2 * 3 * units["text"]


def test_training_step_reuse_saves_exactly_the_itm_projections():
    B = 3
    model = qs.build(MICRO, 0, "cpu").train()
    embeds, ids, mask, _ = qs.inputs(model, MICRO, B, B, 2, "cpu")
    recompute = count_flops(lambda: qs.training_step(model, embeds, ids, mask, reuse=False))
    reuse = count_flops(lambda: qs.training_step(model, embeds, ids, mask, reuse=True))
    projection = count_flops(lambda: model.qformer.image_kv(embeds[:1])).total
    # the ITM pass's 3B images are no longer projected (forward) nor their weight gradients formed (backward)
    assert recompute.total - reuse.total == 2 * 3 * B * projection


def test_counter_sees_cpu_attention():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    fused = count_flops(lambda: F.scaled_dot_product_attention(q, k, v)).total
    eager = count_flops(lambda: (q @ k.transpose(-1, -2)).softmax(-1) @ v).total
    assert fused == eager == 2 * (2 * 2 * 3 * 5 * 7 * 8)
