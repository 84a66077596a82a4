"""Training and evaluation of a Pix2Seq detector on a COCO-format split (the generated dataset by default).

Loop (bench.training.loop.run_steps): AdamW, linear warm-up then cosine decay, gradient clipping,
cross-entropy on next-token targets with PAD ignored (input seq[:, :-1], target seq[:, 1:]). Sequence augmentation from the paper where it
helps on this data: the objects of each image in a random order every time it is seen, random
horizontal flips, and (--scale-jitter) the paper's image scale jitter: resize by a random factor, then
crop or pad back to the input size (boxes clipped; an object mostly cut off is dropped). (The paper's
noise objects need an extra "noise" class token that the port's vocabulary lacks, so they are not used.) Resumable: `<out>/last.pt` holds the model, optimiser,
schedule and RNG states after every epoch; `--resume` continues from it. The exported checkpoint is a
safetensors file with the config, seed, command and validation metrics in its metadata.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.datasets.coco import CocoDetection
from bench.training.loop import (adamw, add_default_options, command_line, file_logger, load_state, run_steps,
                                 save_state, warmup_cosine, write_sidecar)
from reference.pix2seq.checkpoint import save_checkpoint
from reference.pix2seq.collate import collate_sequences, shift_for_training
from reference.pix2seq.generate import generate
from reference.pix2seq.model import Pix2Seq, Pix2SeqConfig, prepare_images
from reference.pix2seq.pipeline import detections_to_coco, prediction_table
from reference.pix2seq.postprocess import postprocess_rows
from reference.pix2seq.tokenizer import encode_objects


@dataclass
class TrainConfig:
    epochs: int = 40  # passes over the training split
    batch_size: int = 32  # images per step
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (not on norms, biases, embeddings' pos tables)
    warmup_steps: int = 300  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.02  # the cosine decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0  # max global gradient norm
    order: str = "random"  # object order in a sequence: random (new each time) | raster (by ymin, xmin) | given
    hflip: float = 0.5  # probability of a horizontal flip
    scale_jitter: tuple[float, float] = (1.0, 1.0)  # image scale range (paper: random resize, then crop or pad)
    seed: int = 0  # model init, batch order and augmentation
    eval_batch_size: int = 64  # images per generation batch at evaluation


class DetectionData:
    """A split held in memory: uint8 images (N,H,W,3), per-image boxes (xyxy pixels) and labels."""

    def __init__(self, dataset: CocoDetection) -> None:
        self.dataset = dataset
        pairs = [dataset[i] for i in range(len(dataset))]
        self.images = np.stack([img for img, _ in pairs])  # (N, H, W, 3) uint8
        self.targets = [t for _, t in pairs]

    def __len__(self) -> int:
        return len(self.targets)


def augmented_sequences(model: Pix2Seq, data: DetectionData, index: np.ndarray, cfg: TrainConfig,
                        rng: np.random.Generator) -> tuple[np.ndarray, list[list[int]]]:
    """Images (B,H,W,3) and token sequences of `index`, flipped and with objects in a random order."""
    images, sequences = [], []
    for i in index:
        image, target = data.images[i], data.targets[i]
        boxes, labels, w = target["boxes"].astype(np.float64), target["labels"], target["width"]
        if rng.random() < cfg.hflip:
            image = image[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        low, high = cfg.scale_jitter
        if (low, high) != (1.0, 1.0):
            scale = float(rng.uniform(low, high))
            h = target["height"]
            spare = np.array([w - round(w * scale), h - round(h * scale)])  # < 0: the resized image is cropped
            offset = [int(rng.integers(min(0, d), max(0, d) + 1)) for d in spare]
            image, boxes, labels = scale_and_place(image, boxes, labels, scale, offset)
        order = object_order(boxes, cfg.order, rng)
        sequences.append(encode_objects(model.vocab, boxes[order], labels[order], w, target["height"]))
        images.append(image)
    return np.stack(images), sequences


def scale_and_place(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, scale: float,
                    offset: tuple[int, int] | list[int], min_visible: float = 0.5):
    """Resize image (H,W,3) by `scale` and place its top-left corner at `offset` (x, y; negative crops) on
    an (H,W) canvas of the image's mean colour. Boxes (N,4 xyxy px) follow and are clipped to the canvas;
    an object keeps its box only if at least `min_visible` of its scaled area stays in the canvas.
    -> (image (H,W,3) uint8, boxes (M,4), labels (M,))."""
    import cv2

    H, W = image.shape[:2]
    size = (max(1, round(W * scale)), max(1, round(H * scale)))
    resized = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.empty_like(image)
    canvas[:] = image.reshape(-1, image.shape[2]).mean(0).round().astype(image.dtype)
    x, y = offset
    sx, sy = max(0, -x), max(0, -y)  # first visible pixel of the resized image
    cx, cy = max(0, x), max(0, y)  # where it lands on the canvas
    cw, ch = min(size[0] - sx, W - cx), min(size[1] - sy, H - cy)
    if cw > 0 and ch > 0:
        canvas[cy:cy + ch, cx:cx + cw] = resized[sy:sy + ch, sx:sx + cw]
    moved = boxes * np.array([size[0] / W, size[1] / H] * 2) + np.array([x, y, x, y], np.float64)
    clipped = np.clip(moved, 0, [W, H, W, H])
    area = lambda b: np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # noqa: E731
    keep = area(clipped) >= min_visible * np.maximum(area(moved), 1e-9)
    return canvas, clipped[keep], labels[keep]


def object_order(boxes: np.ndarray, order: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of the objects in sequence order: random, raster (top to bottom, then left to right) or given."""
    if order == "random":
        return rng.permutation(len(boxes))
    if order == "raster":
        return np.lexsort((boxes[:, 0], boxes[:, 1]))  # primary key ymin, then xmin
    if order == "given":
        return np.arange(len(boxes))
    raise ValueError(f"order={order!r}: expected random, raster or given")


def training_batch(model: Pix2Seq, images: np.ndarray, sequences: list[list[int]], device: torch.device):
    """-> prepared images (B,3,S,S), decoder input (B,L-1), target (B,L-1), L = the longest sequence."""
    tokens, _ = collate_sequences(model.vocab, sequences)  # (B, max_len), PAD-padded
    tokens = tokens[:, : max(len(s) for s in sequences)].to(device)
    x = prepare_images(images, model.cfg.image_size, device=device)
    return x, *shift_for_training(tokens)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at `total` steps."""
    return warmup_cosine(step, total, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio)


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Norms, biases and the position / class embeddings are not weight-decayed."""
    return param.ndim < 2 or name.endswith(("pos_embed", "cls_token"))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return adamw(model, cfg.lr, cfg.weight_decay, betas=(0.9, 0.98), no_decay=no_decay)


def sequence_loss(model: Pix2Seq, x: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(x, inputs)  # (B, L-1, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=model.vocab.pad)


def train(model: Pix2Seq, data: DetectionData, cfg: TrainConfig, out_dir: Path, device: torch.device,
          resume: bool = False, max_steps: int | None = None, log: Callable[[str], None] = print,
          progress: bool = True, on_epoch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train `model` in place; returns {"losses": per-epoch mean losses, "steps", "seconds"}.
    `on_epoch(epoch)` runs after each epoch's state is saved (e.g. a validation pass)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "last.pt"
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    configs = {"train_config": asdict(cfg), "model_config": model.cfg.to_dict()}
    epoch, step, history, seconds = 0, 0, [], 0.0
    if resume and state_path.is_file():
        state = load_state(state_path, model, optimizer, configs, device)
        epoch, step, history, seconds = state["epoch"], state["step"], state["history"], state["seconds"]
        log(f"resumed from {state_path} at epoch {epoch}, step {step}")
    while epoch < cfg.epochs and (max_steps is None or step < max_steps):
        rng = np.random.default_rng([cfg.seed, epoch])  # the epoch's order and augmentation: resumable
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout, reseeded per epoch for the same reason
        order, first = rng.permutation(len(data)), step

        def step_loss(s: int) -> torch.Tensor:
            b = s - first  # the batch's index within the epoch
            images, sequences = augmented_sequences(model, data, order[b * cfg.batch_size:(b + 1) * cfg.batch_size],
                                                    cfg, rng)
            return sequence_loss(model, *training_batch(model, images, sequences, device))

        end = first + steps_per_epoch if max_steps is None else min(first + steps_per_epoch, max_steps)
        done = run_steps(model, optimizer, step_loss, first, end, lambda s: lr_at(s, total, cfg),
                         grad_clip=cfg.grad_clip, log=log, desc=f"epoch {epoch + 1}/{cfg.epochs}", quiet=not progress)
        step, seconds = end, seconds + done.seconds
        if end < first + steps_per_epoch:  # a partial epoch is not saved: --resume redoes it
            log(f"stopped at step {step} (max_steps) inside epoch {epoch + 1}")
            break
        epoch += 1
        history.append(float(np.mean([r["loss"] for r in done.records])) if done.records else float("nan"))
        log(f"epoch {epoch}/{cfg.epochs} step {step} loss {history[-1]:.4f} lr {lr_at(step, total, cfg):.2e} "
            f"({seconds:.0f} s)")
        save_state(state_path, model, optimizer, epoch=epoch, step=step, history=history, seconds=seconds, **configs)
        if on_epoch is not None:
            on_epoch(epoch)
            model.train()
    model.eval()
    return {"losses": history, "steps": step, "seconds": seconds}


@torch.no_grad()
def predict(model: Pix2Seq, dataset: CocoDetection, device: torch.device, batch_size: int = 64,
            images: np.ndarray | None = None, **generate_options) -> tuple[list[int], list[dict]]:
    """Greedy, constrained, stop-at-EOS detections for every image of `dataset` -> (image ids, detections)."""
    model.to(device).eval()
    options = {"method": "cache", "constrain": True, "stop_at_eos": True, **generate_options}
    ids, detections = [], []
    for start in range(0, len(dataset), batch_size):
        index = range(start, min(start + batch_size, len(dataset)))
        batch = [images[i] for i in index] if images is not None else [dataset[i][0] for i in index]
        targets = [dataset.target(dataset.image_ids[i]) for i in index]
        tokens, probs = generate(model, prepare_images(batch, model.cfg.image_size, device=device), **options)
        detections += postprocess_rows(model.vocab, tokens, probs, [(t["width"], t["height"]) for t in targets])
        ids += [t["image_id"] for t in targets]
    return ids, detections


def evaluate(model: Pix2Seq, dataset: CocoDetection, device: torch.device, batch_size: int = 64,
             images: np.ndarray | None = None):
    """-> (image ids, detections, CocoEvaluation of the reference pipeline)."""
    from bench.metrics.coco import evaluate_detections

    ids, detections = predict(model, dataset, device, batch_size, images)
    table = prediction_table(ids, detections, dataset.gt)
    return ids, detections, evaluate_detections(dataset.gt, detections_to_coco(table, dataset.gt))


def export(model: Pix2Seq, path: Path, metadata: dict[str, Any]) -> Path:
    """The shipped checkpoint: fp16 safetensors (metadata in its header) + a JSON sidecar with the same metadata."""
    save_checkpoint(path, model, metadata, half=True)
    write_sidecar(path, {"config": model.cfg.to_dict(), **metadata})
    return path


def build_model(preset: str, seed: int, **overrides: Any) -> Pix2Seq:
    presets = {"tiny": Pix2SeqConfig.tiny, "port": Pix2SeqConfig.port}
    if preset not in presets:
        raise ValueError(f"model preset {preset!r}: expected one of {', '.join(presets)}")
    torch.manual_seed(seed)
    return Pix2Seq(presets[preset](**overrides))


# -- the `vsbench train detection` command ------------------------------------------------------------

def configure_cli(parser) -> None:
    tasks = parser.add_subparsers(dest="task", required=True, help="what to train (detection: Pix2Seq)")
    p = tasks.add_parser("detection", help="train Pix2Seq on the generated dataset (or a COCO split)")
    defaults = TrainConfig()
    p.add_argument("--model", default="tiny", help="model preset: tiny | port")
    p.add_argument("--out", type=Path, default=Path("runs/pix2seq_tiny"), help="run folder (last.pt, log)")
    p.add_argument("--export", type=Path, default=None, help="write the trained model here (fp16 safetensors + .json)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    p.add_argument("--init", type=Path, default=None,
                   help="start from the weights of a checkpoint written by --export (same model config); "
                        "a second stage with a fresh schedule")
    add_default_options(p, defaults, (("epochs", int, "passes over the training images"),
                             ("batch_size", int, "images per step"),
                             ("warmup_steps", int, "linear learning-rate warm-up steps, then cosine decay"),
                             ("seed", int, "seed of the init, the object order and the augmentation"),
                             ("lr", float, "AdamW peak learning rate"),
                             ("weight_decay", float, "AdamW weight decay"),
                             ("min_lr_ratio", float, "cosine decay floor, as a fraction of --lr"),
                             ("hflip", float, "probability of a horizontal flip per image")))
    p.add_argument("--scale-jitter", type=float, nargs=2, default=defaults.scale_jitter, metavar=("LOW", "HIGH"),
                   help="random image scale range; the resized image is cropped or padded back to its size")
    p.add_argument("--order", default=defaults.order, choices=["random", "raster", "given"],
                   help="object order in the target sequences")
    p.add_argument("--decoder-layers", type=int, default=None, help="override the preset's decoder depth")
    p.add_argument("--num-bins", type=int, default=None, help="override the preset's coordinate bins")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--eval-every", type=int, default=0, help="validation AP every N epochs (0: at the end only)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--data-root", type=Path, default=None,
                   help="a COCO-layout dataset folder (images/{split}, annotations/instances_{split}.json); "
                        "default: the generated dataset")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch progress lines")


def run_cli(args) -> int:
    import json

    from bench.datasets.synthetic import DatasetPaths, default_dataset
    from bench.device import describe_device, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    paths = DatasetPaths.open(args.data_root) if args.data_root else default_dataset()
    train_set = CocoDetection(paths.images_dir("train"), paths.instances_json("train"))
    val_set = CocoDetection(paths.images_dir("val"), paths.instances_json("val"))
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      warmup_steps=args.warmup_steps, min_lr_ratio=args.min_lr_ratio, hflip=args.hflip,
                      order=args.order, seed=args.seed, scale_jitter=tuple(args.scale_jitter))
    overrides = {"num_classes": len(train_set.class_names)}
    if args.decoder_layers:
        overrides["decoder_layers"] = args.decoder_layers
    if args.num_bins:
        overrides["num_bins"] = args.num_bins
    model = build_model(args.model, cfg.seed, **overrides)
    init_meta = None
    if args.init:
        from reference.pix2seq.checkpoint import CheckpointError, load_checkpoint

        init_model, init_meta = load_checkpoint(args.init)
        if init_model.cfg != model.cfg:
            raise CheckpointError(f"--init {args.init}: its model config differs from this run's "
                                  f"({init_model.cfg.to_dict()} vs {model.cfg.to_dict()})")
        model.load_state_dict(init_model.state_dict())
    data, val_images = DetectionData(train_set), DetectionData(val_set).images
    log = file_logger(args.out / "train.log")

    def validate(epoch: int) -> None:
        if args.eval_every and epoch % args.eval_every == 0 and epoch < cfg.epochs:
            stats = evaluate(model, val_set, device, cfg.eval_batch_size, val_images)[2].stats
            log(f"epoch {epoch}: val AP {stats['AP']:.4f} AP50 {stats['AP50']:.4f}")

    command = command_line()
    log(f"{command}\ndevice {describe_device(device)}, dataset {paths.root} ({paths.fingerprint}), "
        f"{len(train_set)} train / {len(val_set)} val images, {sum(p.numel() for p in model.parameters())} parameters")
    summary = train(model, data, cfg, args.out, device, resume=args.resume, max_steps=args.max_steps, log=log,
                    progress=not args.no_progress, on_epoch=validate)
    evaluation = evaluate(model, val_set, device, cfg.eval_batch_size, val_images)[2]
    log(f"final val AP {evaluation.stats['AP']:.4f} AP50 {evaluation.stats['AP50']:.4f} "
        f"({summary['steps']} steps, {summary['seconds']:.0f} s of training)")
    if args.export:
        export(model, args.export, {
            "command": command, "seed": cfg.seed, "train_config": asdict(cfg), "dataset_fingerprint": paths.fingerprint,
            "train_seconds": round(summary["seconds"], 1), "steps": summary["steps"], "epoch_losses": summary["losses"],
            "device": describe_device(device), "torch": torch.__version__,
            "val_metrics": {k: v for k, v in evaluation.stats.items()}, "val_per_class_ap": evaluation.per_class_ap,
            "init_from": None if init_meta is None else {
                "path": str(args.init), "command": init_meta.get("command"), "seed": init_meta.get("seed"),
                "train_config": init_meta.get("train_config"), "train_seconds": init_meta.get("train_seconds"),
                "val_metrics": init_meta.get("val_metrics")}})
        log(f"exported {args.export} ({args.export.stat().st_size / 1e6:.2f} MB) and {args.export.with_suffix('.json')}")
    (args.out / "summary.json").write_text(json.dumps({"stats": evaluation.stats, **summary}, indent=2) + "\n")
    return 0
