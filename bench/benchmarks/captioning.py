"""The `captioning` benchmark (reports/captioning.md): coco-caption's table (BLEU-1..4, METEOR, ROUGE-L,
CIDEr-D, SPICE through pycocoevalcap: bench/metrics/captions.py) of the shipped tiny BLIP-2 Q-Former
captioner on the generated validation split, beam search and greedy, with sample captions beside their
references. Also registers `vsbench train-qformer`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

from bench.metrics.captions import METRICS, caption_metrics, metric_cell
from bench.progress import progress
from bench.registry import RunContext, register_benchmark, register_command
from bench.results import BenchmarkResult, Section, Table
from bench.samples import run_samples
from bench.storage import stable_hash
from bench.training.loop import add_default_options
from bench.training.qformer import CHECKPOINT, CaptionSplit, TrainConfig, load_checkpoint, load_split, train
from reference.blip2.captioner import generate
from reference.blip2.tokenizer import normalize

DECODING = {"beam": dict(num_beams=3, max_length=21, min_length=3), "greedy": dict(num_beams=1, max_length=21,
                                                                                   min_length=3)}


def caption_split(model, split: CaptionSplit, tokenizer, device, num_beams: int, max_length: int, min_length: int,
                  batch: int = 50, ctx: RunContext | None = None, name: str = "captioning",
                  counts: dict | None = None) -> dict[int, str] | None:
    """Generated caption (normalised words) per image id. With a run context the captions go through the
    per-sample cache (resumable, torchrun-sharded) and are exported to reports/samples/<name>.jsonl;
    returns None on ranks other than 0."""
    row_of = {image_id: row for row, image_id in enumerate(split.image_ids)}

    def compute(ids: list) -> dict:
        feats = split.features[[row_of[i] for i in ids]].to(device)
        tokens = generate(model, feats, num_beams=num_beams, max_length=max_length, min_length=min_length)
        return {i: tokenizer.decode(row) for i, row in zip(ids, tokens.tolist())}

    if ctx is None:
        out = {}
        for start in progress(range(0, len(split.image_ids), batch), desc=f"{name}: generate", unit="batch"):
            out.update(compute(split.image_ids[start:start + batch]))
        return out
    config = {"num_beams": num_beams, "max_length": max_length, "min_length": min_length}
    return run_samples(ctx, name, list(split.image_ids), compute, config=config, checkpoint=CHECKPOINT,
                       dataset_fingerprint=split_fingerprint(split), batch_size=batch, counts=counts)


def split_fingerprint(split: CaptionSplit) -> str:
    """Fingerprint of what the captioner reads: the bytes of the dataset files as stored and the image ids
    (not the float32 features, which differ in their last bits between machines; the frozen encoder that
    makes them is in the checkpoint, whose hash is also in the cache key)."""
    if not split.dataset_fingerprint:
        raise ValueError("split_fingerprint: the split carries no dataset fingerprint (read it with load_split)")
    return stable_hash({"ids": list(split.image_ids), "dataset": split.dataset_fingerprint})


def normalised_references(split: CaptionSplit) -> dict[int, list[str]]:
    """References as coco-caption scores them: lower case, punctuation removed, whitespace tokens."""
    return {i: [" ".join(normalize(c)) for c in caps] for i, caps in split.captions.items()}


def load_for_benchmark(ctx: RunContext, limit: int | None):
    from bench.datasets.synthetic import default_dataset

    model, encoder, tokenizer, meta = load_checkpoint(CHECKPOINT if CHECKPOINT.is_file() else None, ctx.device)
    paths = default_dataset()
    split = load_split(paths, "val", encoder.cpu(), limit=limit)
    note = "" if paths.fingerprint == meta["dataset_fingerprint"] else (
        f" (trained on dataset {meta['dataset_fingerprint']}, evaluated on {paths.fingerprint})")
    return model, tokenizer, meta, split, paths, note


STAGES = ("tokenize", "METEOR start-up", "METEOR", "BLEU", "ROUGE-L", "CIDEr-D", "SPICE")  # metric stage times


@register_benchmark("captioning", description="coco-caption table (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE) of the "
                    "tiny Q-Former captioner (generated val)", report="captioning", order=0,
                    report_title="Captioning: tiny BLIP-2 Q-Former", distributed=True)
def run(ctx: RunContext) -> BenchmarkResult:
    torch.manual_seed(ctx.seed)
    limit = 40 if ctx.quick else ctx.limit
    model, tokenizer, meta, split, paths, note = load_for_benchmark(ctx, limit)
    refs = normalised_references(split)
    rows, stage_rows, metrics, tables, hyps_by = [], [], {}, {}, {}
    for name, options in progress(DECODING.items(), desc="captioning: generate and score", unit="decoding"):
        start = time.perf_counter()
        counts: dict = {}
        hyps = caption_split(model, split, tokenizer, ctx.device, **options, ctx=ctx, name=f"captioning-{name}",
                             counts=counts)
        if hyps is None:
            return None  # not rank 0: this rank's captions went to rank 0
        # a time only when every caption was generated in this run (cache hits would flatter it)
        seconds = time.perf_counter() - start if counts.get("cached", 0) == 0 else None
        hyps_by[name], tables[name] = hyps, caption_metrics(refs, hyps)
        table = tables[name]
        metrics[name] = {**{m: table[m] for m in METRICS}, "not_available": table["not_available"],
                         "tokenizer": table["tokenizer"], "metric_seconds": table["seconds"], "seconds": seconds,
                         **options}
        label = f"{name} ({options['num_beams']} beam{'s' if options['num_beams'] > 1 else ''})"
        rows.append([label, *(metric_cell(table, m) for m in METRICS), seconds])
        stage_rows.append([label, *(table["seconds"].get(stage) for stage in STAGES)])
    per_image = tables["beam"]["per_image"]
    samples = [[i, hyps_by["beam"][i], " / ".join(refs[i][:2]), per_image["BLEU-4"][i], per_image["CIDEr-D"][i]]
               for i in split.image_ids[:8]]
    return _result(ctx, meta, split, paths, note, refs, rows, stage_rows, metrics, samples, limit)


def _result(ctx, meta, split, paths, note, refs, rows, stage_rows, metrics, samples, limit) -> BenchmarkResult:
    train_cfg = meta["train_config"]
    beam = metrics["beam"]
    missing = "; ".join(f"{m}: {why}" for m, why in beam["not_available"].items()) or "none"
    text = (f"The shipped checkpoint `bench/checkpoints/{CHECKPOINT.name}` ({meta['train_seconds']} s of training, "
            f"reproduce with `{meta['command']}`) captions the {len(split.image_ids)} images of the generated "
            f"validation split{note}. Tiny Q-Former: {train_cfg['num_layers']} layers, hidden "
            f"{train_cfg['hidden_size']}, {train_cfg['num_query_tokens']} queries, cross-attention every "
            f"{train_cfg['cross_attention_freq']} layers; frozen image encoder = fixed-seed random patch projection "
            f"({train_cfg['encoder']['patch_size']} px patches, width {train_cfg['encoder']['width']}) + mean patch "
            "colour + fixed 2-D sinusoidal positions (reference/blip2/image_encoder.py), so everything learnt is in "
            "the Q-Former. Captions are generated from the ITG head with the query KV cache: 3 beams (and greedy), at "
            "most 21 tokens, [SEP] allowed from the 3rd (the public defaults, 30 / 10, suit COCO's longer captions; "
            "the generated captions have 4 to 20 words).\n\n"
            "Every metric is coco-caption's, computed by pycocoevalcap itself (bench/metrics/captions.py): corpus "
            "BLEU (clipped counts summed over the corpus, closest reference length, no smoothing; never a mean of "
            "per-image scores), METEOR 1.5 (Java), ROUGE-L, CIDEr-D (idf over these references), SPICE (Java and "
            "Stanford CoreNLP 3.6.0 models, read from the folder named by VSBENCH_CORENLP_DIR; never downloaded). "
            f"Tokenisation: {beam['tokenizer']}, on references lower-cased with punctuation removed. "
            f"Not available in this run: {missing}. Per-image BLEU-4 and CIDEr-D in the sample table are for "
            "reading only.")
    stage_note = ("Wall seconds of each metric stage. tokenize and METEOR run Java; METEOR start-up (part of the "
                  "first METEOR time) is its JVM start, its 62 MB paraphrase table and the first scoring: paid once "
                  "per process, the METEOR process is shared by every later call.")
    return BenchmarkResult(
        benchmark="captioning", report="captioning", title="Caption quality (coco-caption's table)",
        metrics={**metrics, "num_images": len(split.image_ids), "dataset_fingerprint": paths.fingerprint,
                 "checkpoint_metrics_at_save": meta["metrics_at_save"]},
        config={"decoding": DECODING, "checkpoint": CHECKPOINT.name, "train_config": train_cfg, "limit": limit},
        seeds={"seed": ctx.seed, "train_seed": meta["seed"]},
        sections=[Section(heading="Caption quality", text=text, tables=[
            Table(headers=["decoding", *METRICS, "generation seconds"], rows=rows,
                  kinds=["text", *["metric"] * len(METRICS), "seconds"],
                  title=f"Generated validation split, {len(split.image_ids)} images x "
                        f"{len(next(iter(refs.values())))} references",
                  note="generation seconds: n/a when captions were served from the per-sample cache "
                       "(runs/cache.sqlite); per-image captions are in samples/captioning-{beam,greedy}.jsonl"),
            Table(headers=["decoding", *STAGES], rows=stage_rows, kinds=["text", *["seconds"] * len(STAGES)],
                  title="Metric time", note=stage_note),
            Table(headers=["image id", "generated (beam 3)", "two of its references", "BLEU-4 (this image)",
                           "CIDEr-D (this image)"], rows=samples, title="Sample captions")])])


QFORMER_OPTIONS = (("steps", int, "optimisation steps"), ("batch_size", int, "images per step (one random caption each)"),
                   ("lr", float, "AdamW peak learning rate"), ("weight_decay", float, "AdamW weight decay"),
                   ("warmup", int, "linear learning-rate warm-up steps, then cosine decay to 0"),
                   ("seed", int, "seed of the init and the sampling"), ("threads", int, "torch CPU threads"),
                   ("itm_hard", float, "share of ITM negatives drawn from the ITC similarities (0: uniformly random)"),
                   ("itm_hard_warmup", int, "steps over which that share moves from --itm-hard-start to --itm-hard"),
                   ("itm_hard_start", float, "the share at step 0 when --itm-hard-warmup > 0"),
                   ("itm_weight", float, "weight of the ITM loss in the total (ITC and ITG keep 1)"),
                   ("init", str, "start from the model weights of this checkpoint (same configs); '' = random init"))


def _configure(parser: argparse.ArgumentParser) -> None:
    add_default_options(parser, TrainConfig(), QFORMER_OPTIONS)
    parser.add_argument("--out", type=Path, default=CHECKPOINT, help="weights path (.safetensors; .json beside it)")


@register_command("train-qformer", help="train the tiny BLIP-2 Q-Former (ITC/ITM/ITG) on the generated captions",
                  configure=_configure)
def train_command(args: argparse.Namespace) -> int:
    cfg = TrainConfig(**{name: getattr(args, name) for name, _, _ in QFORMER_OPTIONS})
    command = "vsbench " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))
    meta = train(cfg, out=args.out, command=command)
    print(f"saved {args.out} ({meta['train_seconds']} s): {meta['metrics_at_save']}")
    return 0
