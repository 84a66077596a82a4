"""Train the tiny BLIP-2 Q-Former (stage 1: ITC + ITM + ITG) on the generated dataset's captions, and
load / save its checkpoint (bench/checkpoints/qformer_tiny.safetensors + .json).

The image encoder is the frozen fixed-seed patch encoder of reference/blip2/image_encoder.py: its features are
computed once per image, then only the Q-Former and its heads learn. `vsbench train-qformer` (registered in
bench/benchmarks/captioning.py) runs `train()` on the shared loop (bench.training.loop.run_steps); the JSON
beside the weights records the reproducing command, seed, configs, vocabulary, dataset fingerprint and the
metrics at save time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.datasets.coco import CocoDetection, read_captions
from bench.datasets.synthetic import DatasetPaths, default_dataset
from bench.storage import read_json
from bench.training.loop import adamw, run_steps, save_weights, warmup_cosine
from reference.blip2.image_encoder import FrozenPatchEncoder, PatchEncoderConfig
from reference.blip2.qformer import QFormerConfig
from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config
from reference.blip2.tokenizer import WordTokenizer

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
CHECKPOINT = CHECKPOINT_DIR / "qformer_tiny.safetensors"


def shipped_checkpoint() -> Path:
    """The shipped weights: beside this module, else in the checkout (an installed wheel lacks them)."""
    if CHECKPOINT.is_file():
        return CHECKPOINT
    from bench.plugins import repo_root

    root = repo_root()
    candidate = root / "bench" / "checkpoints" / CHECKPOINT.name if root is not None else None
    return candidate if candidate is not None and candidate.is_file() else CHECKPOINT


@dataclass
class TrainConfig:
    steps: int = 2400  # optimisation steps
    batch_size: int = 32  # images per step (one random caption each)
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 0.05
    warmup: int = 100  # linear warm-up steps, then cosine decay to 0
    max_text_len: int = 22  # [CLS] + words + [SEP], padded (the generated captions have <= 20 words)
    seed: int = 0
    threads: int = 1  # torch CPU threads (the machine is shared)
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 128
    num_query_tokens: int = 8
    cross_attention_freq: int = 2
    embed_dim: int = 64
    init_std: float = 0.02  # normal init std of every weight (BERT's 0.02 suits width 768)
    dropout: float = 0.1  # hidden dropout (attention dropout is 0: on CPU it costs more than it helps here)
    itm_hard: float = 1.0  # share of ITM negatives drawn from the ITC similarities (0: uniformly random)
    itm_hard_warmup: int = 0  # steps over which that share moves linearly from itm_hard_start to itm_hard
    itm_hard_start: float = 0.0  # the share at step 0 when itm_hard_warmup > 0
    itm_weight: float = 1.0  # weight of the ITM loss in the total (ITC and ITG keep weight 1)
    init: str = ""  # start from the model weights of this checkpoint (same configs); "" = random init
    encoder: PatchEncoderConfig = field(default_factory=PatchEncoderConfig)


@dataclass
class CaptionSplit:
    """One split: image ids, frozen features (N_img, P, D) and the captions of each image."""

    image_ids: list[int]
    features: torch.Tensor
    captions: dict[int, list[str]]
    dataset_fingerprint: str = ""  # content hash of the dataset files the split was read from


def load_split(paths: DatasetPaths, split: str, encoder: FrozenPatchEncoder, limit: int | None = None,
               batch: int = 64) -> CaptionSplit:
    """Read a split's images and captions and encode the images with the frozen encoder."""
    data = CocoDetection(paths.images_dir(split), paths.instances_json(split))
    captions = read_captions(paths.captions_json(split))
    count = len(data) if limit is None else min(limit, len(data))
    ids, feats, pending = [], [], []
    for index in range(count):
        image, target = data[index]
        ids.append(int(target["image_id"]))
        pending.append(image)
        if len(pending) == batch or index == count - 1:
            feats.append(encoder(torch.from_numpy(np.stack(pending))))
            pending = []
    missing = [i for i in ids if not captions.get(i)]
    if missing:
        raise ValueError(f"{paths.captions_json(split)}: images without captions: {missing[:5]}")
    return CaptionSplit(ids, torch.cat(feats) if feats else torch.zeros(0), {i: captions[i] for i in ids},
                        getattr(paths, "fingerprint", ""))


def build_model(cfg: TrainConfig, tokenizer: WordTokenizer) -> Blip2Stage1:
    q = QFormerConfig(vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                      num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                      max_position_embeddings=cfg.max_text_len, hidden_dropout_prob=cfg.dropout,
                      attention_probs_dropout_prob=0.0, cross_attention_freq=cfg.cross_attention_freq,
                      encoder_width=cfg.encoder.width, num_query_tokens=cfg.num_query_tokens,
                      pad_token_id=tokenizer.pad_id, initializer_range=cfg.init_std)
    return Blip2Stage1(Blip2Stage1Config(qformer=q, embed_dim=cfg.embed_dim, cls_token_id=tokenizer.cls_id,
                                         sep_token_id=tokenizer.sep_id, dec_token_id=tokenizer.dec_id))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over cfg.warmup steps, then cosine decay to 0 at cfg.steps."""
    return warmup_cosine(step, cfg.steps, cfg.lr, cfg.warmup)


def hard_share(step: int, cfg: TrainConfig) -> float:
    """Share of hard ITM negatives at `step`: itm_hard_start -> itm_hard over itm_hard_warmup steps, then itm_hard."""
    if step >= cfg.itm_hard_warmup:
        return cfg.itm_hard
    return cfg.itm_hard_start + (cfg.itm_hard - cfg.itm_hard_start) * step / cfg.itm_hard_warmup


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Vectors and the learnt query tokens are not weight-decayed."""
    return param.dim() <= 1 or "query_tokens" in name


def train(cfg: TrainConfig, out: Path = CHECKPOINT, command: str = "", log_every: int = 100,
          dataset: DatasetPaths | None = None) -> dict[str, Any]:
    """Train and save; returns the metadata written beside the weights."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    paths = dataset or default_dataset()
    encoder = FrozenPatchEncoder(cfg.encoder)
    split = load_split(paths, "train", encoder)
    tokenizer = WordTokenizer.from_texts(c for caps in split.captions.values() for c in caps)
    model = build_model(cfg, tokenizer).train()
    if cfg.init:
        start, _, start_tokenizer, _ = load_checkpoint(Path(cfg.init))
        if start_tokenizer != tokenizer or asdict(start.config) != asdict(model.config):
            raise ValueError(f"init={cfg.init!r}: its vocabulary or model config differs from this run's")
        model.load_state_dict(start.state_dict())
    optim = adamw(model, cfg.lr, cfg.weight_decay, no_decay=no_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(split.image_ids)

    def step_loss(step: int) -> dict[str, torch.Tensor]:
        rows = torch.randperm(n, generator=gen)[: cfg.batch_size]
        texts = [split.captions[split.image_ids[r]][int(torch.randint(5, (1,), generator=gen)) %
                                                     len(split.captions[split.image_ids[r]])] for r in rows.tolist()]
        ids, mask = tokenizer.encode(texts, cfg.max_text_len)
        image_ids = torch.tensor([split.image_ids[r] for r in rows.tolist()])
        out = model(split.features[rows], ids, mask, image_ids=image_ids, generator=gen,
                    hard_negatives=hard_share(step, cfg))
        if cfg.itm_weight != 1.0:
            out["loss"] = out["itc"] + cfg.itm_weight * out["itm"] + out["itg"]
        return out

    done = run_steps(model, optim, step_loss, 0, cfg.steps, lambda s: lr_at(s, cfg), grad_clip=1.0,
                     log_every=log_every, desc="train-qformer", quiet=not log_every)
    history = done.records
    tail = history[-min(100, len(history)):]
    meta = {
        "command": command or "vsbench train-qformer",
        "seed": cfg.seed,
        "train_config": asdict(cfg),
        "model_config": asdict(model.config),
        "vocab": list(tokenizer.words),
        "dataset_fingerprint": paths.fingerprint,
        "train_images": n,
        "train_seconds": round(done.seconds, 1),
        "torch": torch.__version__,
        "metrics_at_save": {f"train_{k}_last100": float(np.mean([h[k] for h in tail])) for k in tail[0]},
    }
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    save_weights(out, state, meta)
    return meta


def load_checkpoint(path: Path | None = None, device: torch.device | str = "cpu"):
    """(model in eval mode, frozen encoder, tokenizer, metadata) from a checkpoint written by `train`
    (default: the shipped one)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else shipped_checkpoint()
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"checkpoint {path} (and its .json) not found; create it with `vsbench train-qformer`")
    meta = read_json(path.with_suffix(".json"))
    cfg = TrainConfig(**{**meta["train_config"], "encoder": PatchEncoderConfig(**meta["train_config"]["encoder"])})
    tokenizer = WordTokenizer(tuple(meta["vocab"]))
    state = load_file(str(path))
    model = build_model(cfg, tokenizer)
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    encoder = FrozenPatchEncoder(cfg.encoder)
    encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    return model.eval().to(device), encoder.to(device), tokenizer, meta
