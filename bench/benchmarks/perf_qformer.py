"""The `perf-qformer` benchmark (reports/performance.md, Q-Former part). Every ratio comes from
bench.timing.compare (the two sides interleaved, alternating order, same work; median of the per-round ratios
with their range, flagged UNSTEADY beyond the spread limit) with the load average at start and end.

1. Reference Q-Former vs transformers' Blip2QFormerModel forward, SAME config and SAME weights (copied with
   reference/blip2/convert.py), measured side by side in this run:
   the query-only pass and the ITM pass [queries ; text], at the paper size (BERT-base, 32 queries, ViT-g
   width 1408, 257 image tokens) and at the shipped tiny size. CPU float32 (each side with its default SDPA
   attention; the tiny size also both eager); GPU bfloat16 via SDPA when the run has CUDA. The outputs' max abs difference
   is recorded with each timing.
2. ITG with the queries' keys/values reused from the query pass (past_key_values) vs recomputing the queries
   jointly with the text, for a training step's decoder pass and for caption generation (identical tokens).
3. Image keys/values projected once (bench/qformer_speed.py): retrieval re-ranking against the public loop,
   and the stage-1 training step against its recompute, with FLOP counts and equality checks.
"""

from __future__ import annotations

import torch

from bench.device import describe_device
from bench.qformer_speed import rerank_rows, training_rows
from bench.registry import RunContext, register_benchmark
from bench.results import BenchmarkResult, Section, Table
from bench.timing import Ratio, compare
from reference.blip2.convert import export_to_hf
from reference.blip2.qformer import QFormer, QFormerConfig

GPU_NOTE = "not measured (no GPU in this run)"
SIZES = {
    "paper (BERT-base, 32 queries, 257 x 1408 image tokens)": dict(
        config=dict(vocab_size=30523, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                    intermediate_size=3072, encoder_width=1408, num_query_tokens=32), batch=2, patches=257, text=32),
    "tiny (shipped checkpoint size)": dict(
        config=dict(vocab_size=60, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                    encoder_width=64, num_query_tokens=8), batch=64, patches=64, text=22),
}


def peer_pair(config: dict, impl: str, device, dtype):
    """(reference QFormer, transformers Blip2QFormerModel, text embeddings) with identical random weights."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel
    from transformers.models.blip_2.modeling_blip_2 import Blip2TextEmbeddings

    ours = QFormer(QFormerConfig(**config, attn_implementation=impl, max_position_embeddings=64)).eval()
    hf_config = Blip2QFormerConfig(
        vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
        num_hidden_layers=config["num_hidden_layers"], num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"], max_position_embeddings=64, cross_attention_frequency=2,
        encoder_hidden_size=config["encoder_width"], use_qformer_text_input=True, attn_implementation=impl)
    hf, emb = Blip2QFormerModel(hf_config).eval(), Blip2TextEmbeddings(hf_config).eval()
    state = export_to_hf(ours.state_dict(), qformer_prefix="", embeddings_prefix="emb.")
    hf.load_state_dict({k: v for k, v in state.items() if k.startswith(("layernorm", "encoder"))}, strict=True)
    emb.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("emb.")})
    return ours.to(device, dtype), hf.to(device, dtype), emb.to(device, dtype)


@torch.no_grad()
def forward_rows(ctx: RunContext, repeats: int) -> tuple[list[list], dict]:
    device, cuda = ctx.device, ctx.device.type == "cuda"
    settings = [("cpu fp32", "sdpa", torch.float32), ("cpu fp32", "eager", torch.float32)] if not cuda else [
        ("gpu bf16", "sdpa", torch.bfloat16), ("gpu fp32", "sdpa", torch.float32)]
    sizes = {k: v for k, v in SIZES.items() if not (ctx.quick and k.startswith("paper"))}
    rows, metrics = [], {}
    for size_name, size in sizes.items():
        paper = size_name.startswith("paper")
        for setting, impl, dtype in settings[:1] if paper else settings:  # CPU budget: paper size, default only
            torch.manual_seed(ctx.seed)
            ours, hf, emb = peer_pair(size["config"], impl, device, dtype)
            B, Q = size["batch"], size["config"]["num_query_tokens"]
            gen = torch.Generator().manual_seed(ctx.seed)
            image = torch.randn(B, size["patches"], size["config"]["encoder_width"], generator=gen).to(device, dtype)
            ids = torch.randint(1, size["config"]["vocab_size"], (B, size["text"]), generator=gen).to(device)
            mask = torch.ones(B, Q + size["text"], dtype=torch.long, device=device)
            queries = ours.query_tokens.expand(B, -1, -1)
            passes = {
                "query pass": (lambda: ours(image_embeds=image).last_hidden_state,
                               lambda: hf(query_embeds=queries, encoder_hidden_states=image).last_hidden_state),
                "ITM pass": (lambda: ours(input_ids=ids, attention_mask=mask, image_embeds=image).last_hidden_state,
                             lambda: hf(query_embeds=emb(input_ids=ids, query_embeds=queries), query_length=Q,
                                        attention_mask=mask, encoder_hidden_states=image).last_hidden_state),
            }
            for pass_name, (ref_fn, hf_fn) in passes.items():
                t = compare({"reference": ref_fn, "transformers": hf_fn}, repeats=repeats, device=device)
                diff = (t.results["reference"].float() - t.results["transformers"].float()).abs().max().item()
                ratio = t.ratio("transformers", "reference")
                ref_ms, hf_ms = (1000 * t.summary(m)["wall_median_s"] for m in ("reference", "transformers"))
                key = f"{size_name.split(' ')[0]}/{setting}/{impl}/{pass_name}"
                metrics[key] = {"reference_ms": ref_ms, "transformers_ms": hf_ms, "speedup": ratio.record(),
                                "max_abs_diff": diff, "batch": B, "timing": t.record()}
                rows.append([size_name, pass_name, f"{setting}, {impl}", B, ref_ms, hf_ms, ratio.text(),
                             t.load_text(), f"{diff:.1e}"])
        if not cuda:
            rows.append([size_name, "query / ITM pass", "gpu bf16, sdpa", None, None, None, None, None, GPU_NOTE])
    return rows, metrics


@torch.no_grad()
def itg_rows(ctx: RunContext, repeats: int) -> tuple[list[list], dict]:
    """Decoder pass with cached query KVs vs joint recompute (given the query pass that ITC needs anyway),
    and generation with vs without the cache, on the shipped tiny model and generated val images."""
    from bench.benchmarks.captioning import load_for_benchmark
    from reference.blip2.captioner import generate

    model, tokenizer, meta, split, _, _ = load_for_benchmark(ctx, 16 if ctx.quick else 64)
    device = ctx.device
    feats = split.features.to(device)
    texts = [split.captions[i][0] for i in split.image_ids]
    ids, mask = tokenizer.encode(texts, meta["train_config"]["max_text_len"])
    ids, mask = ids.to(device), mask.to(device)
    ids[:, 0] = tokenizer.dec_id
    B, Q = ids.shape[0], model.config.qformer.num_query_tokens
    full = torch.cat([mask.new_ones(B, Q), mask], dim=1)
    cache = model.query_pass(feats, use_cache=True).past_key_values
    cached = lambda: model.decode(ids, full, cache)  # noqa: E731
    joint = lambda: model.lm_head(model.qformer(input_ids=ids, attention_mask=full, image_embeds=feats,  # noqa: E731
                                                causal=True).last_hidden_state[:, Q:])
    t = compare({"cached": cached, "recompute": joint}, repeats=repeats, device=device)
    diff = (t.results["cached"] - t.results["recompute"]).abs().max().item()
    gen_cached = lambda: generate(model, feats, num_beams=1, max_length=20, min_length=20)  # noqa: E731
    gen_recompute = lambda: generate(model, feats, num_beams=1, max_length=20, min_length=20,  # noqa: E731
                                     use_cache=False)
    g = compare({"cached": gen_cached, "recompute": gen_recompute}, repeats=max(2, repeats // 2), device=device)
    same = torch.equal(g.results["cached"], g.results["recompute"])
    rows, metrics = [], {}
    for key, work, timing, check in (
            ("itg_pass", f"ITG decoder pass, batch {B} x {ids.shape[1]} tokens (after the ITC query pass)", t,
             f"max abs diff {diff:.1e}"),
            ("generation", f"greedy generation, {B} images x 20 tokens", g,
             "identical tokens" if same else "TOKENS DIFFER")):
        ratio = timing.ratio("recompute", "cached")
        cached_ms, recompute_ms = (1000 * timing.summary(m)["wall_median_s"] for m in ("cached", "recompute"))
        rows.append([work, cached_ms, recompute_ms, ratio.text(), timing.load_text(), check])
        metrics[key] = {"cached_ms": cached_ms, "recompute_ms": recompute_ms, "speedup": ratio.record(),
                        "timing": timing.record()}
    metrics["itg_pass"]["max_abs_diff"] = diff
    metrics["generation"]["identical_tokens"] = same
    return rows, metrics


def headline(ratio) -> str:
    """A ratio for running text: its value when steady, else a pointer to the table (never a shaky headline)."""
    return ratio.text() if ratio.steady else f"not steady in this run ({ratio.text()}; see the table)"


FORWARD_HEADERS = ["size", "pass", "device, attention", "batch", "reference ms", "transformers ms",
                   "speed-up (median, range of rounds)", "load 1 min, start -> end", "max abs diff"]
FORWARD_KINDS = ["text", "text", "text", "count", "ms", "ms", "text", "text", "text"]
RERANK_HEADERS = ["direction", "k", "queries", "pairs", "images projected (reference)", "public loop pairs / s",
                  "reference pairs / s", "speed-up, wall", "speed-up, CPU time", "FLOP ratio",
                  "load 1 min, start -> end", "same rankings, max abs score diff"]
RERANK_KINDS = ["text", "count", "text", "count", "count", "rate", "rate", "text", "text", "ratio", "text", "text"]
TRAIN_HEADERS = ["step", "recompute ms", "reuse ms", "speed-up, wall", "speed-up, CPU time",
                 "FLOPs saved (share of the recompute step)", "FLOP ratio, step", "FLOP ratio, forward only",
                 "load 1 min, start -> end", "max abs loss diff", "max abs grad diff"]
TRAIN_KINDS = ["text", "ms", "ms", "text", "text", "percent", "ratio", "ratio", "text", "diff", "diff"]


def rerank_section(ctx: RunContext, device_name: str) -> tuple[Section, dict, bool]:
    rows, m = rerank_rows(ctx, ctx.quick)
    if ctx.device.type != "cuda":
        rows.append(["both", None, GPU_NOTE] + [None] * 9)
    share = m["kv_share_of_pair"]
    worst = max(v["max_abs_diff"] for k, v in m.items() if k.startswith(("i2t", "t2i")))
    ok = worst <= 1e-4 and all(v["same_rankings"] for k, v in m.items() if k.startswith(("i2t", "t2i")))
    big = m.get("i2t_k128")
    lead = (f"At k = 128 (one image's top-128 texts) the reference scores {big['reference_pairs_per_s']:.3g} "
            f"pairs / s against {big['public_pairs_per_s']:.3g} for the public loop: "
            f"{headline(Ratio(big['speedup_wall']['per_round']))} in wall time, FLOP ratio "
            f"{big['flop_ratio']:.3g}x. " if big else "")
    text = (f"{'Tiny' if ctx.quick else 'Paper'} size ({'the shipped tiny config' if ctx.quick else 'BERT-base, 32 queries, 257 x 1408 image tokens'}, "
            f"random weights, texts of up to {'22' if ctx.quick else '32'} tokens), **{device_name}**. The public "
            "loop re-implements LAVIS compute_sim_matrix: for each image its top-k texts scored beside the image "
            "repeated k times, for each text its top-k images beside the text repeated k times, one full ITM pass "
            "per pair. The reference (reference/blip2/retrieval.py: `rerank_scores` with `SharedImageITM`, "
            "batches of up to 128 pairs sorted by image) projects each image's cross-attention keys/values once: "
            "an image's candidate texts are scored in one pass over its shared keys/values; for text -> image the "
            "gallery images of a batch are projected together in one call (inside the timed call) and their "
            "keys/values gathered per pair. Same pairs on both sides. Measured FLOPs (FlopCounterMode): the image K/V projections are {100 * share:.1f}% of a "
            f"pair's FLOPs, so reuse alone is worth at most {1 / (1 - share):.3g}x as k grows; the FLOP ratio column "
            "is each row's public / reference FLOPs. " + lead +
            "CPU time is the process's; on a loaded machine it also counts threads spinning at barriers. The "
            "CPU budget keeps the galleries small (k = 128 on one image, text -> image on four texts).")
    return Section("Retrieval re-ranking: image keys/values once, not once per pair", text,
                   tables=[Table(RERANK_HEADERS, rows, kinds=RERANK_KINDS)]), m, ok


def training_section(ctx: RunContext, device_name: str) -> tuple[Section, dict, bool]:
    rows, m = training_rows(ctx, ctx.quick)
    if ctx.device.type != "cuda":
        rows.append([f"{'paper' if not ctx.quick else 'tiny'} size, gpu bf16", None, None, GPU_NOTE] + [None] * 7)
    text = ("One BLIP-2 stage-1 training step (ITC + ITM + ITG losses, forward and backward, dropout on, "
            f"{'tiny' if ctx.quick else 'paper'} size, random weights and features), **{device_name}**. The recompute "
            "is the public code's step: the ITM pass on B positive and 2B hard-negative pairs re-projects the "
            "image features to cross-attention keys/values although the ITC query pass already did; the reuse "
            "step (`Blip2Stage1.forward(reuse_image_kv=True)`, the default) projects each image once and gathers "
            "the ITM rows from it. Both sides: same seeds, same negatives. "
            f"Speed-up {headline(Ratio(m['speedup_wall']['per_round']))} (wall) with "
            f"{100 * m['saved_flop_share']:.1f}% of the step's FLOPs removed (FLOP ratio {m['flop_ratio']:.3g}x, the "
            f"bound for reuse alone; {m['forward_flop_ratio']:.3g}x for the forward pass: the images are frozen "
            "features, so the backward of their projections forms only the weight gradient while every other "
            "layer also propagates an input gradient); "
            f"losses equal to {m['max_loss_diff']:.1e}, gradients to {m['max_grad_diff']:.1e}. Three rounds after "
            "the FLOP-counting warm-up of each side.")
    ok = m["max_loss_diff"] <= 1e-5 and m["max_grad_diff"] <= 1e-5
    return Section("Stage-1 training step: image keys/values reused by ITM", text,
                   tables=[Table(TRAIN_HEADERS, rows, kinds=TRAIN_KINDS)]), m, ok


@register_benchmark("perf-qformer", description="Q-Former: reference vs transformers; ITG query-KV reuse; image K/V "
                    "reuse in re-ranking and training", report="performance", order=1, report_title="Performance")
def run(ctx: RunContext) -> BenchmarkResult:
    repeats = 2 if ctx.quick else 5
    device_name = describe_device(ctx.device)
    sections, metrics, ok = [], {"device": device_name}, True
    try:
        import transformers
        rows, fwd = forward_rows(ctx, repeats)
        metrics["forward"] = fwd
        metrics["transformers"] = transformers.__version__
        ok = all(m["max_abs_diff"] <= (1e-5 if "/eager/" in k else 1e-3) for k, m in fwd.items()
                 if "fp32" in k)
        sections.append(Section(
            heading="Q-Former forward: reference vs transformers",
            text=(f"Same config, same random weights (copied with reference/blip2/convert.py), same inputs, "
                  f"measured side by side in this run on **{device_name}** with bench.timing.compare: {repeats} "
                  "rounds, the two sides interleaved with alternating order after a warm-up; the speed-up is the "
                  "median of the per-round ratios with their range, flagged UNSTEADY when the rounds spread by more "
                  "than 25%. Both sides issue the same torch linear and attention calls on the same shapes, so a "
                  "ratio near 1 is expected. "
                  f"Speed-up = transformers time / reference time (> 1: the reference is faster). transformers "
                  f"{transformers.__version__} `Blip2QFormerModel`; its text embeddings run outside it "
                  "(`Blip2TextEmbeddings`) and are included in its ITM time, as the reference embeds inside."),
            tables=[Table(FORWARD_HEADERS, rows, kinds=FORWARD_KINDS)]))
    except ImportError:
        sections.append(Section(heading="Q-Former forward: reference vs transformers",
                                text="not measured: transformers is not installed (`pip install .[test]`)."))
    try:
        rows, itg = itg_rows(ctx, repeats)
        metrics["itg"] = itg
        ok = ok and itg["generation"]["identical_tokens"]
        sections.append(Section(
            heading="ITG: reused query keys/values vs recompute",
            text=("The tiny shipped checkpoint on generated validation images. The decoder pass reuses the "
                  "queries' keys/values from the unimodal query pass (which ITC needs anyway); the recompute "
                  "runs queries (with their cross-attention) and text jointly under the decoder mask. Generation "
                  "with the cache feeds one token per step; without it every step recomputes everything "
                  f"(the public code's silent behaviour, LAVIS #154). Device: **{device_name}**; timed as above."),
            tables=[Table(["work", "reused KVs ms", "recompute ms", "speed-up (median, range of rounds)",
                           "load 1 min, start -> end", "check"], rows,
                          kinds=["text", "ms", "ms", "text", "text", "text"])]))
    except FileNotFoundError as err:
        sections.append(Section(heading="ITG: reused query keys/values vs recompute", text=f"not measured: {err}"))
    for make, key in ((rerank_section, "rerank"), (training_section, "training_step")):
        section, part, part_ok = make(ctx, device_name)
        sections.append(section)
        metrics[key] = part
        ok = ok and part_ok
    return BenchmarkResult(benchmark="perf-qformer", report="performance", title="Q-Former speed",
                           metrics=metrics, config={"repeats": repeats, "sizes": SIZES, "quick": ctx.quick},
                           seeds={"seed": ctx.seed}, sections=sections, ok=ok)
