"""The `albef` benchmark (reports/albef_blip.md) and the `vsbench train-albef` command.

Reads the three shipped ALBEF checkpoints (bench/checkpoints/albef_{base,queue0,alpha0}.safetensors: the same tiny
model, steps and seed; base = queue 1024 and alpha 0.4, then queue 0, then alpha 0) and evaluates each on the
generated validation split in this run: Recall@1/5 both directions for ITC alone and ITM + ITC on the ITC top-k
(the public code's re-ranking), the ITM loss on 1 positive : 2 negatives against the label prior's, and the MLM
accuracy. Training-time numbers come from the sidecars and are labelled so. No training here.
"""

from __future__ import annotations

import time

import torch

from bench.registry import RunContext, register_benchmark, register_command
from bench.results import BenchmarkResult, Section, Table
from bench.training.albef import ALBEF_CHECKPOINTS, K_TEST, configure_cli, evaluate_albef, load_albef, run_cli

VARIANTS = {"base": "queue N, alpha 0.4 (base)", "queue0": "queue 0 (in-batch negatives only)",
            "alpha0": "alpha 0 (no momentum distillation)"}
TITLE = "ALBEF, BLIP and BLIP-2 stage 2"


@register_command("train-albef", help="train the tiny ALBEF (ITC with queue + distillation, ITM, MLM) on the "
                                      "generated captions", configure=configure_cli)
def train_albef_command(args) -> int:
    return run_cli(args)


def missing_result(benchmark: str, title: str, missing: list, seed: int) -> BenchmarkResult:
    """The failed result of a benchmark whose shipped checkpoints are not there."""
    return BenchmarkResult(benchmark=benchmark, report="albef_blip", title=title, metrics={}, config={},
                           seeds={"seed": seed}, ok=False, problems=[f"missing {p}" for p in missing],
                           sections=[Section("Missing checkpoint", ", ".join(map(str, missing)))])


def mean_r1(m: dict, prefix: str) -> float:
    return (m[f"{prefix}_i2t_R@1"] + m[f"{prefix}_t2i_R@1"]) / 2


def sidecar_gap(live: dict, meta: dict) -> float:
    """Largest |live - sidecar| over the validation metrics both have (0 when the run reproduces the sidecar)."""
    saved = meta["metrics_at_save"]
    gaps = [abs(v - saved[f"val_{k}"]) for k, v in live.items() if isinstance(saved.get(f"val_{k}"), (int, float))]
    return max(gaps) if gaps else float("nan")


def compare(results: dict, a: str, b: str, what: str) -> str:
    """One sentence: the mean R@1 (ITC, ITM + ITC) of variant a vs b, as measured."""
    ra, rb = results[a]["metrics"], results[b]["metrics"]
    itc_a, itc_b, rr_a, rr_b = mean_r1(ra, "itc"), mean_r1(rb, "itc"), mean_r1(ra, "itm_itc"), mean_r1(rb, "itm_itc")
    word = lambda x, y: "raises" if x > y else ("lowers" if x < y else "leaves unchanged")  # noqa: E731
    return (f"{what} {word(itc_a, itc_b)} the mean ITC R@1 of the two directions ({itc_b:.2f} -> {itc_a:.2f}) and "
            f"{word(rr_a, rr_b)} the re-ranked one ({rr_b:.2f} -> {rr_a:.2f}).")


@register_benchmark("albef", description="ALBEF ablations (queue 0 vs N, alpha 0 vs 0.4): retrieval R@1/5, ITM vs "
                                         "the label prior, MLM accuracy (shipped checkpoints, generated val)",
                    report="albef_blip", order=0, report_title=TITLE)
def run(ctx: RunContext) -> BenchmarkResult:
    from bench.datasets.synthetic import default_dataset
    from bench.storage import file_sha256
    from bench.training.qformer import load_split

    title = "ALBEF: momentum queue and distillation ablations"
    missing = [p for p in ALBEF_CHECKPOINTS.values() if not p.is_file()]
    if missing:
        return missing_result("albef", title, missing, ctx.seed)
    torch.manual_seed(ctx.seed)
    limit = 40 if ctx.quick else ctx.limit
    paths = default_dataset()
    results, split = {}, None
    for name, path in ALBEF_CHECKPOINTS.items():
        model, encoder, tokenizer, meta = load_albef(path)
        split = split or load_split(paths, "val", encoder, limit=limit)
        start = time.perf_counter()
        live = ctx.run_stage(f"evaluate {name}", evaluate_albef, model, split, tokenizer,
                             meta["train_config"]["max_text_len"])
        if live is None:
            continue
        results[name] = {"metrics": live, "seconds": time.perf_counter() - start, "meta": meta,
                         "sha256": file_sha256(path), "gap": sidecar_gap(live, meta) if limit is None else None}
    retrieval, heads, training = [], [], []
    for name, r in results.items():
        m, cfg, saved = r["metrics"], r["meta"]["train_config"], r["meta"]["metrics_at_save"]
        retrieval.append([VARIANTS[name], cfg["queue_size"], cfg["alpha"],
                          *(m[f"{s}_{d}_R@{k}"] for s in ("itc", "itm_itc") for d in ("i2t", "t2i") for k in (1, 5))])
        heads.append([VARIANTS[name], m["itm_loss_1pos_2hard"], m["itm_loss_1pos_2random"], m["prior_loss"],
                      m["auc_positive_vs_hard"], m["auc_positive_vs_random"], 100 * m["mlm_accuracy"], m["mlm_loss"],
                      r["seconds"], r["gap"]])
        training.append([VARIANTS[name], r["meta"]["steps_done"], r["meta"]["train_seconds"], saved["train_itc_last100"],
                         saved["train_itm_last100"], 100 * saved["train_mlm_accuracy_last100"],
                         f"`{r['meta']['command']}`"])
    base_cfg = results["base"]["meta"]["train_config"] if "base" in results else {}
    found = [compare(results, "base", other, what) for other, what in
             (("queue0", f"The queue of {base_cfg.get('queue_size')} momentum keys (vs 0)"),
              ("alpha0", "Distillation (alpha 0.4 vs 0)")) if {"base", other} <= results.keys()]
    n_images = len(split.image_ids) if split is not None else 0
    text = (f"Three tiny ALBEF models (hidden {base_cfg.get('hidden_size')}, {base_cfg.get('num_text_layers')} text + "
            f"{base_cfg.get('num_fusion_layers')} fusion layers, {base_cfg.get('image_depth')} trainable ViT block on "
            "the frozen patch features of reference/blip2/image_encoder.py) trained from scratch with the same steps, "
            "seed and recipe, differing only in the queue size or alpha (commands below). Evaluated in this run on "
            f"the {n_images} generated validation images against all their captions (5 each): an image is found when "
            "any of its captions is in its top K, a caption when its image is. ITM + ITC re-scores each query's ITC "
            f"top-{K_TEST} by ITM logit + ITC similarity, as the public code does. " + " ".join(found))
    head_text = ("ITM cross-entropy on 1 positive : 2 negatives of the validation split (the training ratio), the "
                 "negatives drawn from the ITC similarities (hard, as in training) or uniformly (random); always "
                 "predicting the 1-in-3 prior scores the prior loss, so a head below it has learnt something. AUC: "
                 "P(a positive's match margin > a negative's). MLM: 15% of the validation captions' words masked "
                 "(80/10/10, fixed seed), accuracy of the argmax at those positions, the image given. sidecar gap: the "
                 "largest difference between this run's validation metrics and those recorded at save time.")
    return BenchmarkResult(
        benchmark="albef", report="albef_blip", title=title,
        metrics={name: {**r["metrics"], "eval_seconds": r["seconds"], "sidecar_gap": r["gap"]}
                 for name, r in results.items()} | {"num_images": n_images, "dataset_fingerprint": paths.fingerprint},
        config={"checkpoints": {n: p.name for n, p in ALBEF_CHECKPOINTS.items()}, "k_test": K_TEST, "limit": limit,
                "sha256": {n: r["sha256"] for n, r in results.items()}},
        seeds={"seed": ctx.seed, **{f"{n}_train_seed": r["meta"]["seed"] for n, r in results.items()}},
        sections=[
            Section(heading="ALBEF ablations: retrieval", text=text, tables=[
                Table(headers=["variant", "queue", "alpha", "ITC i2t R@1", "ITC i2t R@5", "ITC t2i R@1", "ITC t2i R@5",
                               "ITM+ITC i2t R@1", "ITM+ITC i2t R@5", "ITM+ITC t2i R@1", "ITM+ITC t2i R@5"],
                      rows=retrieval, kinds=["text", "count", "metric", *["percent"] * 8], floatfmt=".1f",
                      title=f"Generated validation split, {n_images} images x 5 captions (evaluated in this run)")]),
            Section(heading="ALBEF ablations: ITM against the label prior, MLM", text=head_text, tables=[
                Table(headers=["variant", "ITM loss 1:2 hard", "ITM loss 1:2 random", "prior loss", "AUC hard",
                               "AUC random", "MLM accuracy", "MLM loss", "eval seconds", "sidecar gap"],
                      rows=heads, kinds=["text", "metric", "metric", "metric", "metric", "metric", "percent", "metric",
                                         "seconds", "diff"], floatfmt=".3f", title="Evaluated in this run"),
                Table(headers=["variant", "steps", "train seconds", "train ITC (last 100)", "train ITM (last 100)",
                               "train MLM accuracy (last 100)", "command"], rows=training,
                      kinds=["text", "count", "seconds", "metric", "metric", "percent", "text"], floatfmt=".3f",
                      title="Training time (from the checkpoints' sidecars, measured during training)",
                      note="train ITC includes the distillation targets' entropy and the queue's negatives, so it is "
                           "not comparable across variants; the validation tables are.")])])
