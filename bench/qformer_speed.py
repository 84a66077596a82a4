"""Q-Former image keys/values computed once, measured against the public code's recompute (perf-qformer).

1. Retrieval re-ranking: the public loop (LAVIS compute_sim_matrix: each image repeated k times beside its top-k
   texts, each text repeated beside its top-k images, one full multimodal pass per pair) against the reference
   (reference/blip2/retrieval.py: each image's cross-attention keys/values projected once, its candidate texts
   scored in one batched pass over them). Same pairs, same scores (max abs diff recorded), same rankings.
2. The stage-1 training step (ITC + ITM + ITG, forward and backward): the ITM pass re-projecting its 3B images
   (public code) against reusing the projections of the ITC query pass; losses and gradients compared.

Timing: bench.timing.compare (interleaved, alternating order, min / median, spread flag); FLOPs: bench.flops.
"""

from __future__ import annotations

import torch

from bench.flops import count_flops
from bench.timing import compare
from reference.blip2.qformer import QFormerConfig
from reference.blip2.retrieval import FILL, SharedImageITM, rerank_scores
from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config

KV_MODULES = ("crossattention.key", "crossattention.value")  # the image keys/values projections
RERANK_BATCH = 128  # pairs per reference ITM pass (the public loop's is k): a mixed batch holds 128 images' K/V
PAPER = dict(config=dict(vocab_size=30523, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, encoder_width=1408, num_query_tokens=32), patches=257, text=32)
TINY = dict(config=dict(vocab_size=60, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=128, encoder_width=64, num_query_tokens=8), patches=64, text=22)


def build(size: dict, seed: int, device) -> Blip2Stage1:
    """A stage-1 model of `size` (PAPER or TINY) with random weights."""
    torch.manual_seed(seed)
    q = QFormerConfig(**size["config"], max_position_embeddings=64)
    vocab = q.vocab_size
    return Blip2Stage1(Blip2Stage1Config(qformer=q, cls_token_id=vocab - 4, sep_token_id=vocab - 3,
                                         dec_token_id=vocab - 2)).to(device)


def inputs(model: Blip2Stage1, size: dict, images: int, texts: int, seed: int, device):
    """Random image features (Ni, N, D), [CLS] text [SEP] pad ids and masks (Nt, T), ITC-like similarities."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.config
    embeds = torch.randn(images, size["patches"], cfg.qformer.encoder_width, generator=gen)
    T = size["text"]
    ids = torch.randint(1, cfg.qformer.vocab_size - 4, (texts, T), generator=gen)
    lengths = torch.randint(T // 2, T + 1, (texts,), generator=gen)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    ids[:, 0] = cfg.cls_token_id
    ids[torch.arange(texts), lengths - 1] = cfg.sep_token_id
    ids = ids * mask
    sim = torch.rand(images, texts, generator=gen)
    return embeds.to(device), ids.to(device), mask.to(device), sim


@torch.no_grad()
def public_rerank(model, image_embeds, ids, mask, sim, k: int, directions) -> tuple[torch.Tensor, torch.Tensor]:
    """The public compute_sim_matrix loop: per image, the image repeated k times beside its top-k texts; per text,
    the text repeated beside its top-k images; one full ITM pass each (k clipped to the candidates here, where
    the public code's topk would raise). Returns (i2t (Ni, Nt), t2i (Nt, Ni)), ITM + ITC, FILL elsewhere."""
    Ni, Nt = sim.shape
    i2t, t2i = torch.full((Ni, Nt), FILL), torch.full((Nt, Ni), FILL)
    if "i2t" in directions:
        for i in range(Ni):
            top_sim, top = sim[i].topk(min(k, Nt))
            repeated = image_embeds[i].repeat(len(top), 1, 1)  # (k, N, D)
            score = model.itm_logits(repeated, ids[top], mask[top])[:, 1].float().cpu()
            i2t[i, top] = score + top_sim
    if "t2i" in directions:
        for t in range(Nt):
            top_sim, top = sim[:, t].topk(min(k, Ni))
            score = model.itm_logits(image_embeds[top], ids[t].repeat(len(top), 1), mask[t].repeat(len(top), 1))
            t2i[t, top] = score[:, 1].float().cpu() + top_sim
    return i2t, t2i


@torch.no_grad()
def reference_rerank(model, image_embeds, ids, mask, sim, k: int, directions):
    """reference/blip2/retrieval.py: rerank_scores with SharedImageITM, batches of up to RERANK_BATCH pairs sorted
    by image (one image's pairs share its keys/values; a batch over several images projects them together)."""
    scorer = SharedImageITM(model, image_embeds, ids, mask)
    i2t, t2i = rerank_scores(sim, scorer, k, batch_size=RERANK_BATCH, directions=directions)
    return i2t.cpu(), t2i.cpu(), scorer.projections


def same_rankings(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Every row ranks its re-scored candidates in the same order."""
    kk = int((a > FILL).sum(dim=1).max()) if a.numel() else 0
    order = lambda s: s.argsort(dim=1, descending=True, stable=True)[:, :kk]  # noqa: E731
    return torch.equal(order(a), order(b)) and torch.equal(a > FILL, b > FILL)


@torch.no_grad()
def pair_flops(model, size: dict, device) -> dict[str, int]:
    """FLOPs of one public ITM pair, of projecting one image's keys/values, and of one text scored over
    precomputed keys/values; every re-ranking is a sum of these (all ops are linear in the batch)."""
    embeds, ids, mask, _ = inputs(model, size, 1, 1, 0, device)
    pair = count_flops(lambda: model.itm_logits(embeds, ids, mask))
    kv = count_flops(lambda: model.qformer.image_kv(embeds))
    text = count_flops(lambda: model.itm_logits(None, ids, mask, image_kv=kv.result))
    return {"pair": pair.total, "pair_kv": pair.share(KV_MODULES), "projection": kv.total, "text": text.total}


def rerank_rows(ctx, quick: bool) -> tuple[list[list], dict]:
    """Re-ranking, public loop vs reference: one row per (direction, k)."""
    size = TINY if quick else PAPER
    device = ctx.device
    model = build(size, ctx.seed, device).eval()
    flops = pair_flops(model, size, device)
    # (direction, k, images, texts, repeats, warmup): the CPU budget keeps the paper-size galleries small
    plan = ([("i2t", 8, 2, 8, 2, 1), ("t2i", 8, 8, 3, 2, 1)] if quick else
            [("i2t", 16, 1, 16, 3, 1), ("i2t", 128, 1, 128, 2, 0), ("t2i", 16, 16, 4, 2, 0)])
    rows, metrics = [], {"flops": flops, "kv_share_of_pair": flops["pair_kv"] / flops["pair"]}
    for direction, k, Ni, Nt, repeats, warmup in plan:
        embeds, ids, mask, sim = inputs(model, size, Ni, Nt, ctx.seed + k, device)
        dirs = (direction,)
        t = compare({"public loop": lambda: public_rerank(model, embeds, ids, mask, sim, k, dirs),
                     "reference": lambda: reference_rerank(model, embeds, ids, mask, sim, k, dirs)},
                    repeats=repeats, warmup=warmup, device=device)
        (p_i2t, p_t2i), (r_i2t, r_t2i, projections) = t.results["public loop"], t.results["reference"]
        pub, ref = (p_i2t, r_i2t) if direction == "i2t" else (p_t2i, r_t2i)
        pairs = int((pub > FILL).sum())
        diff = (pub - ref).abs().max().item()
        same = same_rankings(pub, ref)
        flop_ratio = pairs * flops["pair"] / (projections * flops["projection"] + pairs * flops["text"])
        wall, cpu = t.ratio("public loop", "reference"), t.ratio("public loop", "reference", "cpu")
        pub_s, ref_s = t.summary("public loop")["wall_median_s"], t.summary("reference")["wall_median_s"]
        queries = f"{Ni} image(s) x top-{k} of {Nt} texts" if direction == "i2t" else \
            f"{Nt} texts x top-{k} of {Ni} images"
        rows.append([direction, k, queries, pairs, projections, pairs / pub_s, pairs / ref_s, wall.text(), cpu.text(),
                     flop_ratio, t.load_text(), f"{'yes' if same else 'NO'}, {diff:.1e}"])
        metrics[f"{direction}_k{k}"] = {"pairs": pairs, "images_projected": projections,
                                        "public_pairs_per_s": pairs / pub_s, "reference_pairs_per_s": pairs / ref_s,
                                        "speedup_wall": wall.record(), "speedup_cpu": cpu.record(),
                                        "flop_ratio": flop_ratio, "max_abs_diff": diff, "same_rankings": same,
                                        "timing": t.record()}
    return rows, metrics


def training_step(model: Blip2Stage1, embeds, ids, mask, reuse: bool, keep: bool = False):
    """One stage-1 step (all three losses, forward + backward), dropout seeded alike on both sides. keep=True:
    returns (losses, gradients, forward FLOPs, backward FLOPs)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    forward = lambda: model(embeds, ids, mask, generator=torch.Generator().manual_seed(2),  # noqa: E731
                            reuse_image_kv=reuse)
    if not keep:
        forward()["loss"].backward()
        return None
    fwd = count_flops(forward)
    bwd = count_flops(lambda: fwd.result["loss"].backward())
    return ({k: v.detach() for k, v in fwd.result.items()},
            {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
            fwd.total, bwd.total)


def training_rows(ctx, quick: bool) -> tuple[list[list], dict]:
    """The stage-1 step reusing image K/V vs recomputing them, with FLOPs and the equality of losses and grads."""
    size, batch = (TINY, 8) if quick else (PAPER, 2)
    device = ctx.device
    model = build(size, ctx.seed, device).train()
    embeds, ids, mask, _ = inputs(model, size, batch, batch, ctx.seed, device)
    counted = {name: training_step(model, embeds, ids, mask, reuse, keep=True)  # also each side's warm-up
               for name, reuse in (("recompute", False), ("reuse", True))}
    (loss_c, grad_c, fwd_c, bwd_c), (loss_r, grad_r, fwd_r, bwd_r) = counted["recompute"], counted["reuse"]
    flops = {"recompute": fwd_c + bwd_c, "reuse": fwd_r + bwd_r, "recompute_forward": fwd_c, "reuse_forward": fwd_r}
    loss_diff = max((loss_c[k] - loss_r[k]).abs().item() for k in loss_c)
    grad_diff = max((grad_c[n] - grad_r[n]).abs().max().item() for n in grad_c) if grad_c.keys() == grad_r.keys() \
        else float("inf")
    del counted, grad_c, grad_r
    t = compare({"recompute": lambda: training_step(model, embeds, ids, mask, False),
                 "reuse": lambda: training_step(model, embeds, ids, mask, True)},
                repeats=2 if quick else 3, warmup=0, device=device)
    wall, cpu = t.ratio("recompute", "reuse"), t.ratio("recompute", "reuse", "cpu")
    share = 1 - flops["reuse"] / flops["recompute"]
    rows = [[f"{'tiny' if quick else 'paper'} size, batch {batch} (ITM on {batch} positive + {2 * batch} negative "
             f"pairs)", 1000 * t.summary("recompute")["wall_median_s"], 1000 * t.summary("reuse")["wall_median_s"],
             wall.text(), cpu.text(), 100 * share, flops["recompute"] / flops["reuse"], fwd_c / fwd_r, t.load_text(),
             loss_diff, grad_diff]]
    metrics = {"batch": batch, "flops": flops, "saved_flop_share": share, "flop_ratio": flops["recompute"] / flops["reuse"],
               "forward_flop_ratio": fwd_c / fwd_r,
               "speedup_wall": wall.record(), "speedup_cpu": cpu.record(), "max_loss_diff": loss_diff,
               "max_grad_diff": grad_diff, "timing": t.record()}
    return rows, metrics
