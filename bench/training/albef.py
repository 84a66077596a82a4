"""Train the tiny ALBEF on the generated dataset's captions (`vsbench train-albef`, registered in
bench/benchmarks/albef.py), evaluate it on the validation split, save / load its shipped checkpoint.

    vsbench train-albef --out bench/checkpoints/albef_base.safetensors                    # queue 1024, alpha 0.4
    vsbench train-albef --queue-size 0 --out bench/checkpoints/albef_queue0.safetensors   # in-batch negatives only
    vsbench train-albef --alpha 0 --out bench/checkpoints/albef_alpha0.safetensors        # no distillation

The image input is the frozen fixed-seed patch encoder of reference/blip2/image_encoder.py (its features are
computed once per image, as for the Q-Former); ALBEF's trainable image encoder, text / fusion encoders and heads
learn on top (reference/albef/model.py). Each step: B distinct images, one random caption each. Warm-ups, for a
model trained from scratch in minutes: alpha ramps linearly from 0 over `alpha_warmup` steps (ALBEF ramps it over
its first epoch: the momentum model starts as random as the online one), and the share of ITM negatives drawn
from the ITC similarities ramps from `itm_hard_start` to `itm_hard` over `itm_hard_warmup` steps (pure hard
negatives from step 0 leave ITM at the label prior, 0.637). The shipped checkpoint is fp16 without the momentum
copy and the queue (evaluation needs neither; loading re-creates the copy from the online weights, the queue
empty); the sidecar's metrics are measured on those fp16 weights. BLIP's training (blip.py) shares the pieces
below: the config options, the batches, the checkpoint format and the retrieval / ITM evaluation.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.training.loop import adamw, command_line, run_steps, save_weights, seeded, warmup_cosine
from bench.training.qformer import CHECKPOINT_DIR, CaptionSplit, hard_share, load_split
from reference.albef.image import ImageEncoderConfig
from reference.albef.mlm import mask_tokens
from reference.albef.model import Albef, AlbefConfig
from reference.albef.text import TextTransformerConfig
from reference.blip2.image_encoder import FrozenPatchEncoder, PatchEncoderConfig
from reference.blip2.tokenizer import WordTokenizer

ALBEF_CHECKPOINTS = {name: CHECKPOINT_DIR / f"albef_{name}.safetensors" for name in ("base", "queue0", "alpha0")}
K_TEST = 8  # ITC top-k re-ranked by ITM (>= the largest K of the Recall@K reported)


def option(default: Any, help: str) -> Any:
    """A config field that is also a command-line option with this help text."""
    return field(default=default, metadata={"help": help})


@dataclass
class ContrastTrainConfig:
    """What ALBEF and BLIP training share."""

    steps: int = option(1000, "optimisation steps")
    batch_size: int = option(32, "images per step (distinct, one random caption each)")
    lr: float = option(2e-3, "AdamW peak learning rate (linear warm-up, then cosine decay to 0)")
    weight_decay: float = option(0.02, "AdamW weight decay of matrices (vectors are not decayed)")
    warmup: int = option(100, "learning-rate warm-up steps")
    max_text_len: int = option(22, "[CLS] + words + [SEP] (the generated captions have <= 20 words)")
    seed: int = option(0, "seed of the weights, the batches, the masking and the ITM negatives")
    threads: int = option(1, "torch CPU threads (the machine is shared)")
    max_seconds: float = option(0.0, "stop early once this many seconds of training have passed (0: no limit)")
    hidden_size: int = option(64, "width of the text transformer and of the image tokens")
    num_heads: int = option(4, "attention heads")
    intermediate_size: int = option(128, "feed-forward width")
    image_depth: int = option(2, "trainable ViT blocks on the frozen patch features")
    image_merge: int = option(1, "merge each N x N block of frozen 16-px patch features into one image token")
    image_centre: int = option(0, "1: centre the frozen features on the training mean of each patch position and "
                                  "learn position embeddings (reference/albef/image.py)")
    embed_dim: int = option(64, "ITC feature width")
    queue_size: int = option(256, "momentum keys kept as extra ITC negatives (0: in-batch only)")
    queue_start: int = option(300, "steps during which ITC reads no queue key (the queue fills all the same)")
    queue_warmup: int = option(300, "then the steps over which the keys ITC reads ramp linearly from 0 to all")
    momentum: float = option(0.995, "EMA coefficient m of the momentum encoders")
    alpha: float = option(0.4, "momentum-distillation weight after its warm-up (0: plain ITC and MLM targets)")
    alpha_warmup: int = option(300, "steps over which alpha ramps linearly from 0 (0: constant)")
    itm_hard: float = option(1.0, "share of ITM negatives drawn from the ITC similarities after the warm-up")
    itm_hard_start: float = option(0.0, "that share at step 0")
    itm_hard_warmup: int = option(500, "steps over which the share moves linearly from start to itm_hard")
    encoder: PatchEncoderConfig = field(default_factory=PatchEncoderConfig)


@dataclass
class AlbefTrainConfig(ContrastTrainConfig):
    num_text_layers: int = option(2, "text-only layers (the unimodal text encoder)")
    num_fusion_layers: int = option(2, "fusion layers (cross-attention to the image)")


def queue_in_use(step: int, cfg: ContrastTrainConfig) -> int | None:
    """How many of the newest queue keys ITC reads at `step`: none before queue_start, then queue_size * (step -
    queue_start) / queue_warmup, then all (None)."""
    if step < cfg.queue_start:
        return 0
    if step >= cfg.queue_start + cfg.queue_warmup:
        return None
    return int(cfg.queue_size * (step - cfg.queue_start) / cfg.queue_warmup)


def alpha_at(step: int, cfg: ContrastTrainConfig) -> float:
    """alpha * min(1, step / alpha_warmup): 0 at step 0, cfg.alpha from step alpha_warmup on."""
    return cfg.alpha if cfg.alpha_warmup <= 0 else cfg.alpha * min(1.0, step / cfg.alpha_warmup)


def extra_token_id(tokenizer: WordTokenizer) -> int:
    """The id of the token appended after the vocabulary: ALBEF's [MASK], BLIP's [ENC]."""
    return tokenizer.vocab_size


def text_config(cfg: ContrastTrainConfig, tokenizer: WordTokenizer, num_layers: int, cross_from: int
                ) -> tuple[ImageEncoderConfig, TextTransformerConfig]:
    image = ImageEncoderConfig(patch_width=cfg.encoder.width, dim=cfg.hidden_size, depth=cfg.image_depth,
                               heads=cfg.num_heads, merge=cfg.image_merge, centre=bool(cfg.image_centre),
                               num_patches=(cfg.encoder.image_size // cfg.encoder.patch_size) ** 2)
    text = TextTransformerConfig(vocab_size=tokenizer.vocab_size + 1, hidden_size=cfg.hidden_size,
                                 num_layers=num_layers, num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                                 max_position_embeddings=cfg.max_text_len, encoder_width=cfg.hidden_size,
                                 cross_attention_from=cross_from, pad_token_id=tokenizer.pad_id)
    return image, text


def build_albef(cfg: AlbefTrainConfig, tokenizer: WordTokenizer) -> Albef:
    image, text = text_config(cfg, tokenizer, cfg.num_text_layers + cfg.num_fusion_layers, cfg.num_text_layers)
    mask_id = extra_token_id(tokenizer)
    return Albef(AlbefConfig(image=image, text=text, embed_dim=cfg.embed_dim, momentum=cfg.momentum,
                             queue_size=cfg.queue_size, alpha=cfg.alpha, pad_token_id=tokenizer.pad_id,
                             cls_token_id=tokenizer.cls_id, sep_token_id=tokenizer.sep_id, mask_token_id=mask_id,
                             special_token_ids=(0, 1, 2, 3, 4, mask_id)))


class CaptionBatches:
    """Training batches: B distinct images drawn among those with captions, one random caption each, tokenised
    and cut to the batch's longest caption. Call -> (patch feats (B, P, W), ids (B, T), mask (B, T), image ids (B,))."""

    def __init__(self, split: CaptionSplit, tokenizer: WordTokenizer, batch_size: int, max_text_len: int,
                 generator: torch.Generator) -> None:
        self.rows = [r for r, i in enumerate(split.image_ids) if split.captions.get(i)]
        if len(self.rows) < 2:
            raise ValueError(f"{len(self.rows)} of {len(split.image_ids)} training images have a caption; training "
                             "needs at least 2 (did a filter remove them all?)")
        self.split, self.tokenizer, self.gen = split, tokenizer, generator
        self.batch_size, self.max_text_len = min(batch_size, len(self.rows)), max_text_len

    def __call__(self):
        picks = torch.randperm(len(self.rows), generator=self.gen)[: self.batch_size].tolist()
        rows = [self.rows[p] for p in picks]
        image_ids = [self.split.image_ids[r] for r in rows]
        texts = []
        for i in image_ids:
            caps = self.split.captions[i]
            texts.append(caps[int(torch.randint(len(caps), (1,), generator=self.gen))])
        ids, mask = self.tokenizer.encode(texts, self.max_text_len)
        T = int(mask.sum(dim=1).max())
        return self.split.features[rows], ids[:, :T], mask[:, :T], torch.tensor(image_ids)


# -- the shipped checkpoint ------------------------------------------------------------------------

def shipped_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights evaluation needs: the state dict without the momentum copy and the queue, each tensor once
    (a tied or shared tensor keeps its first name: safetensors refuses aliases)."""
    out, seen = {}, set()
    for name, value in model.state_dict().items():
        key = (value.data_ptr(), value.shape, value.stride())
        if name.startswith(("momentum.", "queue.")) or key in seen:
            continue
        seen.add(key)
        out[name] = value
    return out


def load_shipped(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `shipped_state` tensors; every other key must be a momentum / queue / alias one. The momentum copy is
    then set to the online weights (as at initialisation) and the queue stays as it is (empty when new)."""
    expected_missing = set(model.state_dict()) - set(shipped_state(model))
    missing, unexpected = model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                                 for k, v in state.items()}, strict=False)
    wrong = sorted(set(missing) - expected_missing)
    if wrong or unexpected:
        raise ValueError(f"checkpoint does not fit the model: missing {wrong[:5]}, unexpected {sorted(unexpected)[:5]}")
    model.momentum.load_state_dict(model.online_modules().state_dict())


def round_to_half(model: torch.nn.Module) -> None:
    """Replace the weights by their fp16 values (what the shipped checkpoint holds), so metrics are of those."""
    load_shipped(model, {k: v.half() if v.is_floating_point() else v for k, v in shipped_state(model).items()})


def save_checkpoint(path: Path, model: torch.nn.Module, encoder: FrozenPatchEncoder, meta: dict) -> Path:
    state = {f"model.{k}": v for k, v in shipped_state(model).items()}
    state.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    return save_weights(path, state, meta, half=True)


def read_checkpoint(path: Path, build: Callable[[dict], torch.nn.Module], command: str):
    """(model in eval mode, frozen encoder, tokenizer, sidecar) of a checkpoint written by save_checkpoint;
    build(sidecar) makes the empty model."""
    from safetensors.torch import load_file

    from bench.storage import read_json

    path = Path(path)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"checkpoint {path} (and its .json) not found; create it with `{command}`")
    meta = read_json(path.with_suffix(".json"))
    state = load_file(str(path))
    model = build(meta)
    load_shipped(model, {k[6:]: v for k, v in state.items() if k.startswith("model.")})
    encoder = FrozenPatchEncoder(PatchEncoderConfig(**meta["train_config"]["encoder"]))
    encoder.load_state_dict({k[8:]: v.float() for k, v in state.items() if k.startswith("encoder.")})
    return model.eval(), encoder, WordTokenizer(tuple(meta["vocab"])), meta


def load_albef(path: Path):
    """(Albef in eval mode, frozen encoder, tokenizer, sidecar) from a `vsbench train-albef` checkpoint."""
    return read_checkpoint(path, lambda meta: Albef(AlbefConfig(**meta["model_config"])), "vsbench train-albef")


# -- evaluation on the validation split --------------------------------------------------------------

class CachedView:
    """An ALBEF / BLIP model seen through the Q-Former's retrieval interface (image_features (B, 1, E),
    text_features (B, E), itm_logits, temp) with every image encoded once: it is handed image ROW indices (B, 1)
    in place of patch features (`rows_split`), so itm_ablation's sampling code scores pairs without re-encoding."""

    def __init__(self, model: torch.nn.Module, image_embeds: torch.Tensor, image_feat: torch.Tensor) -> None:
        self.model, self.temp, self.image_embeds, self.image_feat = model, model.temp, image_embeds, image_feat

    def image_features(self, rows: torch.Tensor) -> torch.Tensor:
        return self.image_feat[rows[:, 0].long()][:, None]  # (B, 1, E)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.text_pass(input_ids, attention_mask)[1]

    def itm_logits(self, rows, input_ids, attention_mask) -> torch.Tensor:
        from reference.albef.base import pair_itm_logits

        return pair_itm_logits(self.model, self.image_embeds, rows[:, 0].long(), input_ids, attention_mask)


def rows_split(split: CaptionSplit) -> CaptionSplit:
    """The split with its patch features replaced by the image row indices (N, 1), for CachedView."""
    return CaptionSplit(split.image_ids, torch.arange(len(split.image_ids), dtype=torch.float32)[:, None],
                        split.captions, split.dataset_fingerprint)


def encode_images(model, split: CaptionSplit, batch: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """(image tokens (Ni, 1+P, D), normalised ITC features (Ni, E)) of every image of the split."""
    passes = [model.image_pass(split.features[s:s + batch]) for s in range(0, len(split.image_ids), batch)]
    return torch.cat([p[0] for p in passes]), torch.cat([p[1] for p in passes])


def split_texts(split: CaptionSplit) -> tuple[list[str], list[int]]:
    """Every caption of the split and the row of its image."""
    pairs = [(c, r) for r, i in enumerate(split.image_ids) for c in split.captions[i]]
    return [c for c, _ in pairs], [r for _, r in pairs]


@torch.no_grad()
def retrieval_metrics(model, split: CaptionSplit, tokenizer: WordTokenizer, max_text_len: int, k: int = K_TEST,
                      rerank: bool = True, batch: int = 250) -> dict[str, float]:
    """Recall@1/5 (percent) of ITC alone and (rerank=True) of ITM + ITC on the ITC top-k (the public code's
    re-ranking, reference/blip2/retrieval.py), both directions, every validation image against every caption;
    then the ITM losses / AUCs on 1 positive : 2 negatives (hard and random) and the label prior's loss
    (bench/training/itm_ablation.py). Image tokens are computed once per image (and ALBEF's unimodal text states
    once per caption)."""
    from bench.training.itm_ablation import itm_metrics, itm_scores
    from reference.albef.base import pair_itm_logits
    from reference.blip2.retrieval import recall_from_ranks, rerank_scores, retrieval_ranks

    texts, owner = split_texts(split)
    ids, mask = tokenizer.encode(texts, max_text_len)
    image_embeds, image_feat = encode_images(model, split, batch)
    text = [model.text_pass(ids[s:s + batch], mask[s:s + batch]) for s in range(0, len(texts), batch)]
    text_feat = torch.cat([t[1] for t in text])
    hidden = torch.cat([t[0] for t in text]) if isinstance(model, Albef) else None  # ALBEF's fusion reuses them
    sim = image_feat.float() @ text_feat.float().t()  # (Ni, Nt)
    scores = {"itc": (sim, sim.t())}
    if rerank:
        def itm_score(i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            cached = None if hidden is None else hidden[t]
            return pair_itm_logits(model, image_embeds, i, ids[t], mask[t], text_hidden=cached)[:, 1]

        scores["itm_itc"] = rerank_scores(sim, itm_score, k, batch_size=4096)
    out = {}
    for name, (i2t, t2i) in scores.items():
        rec = recall_from_ranks(*retrieval_ranks(i2t, t2i, owner), ks=(1, 5))
        out.update({f"{name}_{d}_R@{n}": rec[f"{d}_R@{n}"] for d in ("i2t", "t2i") for n in (1, 5)})
    if rerank:
        view = CachedView(model, image_embeds, image_feat)
        out.update(itm_metrics(itm_scores(view, rows_split(split), tokenizer, max_text_len, draws=2)))
    return out


@torch.no_grad()
def mlm_metrics(model: Albef, split: CaptionSplit, tokenizer: WordTokenizer, max_text_len: int, seed: int = 0,
                batch: int = 250) -> dict[str, float]:
    """MLM accuracy and cross-entropy at the masked positions of every validation caption (15%, 80/10/10, a fixed
    seed), with its image, one-hot targets."""
    import torch.nn.functional as F

    cfg = model.config
    texts, rows = split_texts(split)
    ids, mask = tokenizer.encode(texts, max_text_len)
    masked, labels = mask_tokens(ids, mask, cfg.special_token_ids, cfg.mask_token_id, cfg.text.vocab_size, cfg.mlm,
                                 torch.Generator().manual_seed(seed))
    rows_t = torch.tensor(rows)
    image_embeds = encode_images(model, split, batch)[0]
    correct, total, loss = 0, 0, 0.0
    for s in range(0, len(texts), batch):
        logits = model.mlm_logits(masked[s:s + batch], mask[s:s + batch], image_embeds[rows_t[s:s + batch]])
        sel = labels[s:s + batch] != -100
        picked, want = logits[sel].float(), labels[s:s + batch][sel]
        correct += int((picked.argmax(-1) == want).sum())
        total += int(sel.sum())
        loss += float(F.cross_entropy(picked, want, reduction="sum"))
    return {"mlm_accuracy": correct / max(total, 1), "mlm_loss": loss / max(total, 1), "mlm_positions": total}


def evaluate_albef(model: Albef, split: CaptionSplit, tokenizer: WordTokenizer, max_text_len: int) -> dict:
    return {**retrieval_metrics(model, split, tokenizer, max_text_len),
            **mlm_metrics(model, split, tokenizer, max_text_len)}


# -- training ---------------------------------------------------------------------------------------

def tail_means(records: list[dict[str, float]], n: int = 100) -> dict[str, float]:
    tail = records[-min(n, len(records)):]
    return {f"train_{k}_last{n}": float(np.nanmean([r[k] for r in tail])) for k in tail[0]} if tail else {}


def run_training(cfg: ContrastTrainConfig, model: torch.nn.Module, split: CaptionSplit, tokenizer: WordTokenizer,
                 desc: str, log_every: int):
    """The shared step loop of ALBEF and BLIP: batches, alpha and hard-share warm-ups, the momentum update and
    the enqueue (inside the model's forward), AdamW with warm-up + cosine. Returns run_steps' Steps."""
    gen = torch.Generator().manual_seed(cfg.seed)
    batches = CaptionBatches(split, tokenizer, cfg.batch_size, cfg.max_text_len, gen)
    if cfg.image_centre:
        model.set_image_feature_mean(split.features.mean(dim=0))

    def step_loss(step: int) -> dict[str, torch.Tensor]:
        feats, ids, mask, image_ids = batches()
        model.queue_in_use = queue_in_use(step, cfg)
        out = model(feats, ids, mask, image_ids=image_ids, alpha=alpha_at(step, cfg), generator=gen,
                    itm_hard=hard_share(step, cfg))
        return {**out, "alpha": torch.tensor(alpha_at(step, cfg)), "itm_hard": torch.tensor(hard_share(step, cfg)),
                "temp": model.temperature().detach(), "queue_keys": torch.tensor(float(model.queued_keys()[0].shape[0]))}

    done = run_steps(model, adamw(model, cfg.lr, cfg.weight_decay), step_loss, 0, cfg.steps,
                     lambda s: warmup_cosine(s, cfg.steps, cfg.lr, cfg.warmup), grad_clip=1.0, log_every=log_every,
                     max_seconds=cfg.max_seconds or None, desc=desc, quiet=not log_every)
    model.queue_in_use = None
    return done


def base_meta(cfg, model, tokenizer, paths, split: CaptionSplit, done, command: str) -> dict[str, Any]:
    return {"command": command, "seed": cfg.seed, "train_config": asdict(cfg), "model_config": asdict(model.config),
            "vocab": list(tokenizer.words), "dataset_fingerprint": paths.fingerprint,
            "train_images": len(split.image_ids), "steps_done": len(done.records), "stopped_early": done.stopped,
            "train_seconds": round(done.seconds, 1), "torch": torch.__version__}


def load_data(cfg: ContrastTrainConfig, dataset=None):
    """(dataset paths, frozen encoder, train split, val split, tokenizer of the training captions)."""
    from bench.datasets.synthetic import default_dataset

    torch.set_num_threads(cfg.threads)
    paths = dataset or default_dataset()
    encoder = FrozenPatchEncoder(cfg.encoder)
    split, val = load_split(paths, "train", encoder), load_split(paths, "val", encoder)
    return paths, encoder, split, val, WordTokenizer.from_texts(c for caps in split.captions.values() for c in caps)


def evaluate_shipped(model, evaluate: Callable, val: CaptionSplit, tokenizer, cfg) -> tuple[dict, float]:
    """Round the weights to fp16 (what the checkpoint ships) and evaluate those: (metrics, seconds)."""
    import time

    model.eval()
    round_to_half(model)
    start = time.perf_counter()
    return evaluate(model, val, tokenizer, cfg.max_text_len), time.perf_counter() - start


def at_save(done, val_metrics: dict) -> dict:
    """The sidecar's metrics: the last 100 training steps' means and the validation metrics (val_ prefix)."""
    return {**tail_means(done.records), **{f"val_{k}": v for k, v in val_metrics.items()}}


def train_albef(cfg: AlbefTrainConfig, out: Path = ALBEF_CHECKPOINTS["base"], command: str = "", dataset=None,
                log_every: int = 100) -> dict[str, Any]:
    """Train from scratch, evaluate the fp16 weights on the validation split, save; returns the sidecar."""
    paths, encoder, split, val, tokenizer = load_data(cfg, dataset)
    seeded(cfg.seed)
    model = build_albef(cfg, tokenizer)
    done = run_training(cfg, model, split, tokenizer, "train-albef", log_every)
    val_metrics, seconds = evaluate_shipped(model, evaluate_albef, val, tokenizer, cfg)
    meta = {**base_meta(cfg, model, tokenizer, paths, split, done, command or "vsbench train-albef"),
            "eval_seconds": round(seconds, 1), "metrics_at_save": at_save(done, val_metrics)}
    save_checkpoint(out, model, encoder, meta)
    return meta


# -- the command line (options from the config fields) -------------------------------------------------

def add_config_options(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One --option per int / float / str field of the config dataclass `cls`, with the field's help text."""
    kinds = {"int": int, "float": float, "str": str}
    for f in fields(cls):
        if f.name in skip or f.type not in kinds:
            continue
        default = f.default if f.default is not MISSING else None
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kinds[f.type], default=default,
                            help=f"{f.metadata.get('help', f.name)} (default: {default})")


def config_from_args(cls: type, args: argparse.Namespace, **extra: Any):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}, **extra)


def configure_cli(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=ALBEF_CHECKPOINTS["base"],
                        help="weights path (.safetensors, fp16; the .json sidecar goes beside it)")
    parser.add_argument("--log-every", type=int, default=100, help="log the mean losses every N steps (0: quiet)")
    add_config_options(parser, AlbefTrainConfig)


def run_cli(args: argparse.Namespace) -> int:
    cfg = config_from_args(AlbefTrainConfig, args)
    meta = train_albef(cfg, out=args.out, command=command_line(getattr(args, "argv", None)),
                       log_every=args.log_every)
    print(f"saved {args.out} ({meta['train_seconds']} s): {meta['metrics_at_save']}", flush=True)
    return 0
