"""BLIP-2 stage 2 training on the generated captions, in two commands (both on bench.training.loop):

    vsbench train-stage2 lm --out bench/checkpoints/blip2_stage2_lm.safetensors
    vsbench train-stage2 qformer --lm bench/checkpoints/blip2_stage2_lm.safetensors \\
        --init bench/checkpoints/qformer_tiny.safetensors --out bench/checkpoints/blip2_stage2_qformer.safetensors

`lm` pre-trains the tiny GPT-2 (reference/blip2/stage2.py LMConfig) on the training captions' text alone
(nothing can be downloaded), as documents of 1..3 captions of one image in a row, so that it learns to use
what comes before its [BOS] (an LM trained on single captions from position 0 ignores the prompts: measured,
see the final report of issue 17). `qformer` starts from the stage-1 Q-Former, adds the projection, FREEZES the LM
and trains only the Q-Former and the projection on the captioning loss; the LM's tensor digest is taken
before and after and the run fails if they differ. Each checkpoint's JSON sidecar records the command,
seed, configs, vocabulary, dataset fingerprint, the files it was built from (sha256) and its metrics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.storage import file_sha256, read_json
from bench.training.loop import adamw, add_default_options, command_line, run_steps, save_weights, seeded, warmup_cosine
from bench.training.qformer import CHECKPOINT_DIR, CaptionSplit
from reference.blip2.losses import lm_loss
from reference.blip2.stage2 import Blip2Stage2, LMConfig, build_lm, tensor_digest, text_labels
from reference.blip2.tokenizer import WordTokenizer

LM_CHECKPOINT = CHECKPOINT_DIR / "blip2_stage2_lm.safetensors"
STAGE2_CHECKPOINT = CHECKPOINT_DIR / "blip2_stage2_qformer.safetensors"


@dataclass
class LMTrainConfig:
    steps: int = 3000
    batch_size: int = 64  # captions per step
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 100
    max_text_len: int = 22  # [BOS] words [EOS] pad
    seed: int = 0
    threads: int = 1
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 4
    dropout: float = 0.1
    captions_per_doc: int = 3  # a training document: 1..this many captions of ONE image, one after another
    max_positions: int = 72  # the LM's positions: the longest document, and Q prompts + one caption


@dataclass
class Stage2TrainConfig:
    steps: int = 2000
    batch_size: int = 32  # images per step, one random caption each
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    max_text_len: int = 22
    seed: int = 0
    threads: int = 1
    proj_lr_scale: float = 1.0  # the new projection's lr, as a multiple of the Q-Former's


def sample_captions(split: CaptionSplit, rows: list[int], gen: torch.Generator) -> list[str]:
    """One caption per image row, drawn with `gen`."""
    out = []
    for r in rows:
        caps = split.captions[split.image_ids[r]]
        out.append(caps[int(torch.randint(len(caps), (1,), generator=gen))])
    return out


def text_loss(lm: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The LM alone on [BOS] words [EOS] ... (PAD ignored)."""
    logits = lm(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return lm_loss(logits, text_labels(ids, mask), label_smoothing=0.0)


def documents(captions: list[list[str]], rows: list[int], tokenizer: WordTokenizer, max_text_len: int,
              per_doc: int, max_len: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One document per row: 1..per_doc distinct captions of image `row`, in random order, each
    [BOS] words [EOS], concatenated, cut at max_len. -> (ids (B, L), mask (B, L)), PAD-padded.

    A later caption repeats the colours and shapes of the earlier ones, so the LM learns to read its context
    before [BOS]: what stage 2's visual prompts need (an LM that only ever saw one caption from position 0
    ignores anything before its [BOS])."""
    docs = []
    for r in rows:
        caps = captions[r]
        k = int(torch.randint(1, min(per_doc, len(caps)) + 1, (1,), generator=gen))
        order = torch.randperm(len(caps), generator=gen)[:k].tolist()
        ids, mask = tokenizer.encode([caps[i] for i in order], max_text_len)
        docs.append(ids[mask.bool()][:max_len])  # the k captions without their padding
    out = torch.full((len(docs), max(len(d) for d in docs)), tokenizer.pad_id, dtype=torch.long)
    for row, d in enumerate(docs):
        out[row, : len(d)] = d
    return out, (out != tokenizer.pad_id).long()


@torch.no_grad()
def mean_text_loss(lm, tokenizer: WordTokenizer, texts: list[str], max_len: int, batch: int = 250) -> float:
    """Mean per-batch loss of the LM alone over single captions `texts`."""
    return float(np.mean([float(text_loss(lm, *tokenizer.encode(texts[s:s + batch], max_len)))
                          for s in range(0, len(texts), batch)]))


def train_lm(cfg: LMTrainConfig, out: Path = LM_CHECKPOINT, command: str = "", dataset=None,
             log_every: int = 200) -> dict[str, Any]:
    """Pre-train the tiny LM on the training captions; save weights + sidecar; returns the sidecar."""
    from bench.datasets.coco import read_captions
    from bench.datasets.synthetic import default_dataset

    torch.set_num_threads(cfg.threads)
    paths = dataset or default_dataset()
    by_image = list(read_captions(paths.captions_json("train")).values())
    train_caps = [c for caps in by_image for c in caps]
    val_caps = [c for caps in read_captions(paths.captions_json("val")).values() for c in caps]
    tokenizer = WordTokenizer.from_texts(train_caps)
    lm_cfg = LMConfig(vocab_size=tokenizer.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                      num_heads=cfg.num_heads, max_positions=cfg.max_positions, dropout=cfg.dropout, bos_token_id=tokenizer.cls_id,
                      eos_token_id=tokenizer.sep_id, pad_token_id=tokenizer.pad_id)
    seeded(cfg.seed)
    lm = build_lm(lm_cfg)
    gen = torch.Generator().manual_seed(cfg.seed)

    def step_loss(step: int) -> torch.Tensor:
        rows = torch.randint(len(by_image), (cfg.batch_size,), generator=gen).tolist()
        return text_loss(lm, *documents(by_image, rows, tokenizer, cfg.max_text_len, cfg.captions_per_doc,
                                        cfg.max_positions, gen))

    done = run_steps(lm, adamw(lm, cfg.lr, cfg.weight_decay), step_loss, 0, cfg.steps,
                     lambda s: warmup_cosine(s, cfg.steps, cfg.lr, cfg.warmup), grad_clip=1.0, log_every=log_every,
                     desc="train-stage2 lm", quiet=not log_every)
    lm.eval()
    tail = [r["loss"] for r in done.records[-100:]]
    meta = {"command": command or "vsbench train-stage2 lm", "seed": cfg.seed, "train_config": asdict(cfg),
            "lm_config": lm_cfg.to_dict(), "vocab": list(tokenizer.words), "dataset_fingerprint": paths.fingerprint,
            "train_captions": len(train_caps), "train_seconds": round(done.seconds, 1), "torch": torch.__version__,
            "lm_digest": tensor_digest(lm),
            "metrics_at_save": {"train_loss_last100": float(np.mean(tail)),
                                "val_loss_one_caption": mean_text_loss(lm, tokenizer, val_caps, cfg.max_text_len)}}
    tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    state = {f"lm.{k}": v for k, v in lm.state_dict().items() if not (tied and k == "lm_head.weight")}
    save_weights(out, state, meta)  # a tied head is not stored twice (safetensors refuses shared tensors)
    return meta


def load_lm(path: Path | None = None):
    """(frozen-ready LM in eval mode, tokenizer, sidecar) from a checkpoint written by train_lm."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else LM_CHECKPOINT
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"LM checkpoint {path} (and its .json) not found; create it with "
                                "`vsbench train-stage2 lm`")
    meta = read_json(path.with_suffix(".json"))
    lm = build_lm(LMConfig(**meta["lm_config"]))
    state = {k[3:]: v for k, v in load_file(str(path)).items() if k.startswith("lm.")}
    missing, unexpected = lm.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:  # the head is tied to the embeddings
        raise ValueError(f"{path}: missing {missing}, unexpected {unexpected} LM keys")
    return lm.eval(), WordTokenizer(tuple(meta["vocab"])), meta


def train_stage2(cfg: Stage2TrainConfig, lm_path: Path, init: Path, out: Path = STAGE2_CHECKPOINT,
                 command: str = "", dataset=None, log_every: int = 200) -> dict[str, Any]:
    """Stage 2 from the stage-1 checkpoint `init` with the frozen LM of `lm_path`; saves Q-Former +
    projection (+ the frozen image encoder); returns the sidecar. Raises if the LM changed."""
    from bench.datasets.synthetic import default_dataset
    from bench.training.qformer import load_checkpoint, load_split

    torch.set_num_threads(cfg.threads)
    paths = dataset or default_dataset()
    stage1, encoder, q_tokenizer, init_meta = load_checkpoint(init)
    lm, tokenizer, lm_meta = load_lm(lm_path)
    if tokenizer.words != q_tokenizer.words:
        raise ValueError(f"{lm_path} and {init}: the LM and the Q-Former were trained on different vocabularies")
    Q = stage1.config.qformer.num_query_tokens
    if lm.config.n_positions < Q + cfg.max_text_len:
        raise ValueError(f"{lm_path}: {lm.config.n_positions} positions, stage 2 needs {Q} prompts + {cfg.max_text_len}")
    split = load_split(paths, "train", encoder)
    seeded(cfg.seed)
    model = Blip2Stage2(stage1.qformer, lm)
    before = tensor_digest(model.lm)
    if before != lm_meta["lm_digest"]:
        raise ValueError(f"{lm_path}: its tensors do not match the digest in its sidecar")
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(split.image_ids)

    def step_loss(step: int) -> torch.Tensor:
        rows = torch.randperm(n, generator=gen)[: cfg.batch_size].tolist()
        ids, mask = tokenizer.encode(sample_captions(split, rows, gen), cfg.max_text_len)
        return model(split.features[rows], ids, mask)

    optimizer = adamw(model, cfg.lr, cfg.weight_decay,
                      lr_scale=lambda name: cfg.proj_lr_scale if name.startswith("proj.") else 1.0)
    done = run_steps(model, optimizer, step_loss, 0, cfg.steps, lambda s: warmup_cosine(s, cfg.steps, cfg.lr, cfg.warmup),
                     grad_clip=1.0, log_every=log_every, desc="train-stage2 qformer", quiet=not log_every)
    model.eval()
    after = tensor_digest(model.lm)
    if after != before:
        raise RuntimeError(f"the frozen LM changed during stage 2 (digest {before[:16]} -> {after[:16]})")
    tail = [r["loss"] for r in done.records[-100:]]
    meta = {"command": command or "vsbench train-stage2 qformer", "seed": cfg.seed, "train_config": asdict(cfg),
            "qformer_config": asdict(stage1.config.qformer), "encoder_config": init_meta["train_config"]["encoder"],
            "vocab": list(tokenizer.words), "dataset_fingerprint": paths.fingerprint, "train_images": n,
            "train_seconds": round(done.seconds, 1), "torch": torch.__version__,
            "lm": {"path": lm_path.name, "sha256": file_sha256(lm_path), "digest_before": before, "digest_after": after,
                   "command": lm_meta["command"]},
            "init_from": {"path": init.name, "sha256": file_sha256(init), "command": init_meta["command"]},
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "frozen_parameters": sum(p.numel() for p in model.lm.parameters()),
            "metrics_at_save": {"train_loss_last100": float(np.mean(tail))}}
    state = {f"qformer.{k}": v for k, v in model.qformer.state_dict().items()}
    state.update({f"proj.{k}": v for k, v in model.proj.state_dict().items()})
    state.update({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    save_weights(out, state, meta)
    return meta


def load_stage2(path: Path | None = None, lm_path: Path | None = None):
    """(Blip2Stage2 in eval mode, frozen image encoder, tokenizer, sidecar) from train_stage2's checkpoint and
    the LM it names (default: beside it)."""
    from safetensors.torch import load_file

    from reference.blip2.image_encoder import FrozenPatchEncoder, PatchEncoderConfig
    from reference.blip2.qformer import QFormer, QFormerConfig

    path = Path(path) if path is not None else STAGE2_CHECKPOINT
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise FileNotFoundError(f"stage-2 checkpoint {path} (and its .json) not found; create it with "
                                "`vsbench train-stage2 qformer`")
    meta = read_json(path.with_suffix(".json"))
    lm, tokenizer, _ = load_lm(lm_path if lm_path is not None else path.parent / meta["lm"]["path"])
    model = Blip2Stage2(QFormer(QFormerConfig(**meta["qformer_config"])), lm)
    state = load_file(str(path))
    for prefix, module in (("qformer.", model.qformer), ("proj.", model.proj)):
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    encoder = FrozenPatchEncoder(PatchEncoderConfig(**meta["encoder_config"]))
    encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    return model.eval(), encoder, tokenizer, meta


# -- the `vsbench train-stage2` command ------------------------------------------------------------

def configure_cli(parser) -> None:
    which = parser.add_subparsers(dest="part", required=True, help="lm: pre-train the LM; qformer: stage 2 itself")
    lm = which.add_parser("lm", help="pre-train the tiny causal LM on the training captions' text")
    q = which.add_parser("qformer", help="stage 2: train the Q-Former + projection in front of the frozen LM")
    q.add_argument("--lm", type=Path, default=LM_CHECKPOINT, help="the frozen LM (written by `train-stage2 lm`)")
    q.add_argument("--init", type=Path, default=CHECKPOINT_DIR / "qformer_tiny.safetensors",
                   help="the stage-1 Q-Former checkpoint to start from")
    for p, defaults, out in ((lm, LMTrainConfig(), LM_CHECKPOINT), (q, Stage2TrainConfig(), STAGE2_CHECKPOINT)):
        p.add_argument("--out", type=Path, default=out, help="weights path (.safetensors; .json beside it)")
        add_default_options(p, defaults, (("steps", int, "optimisation steps"), ("batch_size", int, "rows per step"),
                                 ("warmup", int, "linear learning-rate warm-up steps, then cosine decay"),
                                 ("seed", int, "seed of the init and the sampling"), ("threads", int, "torch CPU threads"),
                                 ("lr", float, "AdamW peak learning rate"), ("weight_decay", float, "AdamW weight decay")))


def run_cli(args) -> int:
    fields = {k: getattr(args, k) for k in ("steps", "batch_size", "warmup", "seed", "threads", "lr", "weight_decay")}
    command = command_line(getattr(args, "argv", None))
    if args.part == "lm":
        meta = train_lm(LMTrainConfig(**fields), out=args.out, command=command)
    else:
        meta = train_stage2(Stage2TrainConfig(**fields), args.lm, args.init, out=args.out, command=command)
    print(f"saved {args.out} ({meta['train_seconds']} s): {meta['metrics_at_save']}", flush=True)
    return 0
