"""BLIP on the generated dataset with CapFilt (`vsbench train-blip`, registered in bench/benchmarks/blip_capfilt.py):

    vsbench train-blip model --captions noisy --out bench/checkpoints/blip_teacher.safetensors
    vsbench train-blip capfilt --teacher bench/checkpoints/blip_teacher.safetensors \\
        --out bench/checkpoints/blip_capfilt_data.json
    vsbench train-blip model --captions capfilt --out bench/checkpoints/blip_student_capfilt.safetensors
    vsbench train-blip model --captions capfilt --init bench/checkpoints/blip_teacher.safetensors \\
        --out bench/checkpoints/blip_student_from_teacher.safetensors

`model` trains the tiny BLIP (reference/blip/model.py: ITC with queue and distillation, ITM, LM) on the shared loop
with ALBEF's recipe (bench/training/albef.py: batches, warm-ups, fp16 checkpoint without the momentum copy; the
decoder's tensors that ARE the encoder's are stored once and re-tied on load). Its training captions:
- clean: the dataset's five captions per image;
- noisy: the first `clean_images` training images keep their captions (the human-annotated part: BLIP's COCO);
  each of the other, web, images gets `noise_per_image` of its captions replaced by captions of other images that
  are false for it (reference/blip/noise.py), deterministic for `noise_seed`; which ones is recorded;
- capfilt: the bootstrapped set of a CapFilt record: the noisy web captions the filter kept, plus the kept
  synthetic captions.
`capfilt` runs the teacher's ITM head as the filter (keep iff P(match) >= threshold, 0.5 = its argmax) on every web
caption and on one nucleus-sampled synthetic caption per web image (top_p 0.9, the paper's captioner), and writes
the record: which captions were kept, the synthetic captions, and the filter's precision / recall on the injected
noise. A student trained from scratch on the noisy captions is the teacher itself (same model, data, steps, seed).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.storage import file_sha256, read_json, write_json
from bench.training.albef import (ContrastTrainConfig, add_config_options, at_save, base_meta, config_from_args,
                                  evaluate_shipped, extra_token_id, load_data, load_shipped, option, read_checkpoint,
                                  retrieval_metrics, run_training, save_checkpoint, shipped_state, text_config)
from bench.training.loop import command_line, seeded
from bench.training.qformer import CHECKPOINT_DIR, CaptionSplit, load_split
from reference.blip import capfilt, noise
from reference.blip.generate import beam_generate, generate
from reference.blip.model import Blip, BlipConfig
from reference.blip2.tokenizer import WordTokenizer, normalize

BLIP_CHECKPOINTS = {name: CHECKPOINT_DIR / f"blip_{name}.safetensors"
                    for name in ("teacher", "student_capfilt", "student_from_teacher", "student_clean")}
CAPFILT_DATA = CHECKPOINT_DIR / "blip_capfilt_data.json"
CAPTION_SOURCES = ("clean", "noisy", "capfilt")


@dataclass
class BlipTrainConfig(ContrastTrainConfig):
    num_layers: int = option(2, "text layers (each with cross-attention; the decoder shares all but self-attention)")
    queue_size: int = option(0, "momentum keys kept as extra ITC negatives (0 here: with ALBEF's queue of 256 the "
                                "teacher's ITC collapsed: temperature 0.009, R@1 at chance)")
    itm_hard: float = option(0.5, "share of ITM negatives drawn from the ITC similarities after the warm-up (the "
                                  "rest uniformly: the filter must also reject captions of random other images)")
    captions: str = option("noisy", "training captions: clean, noisy (injected wrong captions) or capfilt "
                                    "(the bootstrapped set of --capfilt)")
    noise_per_image: int = option(2, "noisy: captions of each training image (of 5) replaced by other images'")
    noise_seed: int = option(0, "noisy: seed of which captions are replaced and by what")
    clean_images: int = option(1000, "noisy: the first N training images (by id) keep their clean captions (the "
                                     "human-annotated part; CapFilt filters only the other, 'web' images)")
    capfilt: str = option("", f"capfilt: the CapFilt record ('' = bench/checkpoints/{CAPFILT_DATA.name})")
    init: str = option("", "start from this BLIP checkpoint's weights (same configs); '' = from scratch")


def build_blip(cfg: BlipTrainConfig, tokenizer: WordTokenizer) -> Blip:
    image, text = text_config(cfg, tokenizer, cfg.num_layers, 0)
    return Blip(BlipConfig(image=image, text=text, embed_dim=cfg.embed_dim, momentum=cfg.momentum,
                           queue_size=cfg.queue_size, alpha=cfg.alpha, pad_token_id=tokenizer.pad_id,
                           cls_token_id=tokenizer.cls_id, sep_token_id=tokenizer.sep_id, dec_token_id=tokenizer.dec_id,
                           enc_token_id=extra_token_id(tokenizer)))


def load_blip(path: Path):
    """(Blip in eval mode, frozen encoder, tokenizer, sidecar) from a `vsbench train-blip model` checkpoint."""
    return read_checkpoint(path, lambda meta: Blip(BlipConfig(**meta["model_config"])), "vsbench train-blip model")


# -- the training captions ----------------------------------------------------------------------------

def train_objects(paths) -> dict[int, list[tuple[str, str]]]:
    """(colour, shape) of every object of every training image, from the COCO instances file."""
    data = read_json(paths.instances_json("train"))
    names = {c["id"]: c["name"] for c in data["categories"]}
    out: dict[int, list[tuple[str, str]]] = {int(im["id"]): [] for im in data["images"]}
    for a in data["annotations"]:
        out[int(a["image_id"])].append((a["colour"], names[a["category_id"]]))
    return out


def noisy_captions(paths, per_image: int, seed: int, clean_images: int = 0) -> list[noise.NoisyCaption]:
    """The training captions, over the images in id order (the order load_split reads them in), with `per_image`
    wrong ones for every image after the first `clean_images` (the web images); the same arguments always give
    the same noise."""
    from bench.datasets.coco import read_captions

    captions = read_captions(paths.captions_json("train"))
    ids = sorted(captions)
    return noise.inject_noise({i: captions[i] for i in ids}, train_objects(paths), per_image, seed,
                              targets=ids[clean_images:])


def noise_args(noise_record: dict) -> tuple[int, int, int]:
    """(per_image, seed, clean_images) of a CapFilt record's "noise" entry."""
    return noise_record["per_image"], noise_record["seed"], noise_record.get("clean_images", 0)


def capfilt_path(value: str) -> Path:
    return Path(value) if value else CAPFILT_DATA


def training_captions(cfg: BlipTrainConfig, paths, split: CaptionSplit) -> tuple[dict[int, list[str]], dict]:
    """(captions per training image, what they are) for cfg.captions; split: the clean training split."""
    if cfg.captions == "clean":
        return split.captions, {"captions": "clean"}
    if cfg.captions == "noisy":
        noisy = noisy_captions(paths, cfg.noise_per_image, cfg.noise_seed, cfg.clean_images)
        return noise.as_captions(noisy), {"captions": "noisy", "injected": sum(c.injected for c in noisy),
                                          "total": len(noisy)}
    if cfg.captions == "capfilt":
        path = capfilt_path(cfg.capfilt)
        record = read_json(path)
        if record["dataset_fingerprint"] != paths.fingerprint:
            raise ValueError(f"{path}: made from dataset {record['dataset_fingerprint']}, this one is {paths.fingerprint}")
        noisy = noisy_captions(paths, *noise_args(record["noise"]))
        return bootstrapped(record, noisy), {"captions": "capfilt", "capfilt": path.name,
                                                    "capfilt_sha256": file_sha256(path)}
    raise ValueError(f"captions must be one of {CAPTION_SOURCES}, got {cfg.captions!r}")


def bootstrapped(record: dict, noisy: list[noise.NoisyCaption]) -> dict[int, list[str]]:
    """The CapFilt record's cleaned set: the kept noisy web captions (`noisy`: the captions the record's
    keep_web flags are for), then the kept synthetic ones."""
    if len(record["keep_web"]) != len(noisy):
        raise ValueError(f"the record has {len(record['keep_web'])} keep flags for {len(noisy)} captions")
    keep = [flag == "1" for flag in record["keep_web"]]
    out = noise.as_captions(noisy, keep)
    for image_id, text, kept in record["synthetic"]:
        if kept:
            out[int(image_id)].append(text)
    return out


# -- evaluation -----------------------------------------------------------------------------------------

@torch.no_grad()
def caption_images(model: Blip, split: CaptionSplit, tokenizer: WordTokenizer, num_beams: int = 3,
                   batch: int = 50) -> dict[int, str]:
    """Beam-search caption (normalised words) of every image of the split."""
    out = {}
    for s in range(0, len(split.image_ids), batch):
        tokens = beam_generate(model, split.features[s:s + batch], num_beams=num_beams)
        out.update({i: tokenizer.decode(row) for i, row in zip(split.image_ids[s:s + batch], tokens.tolist())})
    return out


def captioning_metrics(model: Blip, split: CaptionSplit, tokenizer: WordTokenizer, meteor: bool = False) -> dict:
    """coco-caption's table (bench/metrics/captions.py) of the beam-3 captions and the captions themselves."""
    from bench.metrics.captions import caption_metrics

    hyps = caption_images(model, split, tokenizer)
    refs = {i: [" ".join(normalize(c)) for c in split.captions[i]] for i in split.image_ids}
    return {"table": caption_metrics(refs, hyps, meteor=meteor, spice=False), "captions": hyps}


def evaluate_blip(model: Blip, split: CaptionSplit, tokenizer: WordTokenizer, max_text_len: int) -> dict:
    table = captioning_metrics(model, split, tokenizer)["table"]
    return {**retrieval_metrics(model, split, tokenizer, max_text_len),
            **{m: table[m] for m in ("BLEU-1", "BLEU-4", "CIDEr-D", "ROUGE-L")}}


# -- training -----------------------------------------------------------------------------------------------

def train_blip(cfg: BlipTrainConfig, out: Path = BLIP_CHECKPOINTS["teacher"], command: str = "", dataset=None,
               log_every: int = 100) -> dict[str, Any]:
    """Train on cfg.captions (from scratch or from cfg.init), evaluate the fp16 weights on the validation split,
    save; returns the sidecar."""
    paths, encoder, split, val, tokenizer = load_data(cfg, dataset)
    captions, source = training_captions(cfg, paths, split)
    train_split = CaptionSplit(split.image_ids, split.features, captions, split.dataset_fingerprint)
    seeded(cfg.seed)
    model = build_blip(cfg, tokenizer)
    init_from = None
    if cfg.init:
        start, _, start_tokenizer, start_meta = load_blip(Path(cfg.init))
        if start_tokenizer != tokenizer or asdict(start.config) != asdict(model.config):
            raise ValueError(f"init={cfg.init!r}: its vocabulary or model config differs from this run's")
        load_shipped(model, shipped_state(start))
        init_from = {"path": Path(cfg.init).name, "sha256": file_sha256(Path(cfg.init)), "command": start_meta["command"]}
    done = run_training(cfg, model, train_split, tokenizer, "train-blip", log_every)
    val_metrics, seconds = evaluate_shipped(model, evaluate_blip, val, tokenizer, cfg)
    meta = {**base_meta(cfg, model, tokenizer, paths, split, done, command or "vsbench train-blip model"),
            "training_captions": {**source, "captions_used": sum(len(c) for c in captions.values()),
                                  "images_with_captions": sum(bool(c) for c in captions.values())},
            "init_from": init_from, "eval_seconds": round(seconds, 1), "metrics_at_save": at_save(done, val_metrics)}
    save_checkpoint(out, model, encoder, meta)
    return meta


# -- CapFilt ----------------------------------------------------------------------------------------------

def auc(pos, neg) -> float | None:
    """P(a positive's score > a negative's), ties half; None without both."""
    from bench.training.itm_ablation import auc as roc_auc

    return roc_auc(torch.as_tensor(pos, dtype=torch.float32), torch.as_tensor(neg, dtype=torch.float32)) \
        if len(pos) and len(neg) else None


def filter_report(match_prob: torch.Tensor, noisy: list[noise.NoisyCaption], threshold: float) -> dict:
    """Precision / recall of the filter's removals on the injected noise, and the ROC AUC of 1 - P(match)
    for injected vs clean captions (threshold-free)."""
    keep = capfilt.keep_mask(match_prob, threshold)
    injected = [c.injected for c in noisy]
    report = noise.filter_precision_recall((~keep).tolist(), injected)
    prob = match_prob.tolist()
    report["auc_injected_vs_clean"] = auc([1 - p for p, i in zip(prob, injected) if i],
                                          [1 - p for p, i in zip(prob, injected) if not i])
    report["threshold"] = threshold
    return report


@torch.no_grad()
def run_capfilt(teacher: Path, out: Path = CAPFILT_DATA, threshold: float = 0.5, top_p: float = 0.9, seed: int = 0,
                synthetic: bool = True, command: str = "", dataset=None, threads: int = 1) -> dict[str, Any]:
    """Filter the web images' noisy captions (and one synthetic caption per web image) with the teacher's ITM head;
    the clean images' captions are kept as they are (BLIP filters only the web data). Writes the record."""
    from bench.datasets.synthetic import default_dataset

    torch.set_num_threads(threads)
    begin = time.perf_counter()
    paths = dataset or default_dataset()
    model, encoder, tokenizer, meta = load_blip(teacher)
    tcfg = meta["train_config"]
    if tcfg["captions"] != "noisy":
        raise ValueError(f"{teacher}: trained on {tcfg['captions']!r} captions; CapFilt's teacher learns on the noisy ones")
    split = load_split(paths, "train", encoder)
    clean_ids = set(split.image_ids[:tcfg["clean_images"]])
    noisy = noisy_captions(paths, tcfg["noise_per_image"], tcfg["noise_seed"], tcfg["clean_images"])
    web = [n for n, c in enumerate(noisy) if c.image_id not in clean_ids]
    row = {image_id: r for r, image_id in enumerate(split.image_ids)}
    ids, mask = tokenizer.encode([noisy[n].text for n in web], tcfg["max_text_len"])
    prob = capfilt.match_scores(model, split.features, ids, mask, torch.tensor([row[noisy[n].image_id] for n in web]),
                                250)
    report = filter_report(prob, [noisy[n] for n in web], threshold)
    keep = [True] * len(noisy)
    for n, k in zip(web, capfilt.keep_mask(prob, threshold).tolist()):
        keep[n] = bool(k)
    synthetic_rows, synth_report = [], {}
    if synthetic:
        web_rows = [r for r, i in enumerate(split.image_ids) if i not in clean_ids]
        gen = torch.Generator().manual_seed(seed)
        texts = []
        for s in range(0, len(web_rows), 100):
            tokens = generate(model, split.features[web_rows[s:s + 100]], max_length=20, min_length=3, top_p=top_p,
                              generator=gen)
            texts += [tokenizer.decode(t) for t in tokens.tolist()]
        s_ids, s_mask = tokenizer.encode(texts, tcfg["max_text_len"])
        s_keep = capfilt.keep_mask(capfilt.match_scores(model, split.features, s_ids, s_mask, torch.tensor(web_rows),
                                                        250), threshold).tolist()
        image_ids = [split.image_ids[r] for r in web_rows]
        true_caption = [" ".join(normalize(t)) in {" ".join(normalize(c)) for c in split.captions[i]}
                        for i, t in zip(image_ids, texts)]
        synthetic_rows = [[i, t, bool(k)] for i, t, k in zip(image_ids, texts, s_keep)]
        synth_report = {"generated": len(texts), "kept": sum(s_keep), "identical_to_a_true_caption": sum(true_caption),
                        "kept_identical_to_a_true_caption": sum(t and k for t, k in zip(true_caption, s_keep))}
    record = {"command": command or f"vsbench train-blip capfilt --teacher {teacher}", "seed": seed,
              "teacher": {"path": teacher.name, "sha256": file_sha256(teacher), "command": meta["command"]},
              "dataset_fingerprint": paths.fingerprint, "threshold": threshold, "top_p": top_p,
              "noise": {"per_image": tcfg["noise_per_image"], "seed": tcfg["noise_seed"],
                        "clean_images": tcfg["clean_images"], "web_images": len(split.image_ids) - len(clean_ids),
                        "injected": sum(c.injected for c in noisy), "captions": len(noisy), "web_captions": len(web)},
              "keep_web": "".join("1" if k else "0" for k in keep), "synthetic": synthetic_rows,
              "seconds": round(time.perf_counter() - begin, 1),
              "metrics_at_save": {"filter_web": report, "synthetic": synth_report,
                                  "cleaned_captions": sum(keep) + synth_report.get("kept", 0)}}
    write_json(out, record)
    return record


# -- the `vsbench train-blip` command ------------------------------------------------------------------------

def configure_cli(parser: argparse.ArgumentParser) -> None:
    which = parser.add_subparsers(dest="part", required=True, help="model: train a BLIP; capfilt: filter + caption with a teacher")
    m = which.add_parser("model", help="train the tiny BLIP (ITC + ITM + LM) on clean, noisy or CapFilt captions")
    m.add_argument("--out", type=Path, default=BLIP_CHECKPOINTS["teacher"],
                   help="weights path (.safetensors, fp16; the .json sidecar goes beside it)")
    m.add_argument("--log-every", type=int, default=100, help="log the mean losses every N steps (0: quiet)")
    add_config_options(m, BlipTrainConfig)
    c = which.add_parser("capfilt", help="filter the noisy captions with the teacher's ITM head, add its synthetic "
                                         "captions, write the bootstrapped set's record")
    c.add_argument("--teacher", type=Path, default=BLIP_CHECKPOINTS["teacher"],
                   help="the BLIP checkpoint trained on the noisy captions (captioner and filter)")
    c.add_argument("--out", type=Path, default=CAPFILT_DATA, help="the record (JSON) to write")
    c.add_argument("--threshold", type=float, default=0.5, help="keep a caption iff P(match) >= this (0.5: argmax)")
    c.add_argument("--top-p", type=float, default=0.9, help="nucleus of the captioner's sampling")
    c.add_argument("--seed", type=int, default=0, help="seed of the captioner's sampling")
    c.add_argument("--no-synthetic", action="store_true", help="filter the web captions only")
    c.add_argument("--threads", type=int, default=1, help="torch CPU threads")


def run_cli(args: argparse.Namespace) -> int:
    command = command_line(getattr(args, "argv", None))
    if args.part == "capfilt":
        record = run_capfilt(args.teacher, args.out, args.threshold, args.top_p, args.seed, not args.no_synthetic,
                             command, threads=args.threads)
        print(f"wrote {args.out} ({record['seconds']} s): {record['metrics_at_save']}", flush=True)
        return 0
    meta = train_blip(config_from_args(BlipTrainConfig, args), out=args.out, command=command, log_every=args.log_every)
    print(f"saved {args.out} ({meta['train_seconds']} s): {meta['metrics_at_save']}", flush=True)
    return 0
