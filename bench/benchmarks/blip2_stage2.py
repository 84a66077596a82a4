"""The `blip2-stage2` benchmark (reports/albef_blip.md) and the `vsbench train-stage2` command.

Reads the shipped checkpoints (bench/checkpoints/blip2_stage2_lm.safetensors: the tiny GPT-2 pre-trained on
the captions; blip2_stage2_qformer.safetensors: the stage-2 Q-Former + projection; qformer_tiny.safetensors:
stage 1) and captions the generated validation split three ways: the stage-1 ITG head, stage 2 (visual
prompts into the frozen LM), and the LM alone without prompts (the floor). BLEU-1..4 / CIDEr-D as the
captioning benchmark. Then checks that the LM is frozen: the shipped LM's digest equals the one recorded
before and after stage-2 training, and a few live stage-2 steps here change the Q-Former and not one LM bit.
"""

from __future__ import annotations

import copy
import time

import torch

from bench.registry import RunContext, register_benchmark, register_command
from bench.results import BenchmarkResult, Section, Table
from bench.training.stage2 import configure_cli, run_cli

DECODING = {"beam": dict(num_beams=3, max_length=21, min_length=3), "greedy": dict(num_beams=1, max_length=21,
                                                                                   min_length=3)}


@register_command("train-stage2", help="BLIP-2 stage 2: pre-train the tiny LM (`lm`), then the Q-Former in front "
                                       "of it, frozen (`qformer`)", configure=configure_cli)
def train_stage2_command(args) -> int:
    return run_cli(args)


def _captions(generate, split, tokenizer, batch: int = 50) -> dict[int, str]:
    out = {}
    for s in range(0, len(split.image_ids), batch):
        tokens = generate(split.features[s:s + batch])
        out.update({i: tokenizer.decode(row) for i, row in zip(split.image_ids[s:s + batch], tokens.tolist())})
    return out


def live_frozen_check(model, split, tokenizer, steps: int = 3, batch: int = 16) -> dict:
    """A few stage-2 optimiser steps on a copy: LM digest unchanged, no LM gradient, Q-Former changed."""
    from bench.training.loop import adamw, run_steps
    from reference.blip2.stage2 import tensor_digest

    work = copy.deepcopy(model)
    lm_before, q_before = tensor_digest(work.lm), tensor_digest(work.qformer)
    grads = []
    ids, mask = tokenizer.encode([split.captions[i][0] for i in split.image_ids[:batch]], 22)

    def step_loss(step: int):
        return work(split.features[:batch], ids, mask)

    def after(step: int):
        grads.append(sum(p.grad is not None for p in work.lm.parameters()))

    run_steps(work, adamw(work, 1e-3, 0.05), step_loss, 0, steps, lambda s: 1e-3, after_step=after, quiet=True)
    return {"steps": steps, "lm_unchanged": tensor_digest(work.lm) == lm_before,
            "qformer_changed": tensor_digest(work.qformer) != q_before, "lm_params_with_grad": max(grads)}


@register_benchmark("blip2-stage2", description="BLIP-2 stage 2 (frozen tiny LM) vs stage-1 ITG captions, "
                                                "prompt / no-prompt, frozen-LM check", report="albef_blip", order=2,
                    report_title="ALBEF, BLIP and BLIP-2 stage 2")
def run(ctx: RunContext) -> BenchmarkResult:
    from bench.benchmarks.captioning import normalised_references
    from bench.datasets.synthetic import default_dataset
    from bench.metrics.captions import caption_metrics
    from bench.storage import file_sha256
    from bench.training.qformer import load_checkpoint, load_split, shipped_checkpoint
    from bench.training.stage2 import LM_CHECKPOINT, STAGE2_CHECKPOINT, load_stage2
    from reference.blip2 import captioner
    from reference.blip2.stage2 import tensor_digest

    title = "BLIP-2 stage 2: visual prompts into a frozen tiny LM"
    missing = [p for p in (LM_CHECKPOINT, STAGE2_CHECKPOINT, shipped_checkpoint()) if not p.is_file()]
    if missing:
        return BenchmarkResult(benchmark="blip2-stage2", report="albef_blip", title=title, metrics={}, config={},
                               seeds={"seed": ctx.seed}, ok=False, problems=[f"missing {p}" for p in missing],
                               sections=[Section("Missing checkpoint", ", ".join(map(str, missing)))])
    torch.manual_seed(ctx.seed)
    limit = 40 if ctx.quick else ctx.limit
    paths = default_dataset()
    stage2, encoder2, tokenizer, meta2 = load_stage2(STAGE2_CHECKPOINT, LM_CHECKPOINT)
    stage1, encoder1, tokenizer1, meta1 = load_checkpoint(shipped_checkpoint())
    split = load_split(paths, "val", encoder2, limit=limit)
    split1 = split if tensor_digest(encoder1) == tensor_digest(encoder2) else load_split(paths, "val", encoder1,
                                                                                          limit=limit)
    refs = normalised_references(split)
    variants = {}  # name -> {decoding: captions}
    seconds = {}
    for decoding, opts in DECODING.items():
        start = time.perf_counter()
        variants.setdefault("stage 1 ITG head", {})[decoding] = _captions(
            lambda f: captioner.generate(stage1, f, **opts), split1, tokenizer1)
        seconds[("stage 1 ITG head", decoding)] = time.perf_counter() - start
        start = time.perf_counter()
        variants.setdefault("stage 2 (prompts -> frozen LM)", {})[decoding] = _captions(
            lambda f: stage2.generate(f, **opts), split, tokenizer)
        seconds[("stage 2 (prompts -> frozen LM)", decoding)] = time.perf_counter() - start
        start = time.perf_counter()
        alone = tokenizer.decode(stage2.generate(None, **opts)[0].tolist())  # no prompt: one caption for all
        variants.setdefault("LM alone, no prompt (floor)", {})[decoding] = {i: alone for i in split.image_ids}
        seconds[("LM alone, no prompt (floor)", decoding)] = time.perf_counter() - start
    rows, metrics = [], {}
    for name, by_decoding in variants.items():
        for decoding, hyps in by_decoding.items():
            table = caption_metrics(refs, hyps, tokenizer="whitespace", meteor=False, spice=False)
            bleu, cider = {f"BLEU-{n}": table[f"BLEU-{n}"] for n in range(1, 5)}, table["CIDEr-D"]
            metrics[f"{name} / {decoding}"] = {**bleu, "CIDEr-D": cider, "distinct_captions": len(set(hyps.values()))}
            rows.append([name, decoding, *(bleu[f"BLEU-{n}"] for n in range(1, 5)), cider,
                         len(set(hyps.values())), seconds[(name, decoding)]])
    shipped_lm = tensor_digest(stage2.lm)
    recorded = meta2["lm"]
    live = live_frozen_check(stage2, split, tokenizer)
    frozen_rows = [
        ["shipped LM digest = digest before stage 2 (sidecar)", shipped_lm == recorded["digest_before"]],
        ["digest before = digest after stage-2 training (sidecar)", recorded["digest_before"] == recorded["digest_after"]],
        ["shipped LM file sha256 = the one stage 2 used", file_sha256(LM_CHECKPOINT) == recorded["sha256"]],
        [f"{live['steps']} live stage-2 steps: LM bit-identical", live["lm_unchanged"]],
        [f"{live['steps']} live stage-2 steps: LM parameters given a gradient (0 expected)", live["lm_params_with_grad"]],
        [f"{live['steps']} live stage-2 steps: the Q-Former changed", live["qformer_changed"]],
    ]
    problems = [r[0] for r in frozen_rows if r[1] is False] + (
        ["the frozen LM received gradients"] if live["lm_params_with_grad"] else [])
    frozen_rows = [[what, ("yes" if v else "NO") if isinstance(v, bool) else v] for what, v in frozen_rows]
    samples = [[i, variants["stage 2 (prompts -> frozen LM)"]["beam"][i], variants["stage 1 ITG head"]["beam"][i],
                refs[i][0]] for i in split.image_ids[:6]]
    train = meta2["train_config"]
    text = (f"The {len(split.image_ids)} images of the generated validation split, captioned by: the stage-1 ITG head "
            f"of `bench/checkpoints/qformer_tiny.safetensors` (`{meta1['command']}`); BLIP-2 stage 2, i.e. the "
            f"Q-Former's {stage2.num_query_tokens} query outputs through one linear projection as soft prompts "
            f"before the text embeddings of a tiny GPT-2 (`{recorded['command']}`, {meta2['frozen_parameters']} "
            f"parameters, pre-trained on the training captions' text as documents of 1 to 3 captions of one "
            "image, so that it reads what comes before a caption, then frozen; stage 2 trained only the "
            f"{meta2['trainable_parameters']} Q-Former and projection parameters for {train['steps']} steps, "
            f"{meta2['train_seconds']} s: `{meta2['command']}`); and the same LM without prompts, which can only "
            "write one caption for every image: the floor. Same decoding for all (3 beams or greedy, at most 21 "
            "tokens, end allowed from the 3rd), BLEU as coco-caption's corpus BLEU, CIDEr-D as pycocoevalcap "
            "through bench/metrics/captions.py on the normalised words). distinct: how many different captions the variant wrote.")
    return BenchmarkResult(
        benchmark="blip2-stage2", report="albef_blip", title=title,
        metrics={"captioning": metrics, "frozen_lm": {**live, "shipped_digest": shipped_lm, **recorded},
                 "num_images": len(split.image_ids), "dataset_fingerprint": paths.fingerprint},
        config={"decoding": DECODING, "limit": limit, "stage2_checkpoint": STAGE2_CHECKPOINT.name,
                "lm_checkpoint": LM_CHECKPOINT.name, "stage1_checkpoint": shipped_checkpoint().name},
        seeds={"seed": ctx.seed, "stage2_train_seed": meta2["seed"]}, ok=not problems, problems=problems,
        sections=[
            Section(heading="Stage 2 vs stage 1 captions, and the no-prompt floor", text=text, tables=[
                Table(headers=["captioner", "decoding", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr-D", "distinct",
                               "seconds"], rows=rows,
                      kinds=["text", "text", "metric", "metric", "metric", "metric", "metric", "count", "seconds"],
                      title=f"Generated validation split, {len(split.image_ids)} images x 5 references"),
                Table(headers=["image id", "stage 2 (beam 3)", "stage 1 ITG (beam 3)", "a reference"], rows=samples,
                      kinds=["count", "text", "text", "text"], title="Sample captions")]),
            Section(heading="The LM stays frozen", text=(
                "Digests are sha256 over every LM tensor's bytes (reference/blip2/stage2.py tensor_digest): equal "
                "digests mean bit-identical weights. The live check copies the stage-2 model, runs a few AdamW "
                "steps of the stage-2 loss on validation images through the shared training loop and compares."),
                tables=[Table(headers=["check", "result"], rows=frozen_rows, kinds=["text", "text"])])])
