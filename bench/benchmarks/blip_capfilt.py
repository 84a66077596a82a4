"""The `blip-capfilt` benchmark (reports/albef_blip.md) and the `vsbench train-blip` command.

Reads the shipped BLIP checkpoints and the CapFilt record (bench/checkpoints/blip_*.safetensors,
blip_capfilt_data.json, made by bench/training/blip.py) and reports:
- the injected noise and the filter's precision / recall on it: from the record (computed over every training
  caption when the cleaned set was made), and re-measured in this run with the shipped teacher on the captions of the
  first training images, with how many of this run's keep / remove decisions equal the record's;
- each student on the generated validation split, evaluated in this run: ITC Recall@1/5 both directions and the
  coco-caption table (bench/metrics/captions.py) of its beam-3 captions. The student trained from scratch on the
  noisy captions is the teacher itself (same model, captions, steps and seed).
Training-time numbers (steps, seconds, captions used, the ITM re-ranked recall at save) come from the sidecars and
are labelled so. No training here.
"""

from __future__ import annotations

import time

import torch

from bench.registry import RunContext, register_benchmark, register_command
from bench.results import BenchmarkResult, Section, Table
from bench.benchmarks.albef import TITLE, missing_result
from bench.training.blip import BLIP_CHECKPOINTS, CAPFILT_DATA, configure_cli, run_cli

STUDENTS = {"teacher": "from scratch, noisy captions (= the teacher)",
            "student_capfilt": "from scratch, CapFilt captions",
            "student_from_teacher": "from the teacher, CapFilt captions",
            "student_clean": "from scratch, clean captions (reference)"}
REQUIRED = ("teacher", "student_capfilt", "student_from_teacher")
FILTER_CHECK_IMAGES = 200  # training images whose captions the filter re-scores in this run
CAPTION_METRICS = ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


@register_command("train-blip", help="BLIP with CapFilt: train a model on clean / noisy / bootstrapped captions "
                                     "(`model`), or filter and caption with a teacher (`capfilt`)",
                  configure=configure_cli)
def train_blip_command(args) -> int:
    return run_cli(args)


def encode_images(paths, encoder, rows: range) -> tuple[list[int], torch.Tensor]:
    """(image ids, frozen patch features (n, P, W)) of the training images at these positions (id order)."""
    import numpy as np

    from bench.datasets.coco import CocoDetection

    data = CocoDetection(paths.images_dir("train"), paths.instances_json("train"))
    images, ids = [], []
    for index in rows:
        image, target = data[index]
        images.append(image)
        ids.append(int(target["image_id"]))
    return ids, encoder(torch.from_numpy(np.stack(images)))


@torch.no_grad()
def live_filter(teacher, tokenizer, meta: dict, record: dict, paths, encoder, images: int) -> dict:
    """The teacher's filter re-run on the captions of the first `images` web images: its precision / recall on
    the injected noise there, and how many keep / remove decisions equal the record's."""
    from bench.training.blip import filter_report, noise_args, noisy_captions
    from reference.blip import capfilt

    per_image, seed, clean = noise_args(record["noise"])
    ids, feats = encode_images(paths, encoder, range(clean, clean + images))
    noisy = noisy_captions(paths, per_image, seed, clean)
    row = {image_id: r for r, image_id in enumerate(ids)}
    picked = [n for n, c in enumerate(noisy) if c.image_id in row]
    text_ids, mask = tokenizer.encode([noisy[n].text for n in picked], meta["train_config"]["max_text_len"])
    prob = capfilt.match_scores(teacher, feats, text_ids, mask, torch.tensor([row[noisy[n].image_id] for n in picked]),
                                250)
    report = filter_report(prob, [noisy[n] for n in picked], record["threshold"])
    keep = capfilt.keep_mask(prob, record["threshold"]).tolist()
    same = sum(k == (record["keep_web"][n] == "1") for k, n in zip(keep, picked))
    return {**report, "agree_with_record": same, "checked": len(picked), "images": len(ids)}


def evaluate_student(model, split, tokenizer, max_text_len: int, meteor: bool) -> dict:
    from bench.training.albef import retrieval_metrics
    from bench.training.blip import captioning_metrics

    start = time.perf_counter()
    out = retrieval_metrics(model, split, tokenizer, max_text_len, rerank=False)
    captions = captioning_metrics(model, split, tokenizer, meteor=meteor)
    return {"retrieval": out, "captioning": captions["table"], "captions": captions["captions"],
            "seconds": time.perf_counter() - start}


def filter_rows(report: dict, where: str) -> list:
    return [where, report["captions"], report["injected"], report["removed"], report["tp"], report["fp"],
            report["fn"], report["precision"], report["recall"], report["f1"], report["auc_injected_vs_clean"]]


@register_benchmark("blip-capfilt", description="BLIP CapFilt on injected noisy captions: filter precision / recall, "
                                                "students from scratch (noisy vs cleaned) and from the teacher: R@1, "
                                                "BLEU-4 (shipped checkpoints, generated val)",
                    report="albef_blip", order=1, report_title=TITLE)
def run(ctx: RunContext) -> BenchmarkResult:
    from bench.datasets.synthetic import default_dataset
    from bench.metrics.captions import metric_cell
    from bench.storage import file_sha256, read_json
    from bench.training.blip import load_blip
    from bench.training.qformer import load_split

    title = "BLIP: CapFilt on injected noisy captions"
    missing = [BLIP_CHECKPOINTS[n] for n in REQUIRED if not BLIP_CHECKPOINTS[n].is_file()]
    missing += [] if CAPFILT_DATA.is_file() else [CAPFILT_DATA]
    if missing:
        return missing_result("blip-capfilt", title, missing, ctx.seed)
    torch.manual_seed(ctx.seed)
    limit = 40 if ctx.quick else ctx.limit
    paths = default_dataset()
    record = read_json(CAPFILT_DATA)
    names = [n for n in STUDENTS if BLIP_CHECKPOINTS[n].is_file()]
    results, split, meteor, live = {}, None, not ctx.quick, None
    for name in names:
        model, encoder, tokenizer, meta = load_blip(BLIP_CHECKPOINTS[name])
        split = split or load_split(paths, "val", encoder, limit=limit)
        if name == "teacher":
            live = ctx.run_stage("filter check", live_filter, model, tokenizer, meta, record, paths, encoder,
                                 8 if ctx.quick else FILTER_CHECK_IMAGES)
        evaluated = ctx.run_stage(f"evaluate {name}", evaluate_student, model, split, tokenizer,
                                  meta["train_config"]["max_text_len"], meteor)
        if evaluated is not None:
            results[name] = {**evaluated, "meta": meta, "sha256": file_sha256(BLIP_CHECKPOINTS[name])}
    rows, training = [], []
    for name, r in results.items():
        ret, table, meta = r["retrieval"], r["captioning"], r["meta"]
        rows.append([STUDENTS[name], ret["itc_i2t_R@1"], ret["itc_i2t_R@5"], ret["itc_t2i_R@1"], ret["itc_t2i_R@5"],
                     *(metric_cell(table, m) for m in CAPTION_METRICS), r["seconds"]])
        saved, used = meta["metrics_at_save"], meta["training_captions"]
        training.append([STUDENTS[name], used["captions"], used["captions_used"], meta["init_from"]["path"]
                         if meta.get("init_from") else "scratch", meta["steps_done"], meta["train_seconds"],
                         saved.get("val_itm_itc_i2t_R@1"), saved.get("val_itm_itc_t2i_R@1"),
                         saved.get("val_itm_loss_1pos_2random"), f"`{meta['command']}`"])
    web = record["metrics_at_save"]["filter_web"]
    synth = record["metrics_at_save"]["synthetic"]
    noise_cfg = record["noise"]
    filter_table = [filter_rows(web, "every web caption (record, when the cleaned set was made)")]
    if live is not None:
        filter_table.append(filter_rows(live, f"captions of the first {live['images']} web images (this run)"))
    text = (f"Noise: the first {noise_cfg['clean_images']} training images keep their 5 captions (the human-annotated "
            f"part, as COCO in BLIP); each of the other {noise_cfg['web_images']} (web) images has "
            f"{noise_cfg['per_image']} of its 5 captions replaced by a caption of another image chosen so that the "
            f"caption is false for it (reference/blip/noise.py; seed {noise_cfg['seed']}): {noise_cfg['injected']} of "
            f"the {noise_cfg['web_captions']} web captions ({100 * noise_cfg['injected'] / noise_cfg['web_captions']:.0f}"
            f"%), {100 * noise_cfg['injected'] / noise_cfg['captions']:.0f}% of all {noise_cfg['captions']}. The teacher "
            f"(`{record['teacher']['command']}`) is trained on all those captions; as the filter its ITM head removes a "
            f"web caption when P(match) < {record['threshold']} (its argmax), as captioner it writes one nucleus-sampled "
            f"caption per web image (top_p {record['top_p']}), filtered the same way "
            f"(`{record['command']}`). A removal is a detection: precision = injected among the removed, recall = "
            "removed among the injected; AUC = P(an injected caption's 1 - P(match) > a clean one's), "
            "threshold-free.")
    if live is not None:
        text += (f" In this run the shipped teacher re-scored the {live['checked']} captions of the first "
                 f"{live['images']} web images: {live['agree_with_record']} of its keep / remove decisions equal "
                 "the record's.")
    synth_text = (f"Synthetic captions (record): {synth.get('generated', 0)} written, {synth.get('kept', 0)} kept by "
                  f"the filter; {synth.get('identical_to_a_true_caption', 0)} of them are word for word one of the "
                  f"image's true captions ({synth.get('kept_identical_to_a_true_caption', 0)} of the kept). The "
                  f"cleaned set: {record['metrics_at_save']['cleaned_captions']} captions (kept web + kept synthetic).")
    student_text = ("The same tiny BLIP (same config, steps, seed and recipe as the teacher: commands below) trained "
                    "on the noisy captions from scratch (that run is the teacher itself), on the CapFilt captions from "
                    "scratch, and on the CapFilt captions starting from the teacher's weights (the seed's claim: a "
                    f"student should not inherit the teacher's weights; the student from the teacher has had the teacher's "
                    "steps plus its own, twice the optimisation of the others, so its lead mixes both effects). "
                    "Evaluated in this run on the "
                    f"{len(split.image_ids) if split else 0} generated validation images: ITC recall (every image "
                    "against every caption, in percent) and the coco-caption table of the 3-beam captions "
                    "(pycocoevalcap; METEOR needs Java, SPICE is not computed here).")
    return BenchmarkResult(
        benchmark="blip-capfilt", report="albef_blip", title=title,
        metrics={"filter_record": web, "filter_live": live, "synthetic": synth, "noise": noise_cfg,
                 "students": {n: {"retrieval": r["retrieval"], "captioning": {m: r["captioning"].get(m) for m in
                                                                              (*CAPTION_METRICS, "BLEU-2", "BLEU-3")},
                                  "seconds": r["seconds"]} for n, r in results.items()},
                 "num_images": len(split.image_ids) if split else 0, "dataset_fingerprint": paths.fingerprint},
        config={"checkpoints": {n: BLIP_CHECKPOINTS[n].name for n in names}, "capfilt": CAPFILT_DATA.name,
                "filter_check_images": FILTER_CHECK_IMAGES, "limit": limit,
                "sha256": {n: r["sha256"] for n, r in results.items()}},
        seeds={"seed": ctx.seed, **{f"{n}_train_seed": r["meta"]["seed"] for n, r in results.items()}},
        sections=[
            Section(heading="CapFilt: the filter against the injected noise", text=text + "\n\n" + synth_text, tables=[
                Table(headers=["captions scored", "captions", "injected", "removed", "removed injected (tp)",
                               "removed clean (fp)", "kept injected (fn)", "precision", "recall", "F1", "AUC"],
                      rows=filter_table, kinds=["text", *["count"] * 6, "metric", "metric", "metric", "metric"],
                      floatfmt=".3f")]),
            Section(heading="CapFilt: students", text=student_text, tables=[
                Table(headers=["student", "ITC i2t R@1", "ITC i2t R@5", "ITC t2i R@1", "ITC t2i R@5",
                               *CAPTION_METRICS, "eval seconds"], rows=rows,
                      kinds=["text", *["percent"] * 4, *["metric"] * len(CAPTION_METRICS), "seconds"], floatfmt=".3f",
                      title="Generated validation split (evaluated in this run)"),
                Table(headers=["student", "captions", "captions used", "initialised from", "steps", "train seconds",
                               "ITM+ITC i2t R@1 at save", "ITM+ITC t2i R@1 at save", "val ITM loss 1:2 random at save",
                               "command"], rows=training,
                      kinds=["text", "text", "count", "text", "count", "seconds", "percent", "percent", "metric",
                             "text"], floatfmt=".3f",
                      title="Training (from the checkpoints' sidecars, measured at save time)")])])
