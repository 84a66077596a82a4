"""ITM diagnostics and the hard-negative ablation of the tiny Q-Former (issue 17, "an ITM head that works").

`measure(checkpoint)` scores a checkpoint on the generated validation split:
- ITM cross-entropy on 1 positive : 2 negatives (the training ratio; always predicting the prior scores
  ln 3 - (2/3) ln 2 = 0.637), negatives drawn from the ITC similarities as training does ("hard") or
  uniformly ("random"); ROC AUC of the match margin (logit 1 - logit 0) of positives vs each negative kind;
- Recall@1 both directions for ITC alone, ITM alone on the ITC top-16 and ITM + ITC on the ITC top-16
  (the retrieval benchmark's three variants).

    python -m bench.training.itm_ablation --out /tmp/train/abl/random.safetensors --itm-hard 0 --steps 2400
    python -m bench.training.itm_ablation --measure bench/checkpoints/qformer_tiny.safetensors

trains one variant (TrainConfig fields as options) and/or measures it; the JSON goes beside the weights
as <out>.itm.json.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.training.qformer import CHECKPOINT_DIR, TrainConfig, load_checkpoint, load_split, train

RECORD = CHECKPOINT_DIR / "qformer_itm_ablation.json"
RECORD_WHAT = ("ITM hard-negative ablation of the tiny Q-Former (bench/training/itm_ablation.py --measure on the "
               "generated validation split)")
PRIOR_LOSS = math.log(3) - 2 / 3 * math.log(2)  # 1 positive : 2 negatives, a constant 1/3 match probability


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """P(a positive's score > a negative's), ties count half (ROC AUC)."""
    a, b = pos[:, None], neg[None, :]
    return float(((a > b).float() + 0.5 * (a == b).float()).mean())


@torch.no_grad()
def itm_scores(model, split, tokenizer, max_text_len: int, draws: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    """Match logits (M, 2) of every caption with its image ("positive") and of each image with `draws` hard
    and `draws` random negative captions of the split."""
    from reference.blip2.losses import clamp_temperature, itc_similarity
    from reference.blip2.sampler import sample_negatives

    texts, owner = [], []
    for row, image_id in enumerate(split.image_ids):
        texts += split.captions[image_id]
        owner += [row] * len(split.captions[image_id])
    ids, mask = tokenizer.encode(texts, max_text_len)
    owner_t = torch.tensor(owner)
    n = len(split.image_ids)
    sim = itc_similarity(model.image_features(split.features), model.text_features(ids, mask))
    sim = sim / clamp_temperature(model.temp)  # (Ni, Nt), as training samples from it
    positives = owner_t[None, :] == torch.arange(n)[:, None]
    gen = torch.Generator().manual_seed(seed)

    def logits(images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.itm_logits(split.features[images[s:s + 256]], ids[captions[s:s + 256]],
                                           mask[captions[s:s + 256]]) for s in range(0, len(images), 256)])

    rows = torch.arange(n).repeat_interleave(draws)
    out = {"positive": logits(owner_t, torch.arange(len(texts)))}
    for name, hard in (("hard", 1.0), ("random", 0.0)):
        drawn = torch.stack([sample_negatives(sim, positives, gen, hard) for _ in range(draws)], 1).reshape(-1)
        out[name] = logits(rows, drawn)
    return out


def itm_metrics(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    margin = {k: v[:, 1] - v[:, 0] for k, v in scores.items()}
    out = {}
    for kind in ("hard", "random"):
        pos, neg = scores["positive"], scores[kind]
        k = min(len(pos), len(neg) // 2)  # 1 positive : 2 negatives
        batch = torch.cat([pos[:k], neg[:2 * k]])
        labels = torch.cat([torch.ones(k), torch.zeros(2 * k)]).long()
        out[f"itm_loss_1pos_2{kind}"] = float(F.cross_entropy(batch.float(), labels))
        out[f"auc_positive_vs_{kind}"] = auc(margin["positive"], margin[kind])
    out["prior_loss"] = PRIOR_LOSS
    return out


def measure(checkpoint: Path, k: int = 16) -> dict:
    """ITM losses / AUCs and R@1 of ITC, ITM and ITM + ITC re-ranking on the generated validation split."""
    from bench.benchmarks.retrieval import retrieval_scores
    from bench.datasets.synthetic import default_dataset
    from reference.blip2.retrieval import recall_from_ranks, retrieval_ranks

    model, encoder, tokenizer, meta = load_checkpoint(checkpoint)
    split = load_split(default_dataset(), "val", encoder)
    max_len = meta["train_config"]["max_text_len"]
    out = {"checkpoint": str(checkpoint), "train_metrics": meta["metrics_at_save"],
           "train_seconds": meta["train_seconds"], **itm_metrics(itm_scores(model, split, tokenizer, max_len))}
    sim, combined, itm_only, owner = retrieval_scores(model, split, tokenizer, "cpu", k, max_len)[:4]
    for name, (i2t, t2i) in {"itc": (sim, sim.t()), "itm": tuple(itm_only), "itm_itc": combined}.items():
        rec = recall_from_ranks(*retrieval_ranks(i2t, t2i, owner))
        out[f"{name}_i2t_R@1"], out[f"{name}_t2i_R@1"] = rec["i2t_R@1"], rec["t2i_R@1"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="train a variant and write its weights here")
    parser.add_argument("--measure", type=Path, help="only measure this checkpoint")
    parser.add_argument("--record", default=None,
                        help=f"also store the measurement as this variant in bench/checkpoints/{RECORD.name}")
    for f in fields(TrainConfig):
        if f.type in ("int", "float", "str"):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type={"int": int, "float": float, "str": str}[f.type],
                                default=None)
    args = parser.parse_args(argv)
    if (args.out is None) == (args.measure is None):
        parser.error("give exactly one of --out (train, then measure) and --measure")
    path = args.measure
    if args.out is not None:
        overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
                     if f.type in ("int", "float", "str") and getattr(args, f.name) is not None}
        from bench.training.loop import command_line

        train(TrainConfig(**overrides), out=args.out,
              command=command_line(argv).replace("vsbench ", "python -m bench.training.itm_ablation ", 1))
        path = args.out
    result = measure(path)
    path.with_suffix(".itm.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.record:
        record_variant(args.record, result)
    return 0


def record_variant(name: str, result: dict, path: Path | None = None) -> None:
    """Store one measured variant (its checkpoint's recorded command and `measure`'s result) in the ablation
    record that reports/retrieval.md shows."""
    path = path or RECORD
    record = json.loads(path.read_text()) if path.is_file() else {"what": RECORD_WHAT, "variants": {}}
    meta = json.loads(Path(result["checkpoint"]).with_suffix(".json").read_text())
    record["variants"][name] = {"command": meta["command"],
                                "measured": {k: v for k, v in result.items() if k != "checkpoint"}}
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
