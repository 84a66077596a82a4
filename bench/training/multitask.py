"""Multi-task training of Pix2SeqV2 (detection, segmentation, keypoints, captioning) on one model.

Every step takes `batch_images` images, runs the encoder once per image and decodes `rows_per_image`
task sequences per image; each row's task is drawn with the per-task sampling weights. A task with
weight 0 is never trained (weights of one task only give the single-task baseline). Loss: next-token
cross-entropy on the targets after each row's prompt (reference.pix2seqv2.loss). Augmentation: objects
in a random order (detection), a seeded random start vertex per polygon (segmentation), box prompts
jittered by up to `box_jitter` of the box side (so that prompts from a detector are in-distribution),
and horizontal flips that also swap left/right keypoint names and the words 'left'/'right' in captions.
The optimiser and schedule are those of bench/training/detection.py; the loop is bench.training.loop.run_steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from bench.training.detection import DetectionData, export, lr_at, make_optimizer
from bench.training.loop import add_default_options, command_line, run_steps, seeded, window_means
from reference.pix2seq.model import Pix2Seq, prepare_images
from reference.pix2seqv2.captioning import WordList, encode_caption
from reference.pix2seqv2.detection import encode_detection
from reference.pix2seqv2.keypoints import encode_keypoints
from reference.pix2seqv2.loss import sequence_loss, target_mask
from reference.pix2seqv2.segmentation import encode_segmentation
from reference.pix2seqv2.vocab import TASKS

SWAP_WORDS = {"left": "right", "right": "left"}


@dataclass
class MultiTaskConfig:
    weights: dict[str, float] = field(default_factory=lambda: {"detection": 2.0, "segmentation": 1.0,
                                                               "keypoint": 1.0, "captioning": 1.0})  # task sampling
    steps: int = 2000  # optimiser steps
    batch_images: int = 16  # images per step (one encoder pass each)
    rows_per_image: int = 4  # task sequences decoded per image
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (matrices only)
    warmup_steps: int = 200  # linear warm-up
    min_lr_ratio: float = 0.02  # cosine decay floor, fraction of lr
    grad_clip: float = 1.0  # max global gradient norm
    hflip: float = 0.5  # probability of a horizontal flip per image
    box_jitter: float = 0.05  # box-prompt corners moved by up to this fraction of the box side
    seed: int = 0  # init, sampling and augmentation
    max_minutes: float | None = None  # stop early after this much training time

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(TASKS)
        if unknown or not self.weights:
            raise ValueError(f"task weights {self.weights}: tasks must be among {', '.join(TASKS)}")
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError(f"task weights {self.weights} must be >= 0 with a positive sum")


def parse_weights(text: str) -> dict[str, float]:
    """'detection=2,captioning=1' -> {'detection': 2.0, 'captioning': 1.0}."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, _, value = item.partition("=")
        if name not in TASKS:
            raise ValueError(f"--tasks: unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
        try:
            out[name] = float(value) if value else 1.0
        except ValueError as err:
            raise ValueError(f"--tasks: weight of {name!r} is not a number: {value!r}") from err
    return out


class MultiTaskData(DetectionData):
    """A split in memory: images, targets (boxes, labels, polygons, keypoints) and captions per image."""

    def __init__(self, dataset, captions: dict[int, list[str]]) -> None:
        super().__init__(dataset)
        self.captions = [captions.get(t["image_id"], []) for t in self.targets]
        names = dataset.categories[0].get("keypoints", []) if dataset.categories else []
        mirrored = [mirror_words(n, "_") for n in names]
        self.flip_index = np.array([names.index(m) if m in names else i for i, m in enumerate(mirrored)], np.int64)


def mirror_words(text: str, sep: str = " ") -> str:
    """'left_eye' -> 'right_eye' (sep '_'), 'to the left of' -> 'to the right of'."""
    return sep.join(SWAP_WORDS.get(w, w) for w in text.split(sep))


def flip_target(target: dict, flip_index: np.ndarray) -> dict:
    """The target of the mirrored image: x -> width - x, left/right keypoints swapped."""
    w = target["width"]
    b = target["boxes"].astype(np.float64)
    kps = target["keypoints"].astype(np.float64)[:, flip_index].copy()  # (N, K, 3)
    kps[..., 0] = np.where(kps[..., 2] > 0, w - kps[..., 0], 0.0)
    polys = [[np.stack([w - p[:, 0], p[:, 1]], 1)[::-1] for p in obj] for obj in target["polygons"]]
    return {**target, "boxes": np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1), "keypoints": kps,
            "polygons": polys}


def jitter_box(box: np.ndarray, amount: float, rng: np.random.Generator, width: float, height: float) -> np.ndarray:
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2)
    out = box + rng.uniform(-amount, amount, 4) * side
    out = np.clip(out, 0, [width, height, width, height])
    return np.array([min(out[0], out[2]), min(out[1], out[3]), max(out[0], out[2]), max(out[1], out[3])])


def task_sequence(task: str, model: Pix2Seq, words: WordList, target: dict, captions: Sequence[str],
                  cfg: MultiTaskConfig, rng: np.random.Generator, max_points: int) -> list[int]:
    """One training sequence of `task` for an image (detection when an instance task has no instance)."""
    vocab, w, h = model.vocab, target["width"], target["height"]
    n = len(target["labels"])
    if task in ("segmentation", "keypoint") and n:
        k = int(rng.integers(n))
        box = jitter_box(target["boxes"][k].astype(np.float64), cfg.box_jitter, rng, w, h)
        if task == "segmentation":
            polys = [p.reshape(-1) for p in target["polygons"][k]]
            return encode_segmentation(vocab, box, target["labels"][k], polys, w, h, rng, max_points)
        return encode_keypoints(vocab, box, target["labels"][k], target["keypoints"][k], w, h)
    if task == "captioning" and captions:
        return encode_caption(vocab, words, captions[int(rng.integers(len(captions)))])
    order = rng.permutation(n)
    return encode_detection(vocab, target["boxes"][order], target["labels"][order], w, h)


def make_batch(model: Pix2Seq, words: WordList, data: MultiTaskData, index: np.ndarray, cfg: MultiTaskConfig,
               rng: np.random.Generator, device: torch.device):
    """-> prepared images (B,3,S,S), row -> image (B*R,), tokens (B*R, L) PAD-padded, tasks per row."""
    tasks = list(cfg.weights)
    p = np.array([cfg.weights[t] for t in tasks], np.float64)
    p /= p.sum()
    images, rows, seqs, row_tasks = [], [], [], []
    for b, i in enumerate(index):
        image, target, captions = data.images[i], data.targets[i], data.captions[i]
        if rng.random() < cfg.hflip:
            image, target = image[:, ::-1], flip_target(target, data.flip_index)
            captions = [mirror_words(c) for c in captions]
        images.append(image)
        for task in rng.choice(tasks, size=cfg.rows_per_image, p=p):
            seqs.append(task_sequence(str(task), model, words, target, captions, cfg, rng, model.cfg.max_points))
            rows.append(b)
            row_tasks.append(str(task))
    tokens = torch.full((len(seqs), max(map(len, seqs))), model.vocab.pad, dtype=torch.long)  # (B*R, L)
    for r, s in enumerate(seqs):
        tokens[r, : len(s)] = torch.tensor(s)
    x = prepare_images(np.stack(images), model.cfg.image_size, device=device)
    return x, torch.tensor(rows, device=device), tokens.to(device), row_tasks


def train_multitask(model: Pix2Seq, words: WordList, data: MultiTaskData, cfg: MultiTaskConfig,
                    device: torch.device, log: Callable[[str], None] = print, log_every: int = 50) -> dict[str, Any]:
    """Train in place; returns {"steps", "seconds", "losses" (mean per log interval), "task_rows"}."""
    rng = seeded(cfg.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    counts = {t: 0 for t in TASKS}

    def step_loss(step: int) -> torch.Tensor:
        index = rng.choice(len(data), size=cfg.batch_images, replace=False)
        x, rows, tokens, row_tasks = make_batch(model, words, data, index, cfg, rng, device)
        for t in row_tasks:
            counts[t] += 1
        features = model.encode(x).index_select(0, rows)  # (B, N, d) -> (B*R, N, d)
        logits = model.decoder(features, tokens[:, :-1])  # (B*R, L-1, V)
        return sequence_loss(logits, tokens, target_mask(model.vocab, tokens))

    budget = None if cfg.max_minutes is None else 60 * cfg.max_minutes
    done = run_steps(model, optimizer, step_loss, 0, cfg.steps, lambda s: lr_at(s, cfg.steps, cfg),
                     grad_clip=cfg.grad_clip, log=log, log_every=log_every, max_seconds=budget, desc="train-multitask")
    steps = len(done.records)
    kept = steps if steps == cfg.steps else steps - steps % log_every  # a run cut short drops its partial window
    model.eval()
    return {"steps": steps, "seconds": done.seconds, "losses": window_means(done.records[:kept], log_every),
            "task_rows": counts}


def load_split(paths, split: str) -> tuple[Any, MultiTaskData]:
    """(CocoDetection, MultiTaskData) of a split of a COCO-layout dataset folder with captions."""
    from bench.datasets.coco import CocoDetection, read_captions

    dataset = CocoDetection(paths.images_dir(split), paths.instances_json(split))
    return dataset, MultiTaskData(dataset, read_captions(paths.captions_json(split)))


# -- the `vsbench train-multitask` command -------------------------------------------------------------

def configure_cli(parser) -> None:
    d = MultiTaskConfig()
    parser.add_argument("--tasks", default="detection=2,segmentation=1,keypoint=1,captioning=1",
                        help="task=weight list: sampling weights of the trained tasks")
    parser.add_argument("--export", type=Path, required=True, help="checkpoint to write (fp16 safetensors + .json)")
    add_default_options(parser, d, (("steps", int, "optimiser steps"), ("batch_images", int, "images per step"),
                             ("rows_per_image", int, "task sequences decoded per image"),
                             ("warmup_steps", int, "linear learning-rate warm-up steps"),
                             ("seed", int, "seed of the init, the task sampling and the augmentation"),
                             ("lr", float, "AdamW peak learning rate"), ("weight_decay", float, "AdamW weight decay"),
                             ("min_lr_ratio", float, "cosine decay floor, as a fraction of --lr"),
                             ("hflip", float, "probability of a horizontal flip per image"),
                             ("box_jitter", float, "box-prompt corners moved by up to this fraction of the box side")))
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    parser.add_argument("--max-points", type=int, default=None, help="polygon points per sequence (tiny: 16)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--data-root", type=Path, default=None, help="dataset folder (default: the generated one)")
    parser.add_argument("--init-detector", type=Path, default=None,
                        help="start from a trained Pix2Seq detector checkpoint (same encoder/decoder sizes)")


def run_cli(args) -> int:
    from bench.datasets.synthetic import DatasetPaths, default_dataset
    from bench.device import describe_device, resolve_device
    from reference.pix2seq.checkpoint import read_metadata
    from reference.pix2seqv2.model import FORMAT, Pix2SeqV2Config, build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = MultiTaskConfig(weights=parse_weights(args.tasks), steps=args.steps, batch_images=args.batch_images,
                          rows_per_image=args.rows_per_image, lr=args.lr, weight_decay=args.weight_decay,
                          warmup_steps=args.warmup_steps, min_lr_ratio=args.min_lr_ratio, hflip=args.hflip,
                          box_jitter=args.box_jitter, seed=args.seed, max_minutes=args.max_minutes)
    paths = DatasetPaths.open(args.data_root) if args.data_root else default_dataset()
    dataset, data = load_split(paths, "train")
    words = WordList.build(c for caps in data.captions for c in caps)
    overrides = {"num_classes": len(dataset.class_names), "num_words": len(words),
                 "num_keypoints": max(1, dataset.num_keypoints)}
    if args.max_points:
        overrides["max_points"] = args.max_points
    torch.manual_seed(cfg.seed)
    model = build_model(Pix2SeqV2Config.tiny(**overrides))
    init = None
    if args.init_detector:
        from bench.storage import file_sha256
        from reference.pix2seq.checkpoint import load_checkpoint
        from reference.pix2seqv2.model import init_from_detector

        detector = load_checkpoint(args.init_detector)[0]
        init = {"path": str(args.init_detector), "sha256": file_sha256(args.init_detector),
                **init_from_detector(model, detector),
                "detector_val_metrics": read_metadata(args.init_detector).get("val_metrics")}
    command = command_line()
    print(f"{command}\n{describe_device(device)}, {len(data)} train images, {len(words)} words, "
          f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    summary = train_multitask(model, words, data, cfg, device, log=lambda line: print(line, flush=True))
    export(model, args.export, {
        "format_v2": FORMAT, "words": list(words.words), "command": command, "seed": cfg.seed,
        "train_config": asdict(cfg), "dataset_fingerprint": paths.fingerprint, "device": describe_device(device),
        "train_seconds": round(summary["seconds"], 1), "steps": summary["steps"], "losses": summary["losses"],
        "task_rows": summary["task_rows"], "torch": torch.__version__, "init_from_detector": init})
    print(f"exported {args.export} ({args.export.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0
