"""The `multitask` benchmark (reports/multitask.md) and the `vsbench train-multitask` command.

Scores the shipped Pix2SeqV2 checkpoints (bench/checkpoints/pix2seqv2_tiny*.safetensors) on the
generated validation split: detection AP (COCOeval bbox), mask AP (segm), keypoint AP (keypoints,
with the generated dataset's per-keypoint sigmas) and coco-caption's caption table (BLEU-1..4, METEOR,
ROUGE-L, CIDEr-D, SPICE through pycocoevalcap: bench/metrics/captions.py), for the
multi-task model and for the single-task baselines. Segmentation and keypoints are scored twice: with
ground-truth box prompts (the task alone) and with the model's own detections as prompts (end to end).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.figures import multitask_samples
from bench.metrics.captions import METRICS, caption_metrics, metric_cell
from bench.progress import progress
from bench.registry import RunContext, register_benchmark, register_command
from bench.results import BenchmarkResult, Figure, Section, Table
from bench.samples import run_samples
from bench.storage import file_sha256, to_jsonable
from bench.training.multitask import configure_cli, load_split, run_cli
from reference.pix2seq.model import prepare_images
from reference.pix2seqv2.captioning import split_words
from reference.pix2seqv2.inference import InferenceOptions, caption, detect, detected_instances, keypoint, segment
from reference.pix2seqv2.model import load_v2_checkpoint

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
MULTI = "pix2seqv2_tiny"
SINGLE = {t: f"pix2seqv2_tiny_{t}" for t in ("detection", "segmentation", "keypoint", "captioning")}


@register_command("train-multitask", help="train the Pix2SeqV2 multi-task model (or a single-task baseline)",
                  configure=configure_cli)
def train_multitask_command(args) -> int:
    return run_cli(args)


def _gt_instances(data, index) -> list[tuple[int, np.ndarray, int, float]]:
    return [(b, t["boxes"][k].astype(np.float64), int(t["labels"][k]), 1.0)
            for b, i in enumerate(index) for t in [data.targets[i]] for k in range(len(t["labels"]))]


@torch.no_grad()
def image_outputs(model, words, data, device, tasks, rows: list[int], prompt_dets=None) -> list[dict]:
    """Outputs of `model` for the images at `rows` of the split, one dict per image, for `tasks` (subset of
    detection, segmentation, keypoint, captioning). Instance tasks run twice: prompted by ground-truth
    boxes ("<task>_gt") and by detections ("<task>_det": the model's own, or `prompt_dets` (one per row)
    when it has no detection task). Instance records carry "image": the row in the split."""
    opts = InferenceOptions(num_keypoints=model.cfg.num_keypoints)
    sizes = [(data.targets[i]["width"], data.targets[i]["height"]) for i in rows]
    feats = model.encode(prepare_images(data.images[rows], model.cfg.image_size, device=device))
    per_image: list[dict] = [{} for _ in rows]
    dets = detect(model, feats, sizes, opts) if "detection" in tasks else prompt_dets
    if "detection" in tasks:
        for b, det in enumerate(dets):
            per_image[b]["detection"] = det
    for task, fn in (("segmentation", segment), ("keypoint", keypoint)):
        if task not in tasks:
            continue
        for kind, inst in (("gt", _gt_instances(data, rows)),
                           ("det", detected_instances(dets, opts) if dets is not None else None)):
            if inst is None:
                continue
            for b in range(len(rows)):
                per_image[b].setdefault(f"{task}_{kind}", [])
            for r in fn(model, feats, sizes, inst, opts):
                per_image[r["image"]][f"{task}_{kind}"].append({**r, "image": rows[r["image"]]})
    if "captioning" in tasks:
        for b, text in enumerate(caption(model, feats, words, opts)):
            per_image[b]["captioning"] = text
    return per_image


def _from_json(record: dict) -> dict:
    """Inverse of to_jsonable for what scoring and prompting read: detection arrays back to numpy."""
    record = dict(record)
    if "detection" in record:
        d = record["detection"]
        record["detection"] = {**d, "boxes": np.asarray(d["boxes"], np.float64).reshape(-1, 4),
                               "labels": np.asarray(d["labels"], np.int64),
                               "scores": np.asarray(d["scores"], np.float64)}
    return record


def run_model(ctx: RunContext, name: str, tasks, data, fingerprint: str, limit=None, prompts: dict | None = None,
              batch_images: int = 32) -> dict:
    """Outputs of checkpoint `name` on the split through the per-sample cache (export
    reports/samples/multitask-<name>.jsonl), regrouped by task: {"detection": [per image], "<task>_<kind>":
    [instances], "captioning": [str], "num_images", "meta", "sha256"}. `prompts` (the detector's run_model
    result) prompts the instance tasks of a model without detection."""
    model, words, meta = _checkpoint(name, ctx.device)
    model.to(ctx.device).eval()
    n = len(data) if limit is None else min(limit, len(data))
    image_ids = [data.targets[i]["image_id"] for i in range(n)]
    row_of = {image_id: row for row, image_id in enumerate(image_ids)}

    def compute(batch_ids: list) -> dict:
        rows = [row_of[i] for i in batch_ids]
        dets = [prompts["detection"][r] for r in rows] if prompts else None
        return {i: to_jsonable(o) for i, o in zip(batch_ids, image_outputs(model, words, data, ctx.device, tasks, rows, dets))}

    config = {"tasks": sorted(tasks), "model": model.cfg.to_dict(), "opts": repr(InferenceOptions(
        num_keypoints=model.cfg.num_keypoints)), "prompt_checkpoint": prompts["sha256"] if prompts else None}
    path = CHECKPOINTS / f"{name}.safetensors"
    outputs = run_samples(ctx, f"multitask-{name}", image_ids, compute, config=config, checkpoint=path,
                          dataset_fingerprint=fingerprint, batch_size=batch_images, sharded=False)
    out: dict = {"num_images": n, "meta": meta, "sha256": file_sha256(path)}
    for image_id in image_ids:
        for key, value in _from_json(outputs[image_id]).items():
            if key in ("detection", "captioning"):
                out.setdefault(key, []).append(value)
            else:
                out.setdefault(key, []).extend(value)
    return out


def score(out: dict, data, dataset, sigmas, strict: bool = False) -> dict[str, dict]:
    """COCO / caption metrics of run_model's outputs -> {"detection": stats, "segmentation_gt": stats, ...,
    "captioning": {metric: value or None, "not_available": {metric: reason}, "tokenizer": ...}};
    strict: suspicious COCO input raises (vsbench run --strict)."""
    from bench.metrics.coco import evaluate_detections

    n = out["num_images"]
    ids = [data.targets[i]["image_id"] for i in range(n)]
    keep = set(ids)
    gt = {**dataset.gt, "images": [im for im in dataset.gt["images"] if im["id"] in keep],
          "annotations": [a for a in dataset.gt["annotations"] if a["image_id"] in keep]}
    cat = dataset.label_to_category_id
    metrics = {}
    if "detection" in out:
        res = [{"image_id": ids[b], "category_id": cat[int(lab)], "score": float(s),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]}
               for b, d in enumerate(out["detection"]) for (x0, y0, x1, y1), lab, s in zip(d["boxes"], d["labels"], d["scores"])]
        metrics["detection"] = evaluate_detections(gt, res, iou_type="bbox", strict=strict).stats
    for key in [k for k in out if k.startswith(("segmentation_", "keypoint_"))]:
        if key.startswith("segmentation"):
            res = [{"image_id": ids[r["image"]], "category_id": cat[r["label"]], "score": r["score"],
                    "segmentation": r["rle"]} for r in out[key]]
            metrics[key] = evaluate_detections(gt, res, iou_type="segm", strict=strict).stats
        else:
            res = [{"image_id": ids[r["image"]], "category_id": cat[r["label"]], "score": r["score"],
                    "keypoints": np.asarray(r["keypoints"], np.float64).reshape(-1).tolist()} for r in out[key]]
            metrics[key] = evaluate_detections(gt, res, iou_type="keypoints", kpt_oks_sigmas=sigmas, strict=strict).stats
    if "captioning" in out:
        refs = {ids[b]: [" ".join(split_words(c)) for c in data.captions[b]] for b in range(n)}
        table = caption_metrics(refs, {ids[b]: c for b, c in enumerate(out["captioning"])})
        metrics["captioning"] = {k: v for k, v in table.items() if k not in ("per_image", "seconds")}
    return metrics


def codec_outputs(vocab, data, max_points: int, limit: int | None = None, codec: bool = True) -> dict:
    """Ground truth in run_model's output format: through the task codecs (encode -> decode: the ceiling
    that quantisation and polygon thinning leave to a perfect model), or exactly as annotated (codec False)."""
    from reference.pix2seqv2 import decode_keypoints, decode_segmentation, encode_keypoints, encode_segmentation
    from reference.pix2seqv2.segmentation import polygons_to_rle

    n = len(data) if limit is None else min(limit, len(data))
    out = {"num_images": n, "detection": [], "segmentation_gt": [], "keypoint_gt": []}
    for b in progress(range(n), desc=f"multitask: codec ceiling ({max_points} points)", unit="image"):
        t = data.targets[b]
        w, h = t["width"], t["height"]
        boxes = t["boxes"].astype(np.float64)
        if codec:
            from reference.pix2seqv2 import decode_detection, encode_detection
            boxes = decode_detection(vocab, encode_detection(vocab, boxes, t["labels"], w, h), w, h)["boxes"]
        out["detection"].append({"boxes": boxes, "labels": t["labels"], "scores": np.ones(len(boxes))})
        for k in range(len(t["labels"])):
            box, lab = t["boxes"][k], int(t["labels"][k])
            polys = [p.reshape(-1).astype(np.float64) for p in t["polygons"][k]]
            kps = t["keypoints"][k].astype(np.float64)
            if codec:
                polys = decode_segmentation(vocab, encode_segmentation(vocab, box, lab, polys, w, h, None, max_points),
                                            w, h)["polygons"]
                kps = decode_keypoints(vocab, encode_keypoints(vocab, box, lab, kps, w, h), w, h, len(kps))["keypoints"]
            out["segmentation_gt"].append({"image": b, "label": lab, "score": 1.0, "rle": polygons_to_rle(polys, w, h)})
            out["keypoint_gt"].append({"image": b, "label": lab, "score": 1.0, "keypoints": kps})
    return out


ROWS = [  # (label, metrics key, stat)
    ("detection AP", "detection", "AP"), ("detection AP50", "detection", "AP50"),
    ("mask AP, GT box prompts", "segmentation_gt", "AP"), ("mask AP50, GT box prompts", "segmentation_gt", "AP50"),
    ("mask AP, detected box prompts", "segmentation_det", "AP"),
    ("keypoint AP, GT box prompts", "keypoint_gt", "AP"), ("keypoint AP50, GT box prompts", "keypoint_gt", "AP50"),
    ("keypoint AP, detected box prompts", "keypoint_det", "AP"),
    *((f"caption {m}", "captioning", m) for m in METRICS),
]


def cell(metrics: dict, key: str, stat: str):
    """A table cell: the stat, None (n/a) when that model has no such task, or "n/a (reason)" for a caption
    metric that could not run (no Java, no CoreNLP models)."""
    if key not in metrics:
        return None
    return metric_cell(metrics[key], stat) if key == "captioning" else metrics[key].get(stat)


# The strict sigmas KEYPOINT_SIGMAS replaced (COCO's eyes for the extreme points), reported beside them.
EYE_LEVEL_SIGMAS = (0.05, 0.025, 0.025, 0.025, 0.025)


def keypoint_ap(out: dict, data, dataset, sigmas) -> float | None:
    """Keypoint AP (GT box prompts) of run_model's or codec_outputs' `out` under other OKS sigmas."""
    return score({"num_images": out["num_images"], "keypoint_gt": out["keypoint_gt"]}, data, dataset,
                 sigmas)["keypoint_gt"]["AP"]


def _checkpoint(name: str, device):
    path = CHECKPOINTS / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: shipped checkpoint missing; recreate it with the command in "
                                f"bench/checkpoints/{name}.json (vsbench train-multitask ...)")
    return load_v2_checkpoint(path, map_location=device)


@register_benchmark("multitask", description="Pix2SeqV2 multi-task vs single-task: det AP, mask AP, keypoint AP, "
                    "caption metrics",
                    report="multitask", report_title="Pix2SeqV2 multi-task: detection, segmentation, keypoints, captioning")
def run(ctx: RunContext) -> BenchmarkResult:
    from bench.datasets import KEYPOINT_NAMES, KEYPOINT_SIGMAS, default_dataset

    torch.manual_seed(ctx.seed)
    paths = default_dataset()
    dataset, data = load_split(paths, "val")
    limit = 24 if ctx.quick else ctx.limit
    multi_out = run_model(ctx, MULTI, SINGLE.keys(), data, paths.fingerprint, limit)
    multi = score(multi_out, data, dataset, KEYPOINT_SIGMAS, ctx.strict)
    det_out = run_model(ctx, SINGLE["detection"], ["detection"], data, paths.fingerprint, limit)
    single = score(det_out, data, dataset, KEYPOINT_SIGMAS, ctx.strict)
    metas = {MULTI: multi_out["meta"], SINGLE["detection"]: det_out["meta"]}
    single_outs = {}
    for task in ("segmentation", "keypoint", "captioning"):
        single_outs[task] = out = run_model(ctx, SINGLE[task], [task], data, paths.fingerprint, limit, prompts=det_out)
        single.update(score(out, data, dataset, KEYPOINT_SIGMAS, ctx.strict))
        metas[SINGLE[task]] = out["meta"]
    model = _checkpoint(MULTI, "cpu")[0]
    coded = codec_outputs(model.vocab, data, model.cfg.max_points, limit)
    ceiling = score(coded, data, dataset, KEYPOINT_SIGMAS, ctx.strict)
    ceiling["segmentation_det"], ceiling["keypoint_det"] = ceiling["segmentation_gt"], ceiling["keypoint_gt"]
    unthinned = score(codec_outputs(model.vocab, data, 128, limit), data, dataset, KEYPOINT_SIGMAS,
                      ctx.strict)["segmentation_gt"]
    rows = [[label, *(cell(m, key, stat) for m in (ceiling, single, multi))] for label, key, stat in ROWS]
    eye_level = {"codec_ceiling": keypoint_ap(coded, data, dataset, EYE_LEVEL_SIGMAS),
                 "single_task": keypoint_ap(single_outs["keypoint"], data, dataset, EYE_LEVEL_SIGMAS),
                 "multi_task": keypoint_ap(multi_out, data, dataset, EYE_LEVEL_SIGMAS)}
    rows.insert(next(i for i, r in enumerate(rows) if r[0] == "keypoint AP, detected box prompts"),
                ["keypoint AP, GT box prompts, eye-level sigmas", *eye_level.values()])
    fig = multitask_samples(ctx.figures_dir / "multitask_samples.png", data, multi_out, dataset.class_names,
                            KEYPOINT_NAMES)
    train_rows = [[name, m.get("train_config", {}).get("weights"), m.get("steps"), m.get("train_seconds"),
                   m.get("device"), m.get("command")] for name, m in metas.items()]
    stale = sorted(name for name, m in metas.items() if m.get("dataset_fingerprint") != paths.fingerprint)
    stale_note = (f" Warning: {', '.join(stale)} were trained on another version of the generated dataset "
                  f"(fingerprint differs from {paths.fingerprint}): retrain with the recorded commands."
                  if stale else f" Every checkpoint was trained on this dataset (fingerprint {paths.fingerprint}).")
    n = multi_out["num_images"]
    sections = [
        Section("Per-task metrics", text=(
            f"Generated validation split, {n} images (128 x 128 px). Single-task models are the same tiny "
            "network trained on one task only, for the number of sequences of that task that the multi-task "
            "model saw (so they are trained for a fraction of its steps: see Training). End-to-end rows prompt "
            "segmentation and keypoints with the same model's detections (single-task: the single-task "
            "detector's boxes); GT rows prompt with the ground-truth boxes (score 1). "
            f"Measured: multi-task detection AP {multi['detection']['AP']:.4f} vs single-task "
            f"{single['detection']['AP']:.4f}; mask AP (GT prompts) {multi['segmentation_gt']['AP']:.4f} vs "
            f"{single['segmentation_gt']['AP']:.4f}; keypoint AP (GT prompts) {multi['keypoint_gt']['AP']:.4f} vs "
            f"{single['keypoint_gt']['AP']:.4f}; BLEU-4 {multi['captioning']['BLEU-4']:.4f} vs "
            f"{single['captioning']['BLEU-4']:.4f}." + (
                " With the short CPU training recorded below the coordinate tasks are not learnt (detection AP "
                "below 0.05): the model emits well-formed token rows whose boxes and points do not follow the "
                "image, while captions follow the grammar; compare with the codec ceiling, what a perfect model "
                "would score." if (multi["detection"]["AP"] or 0.0) < 0.05 else "")),
            tables=[Table(["metric", "codec ceiling", "single-task", "multi-task"], rows, note=(
                "codec ceiling: the ground truth encoded and decoded by the task codecs (bins, polygon "
                "thinning to the model's max_points), scored as a prediction: the most a perfect model "
                f"can reach with this vocabulary. Without thinning (128 points) the mask ceiling is "
                f"{unthinned['AP']:.4f} instead of {ceiling['segmentation_gt']['AP']:.4f}; the rest of the gap "
                f"to 1 is quantisation (a coordinate moves to its nearest bin, up to half a bin: half a pixel at "
                f"128 bins on 128 px). Keypoint rows use the dataset's OKS sigmas (see Training); the "
                f"eye-level row scores the same keypoints with {', '.join(map(str, EYE_LEVEL_SIGMAS))} (COCO's "
                "eyes for the extreme points), where a 2-px miss on a small shape already fails. Caption rows: "
                "coco-caption's metrics computed by pycocoevalcap (bench/metrics/captions.py), tokenisation "
                f"{multi['captioning']['tokenizer']}, references lower-cased without punctuation."))]),
        Section("Full COCO statistics of the multi-task model", tables=[
            Table(["stat", *[k for k in multi if k != "captioning"]],
                  [[s, *[multi[k].get(s) for k in multi if k != "captioning"]] for s in
                   dict.fromkeys(s for k in multi if k != "captioning" for s in multi[k])])]),
        Section("Training", text=(
            "All models train on CPU on the generated train split (2000 images), seed 0, "
            + init_note(metas) + " Keypoint OKS sigmas of the generated keypoints "
            f"({', '.join(KEYPOINT_NAMES)}): {', '.join(map(str, KEYPOINT_SIGMAS))}, COCO's body-joint level "
            "(hips 0.107 for the centre, the area centroid that nothing marks in the image; knees 0.087 for the "
            "extreme vertices, where 'top' flips between two corners on a near-horizontal edge)."
            + stale_note),
            tables=[Table(["checkpoint", "task weights", "steps", "train seconds", "device", "command"], train_rows,
                          note="Each step: 16 images (one encoder pass each), 2 task rows per image.")]),
        Section("Sample outputs of the multi-task model", figures=[Figure(f"figures/{fig.name}", (
            "Validation images: detections (boxes, class, score); masks from detected-box prompts; keypoints "
            "from detected-box prompts (marker and colour per keypoint: legend on top); the generated caption "
            "above the first reference caption."))]),
    ]
    return BenchmarkResult(benchmark="multitask", report="multitask", title="Pix2SeqV2 multi-task vs single-task",
                           metrics={"multi_task": multi, "single_task": single, "codec_ceiling": ceiling, "num_images": n,
                                    "keypoint_ap_eye_level_sigmas": eye_level},
                           config={"checkpoints": sorted(metas), "dataset_fingerprint": paths.fingerprint,
                                   "keypoint_sigmas": list(KEYPOINT_SIGMAS),
                                   "eye_level_sigmas": list(EYE_LEVEL_SIGMAS), "quick": ctx.quick},
                           seeds={"seed": ctx.seed}, sections=sections)


def init_note(metas: dict) -> str:
    """How the checkpoints were initialised, from their metadata."""
    inits = {name: m.get("init_from_detector") for name, m in metas.items()}
    if not any(inits.values()):
        return "from scratch (no pretrained weights)."
    first = next(i for i in inits.values() if i)
    ap50 = (first.get("detector_val_metrics") or {}).get("AP50")
    same = all(i and i.get("sha256") == first.get("sha256") for i in inits.values())
    return (("each" if same else "some") + " starting from the shipped Pix2Seq tiny detector "
            f"(`{Path(first['path']).name}`" + (f", val AP50 {ap50:.3f}" if ap50 is not None else "") + "), as "
            "Pix2SeqV2 starts from a detection-pretrained model: encoder and decoder weights copied, token rows "
            "copied by meaning (coordinate bins by position, classes, BOS/EOS/PAD, each task token from BOS); "
            "word, separator and invisible rows fresh." + ("" if same else
                                                        f" Not initialised this way: {sorted(k for k, v in inits.items() if not v)}."))
