"""ALBEF's masked language modelling on the image-grounded text encoder, as pure functions.

Masking (BERT's recipe): each real, non-special token is selected with probability 0.15; a selected token becomes
[MASK] with probability 0.8, a random WORD with probability 0.1, and stays unchanged otherwise. Labels hold the
original id at the selected positions and -100 everywhere else. Special tokens ([PAD], [CLS], [SEP], [MASK], ...)
and padding are never selected. The input tensor is never written to.

The loss is the cross-entropy at the selected positions, mixed with momentum distillation:
(1 - alpha) * CE(logits, labels) + alpha * H(soft targets, softmax(logits)) over the same positions, where the soft
targets are the momentum model's softmax at those positions. A batch in which no token is selected (short captions
make this common) has loss 0, not NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F


@dataclass
class MLMConfig:
    probability: float = 0.15  # chance that a real, non-special token is selected
    mask_ratio: float = 0.8  # of the selected: replaced by [MASK]
    random_ratio: float = 0.1  # of the selected: replaced by a random word (the rest stay unchanged)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must lie in [0, 1], got {self.probability}")
        if self.mask_ratio < 0 or self.random_ratio < 0 or self.mask_ratio + self.random_ratio > 1:
            raise ValueError(f"mask_ratio {self.mask_ratio} and random_ratio {self.random_ratio} must be >= 0 and "
                             f"sum to at most 1")


def word_ids(vocab_size: int, special_ids: Iterable[int], device=None) -> torch.Tensor:
    """Ids in [0, vocab_size) that are not special: the pool random replacements are drawn from."""
    special = {int(i) for i in special_ids}
    words = [i for i in range(vocab_size) if i not in special]
    if not words:
        raise ValueError(f"no word id left in a vocabulary of {vocab_size} once the specials {sorted(special)} are out")
    return torch.tensor(words, dtype=torch.long, device=device)


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Iterable[int], mask_token_id: int,
                vocab_size: int, config: MLMConfig | None = None, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked ids (B, T), labels (B, T)) from input_ids / attention_mask (B, T); input_ids is left unchanged."""
    config = config or MLMConfig()
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(f"input_ids and attention_mask must both be (B, T), got {tuple(input_ids.shape)} and "
                         f"{tuple(attention_mask.shape)}")
    special = torch.tensor(sorted({int(i) for i in special_ids} | {int(mask_token_id)}), dtype=input_ids.dtype,
                           device=input_ids.device)
    eligible = attention_mask.bool() & ~torch.isin(input_ids, special)

    def draw(p: float) -> torch.Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < p

    selected = eligible & draw(config.probability)
    to_mask = selected & draw(config.mask_ratio)
    rest = 1.0 - config.mask_ratio
    to_random = selected & ~to_mask & draw(config.random_ratio / rest if rest > 0 else 0.0)
    pool = word_ids(vocab_size, special.tolist(), input_ids.device)
    random_words = pool[torch.randint(len(pool), input_ids.shape, generator=generator, device=input_ids.device)]
    masked = torch.where(to_mask, torch.full_like(input_ids, mask_token_id), input_ids)
    masked = torch.where(to_random, random_words, masked)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor, soft_targets: torch.Tensor | None = None,
             alpha: float = 0.0) -> torch.Tensor:
    """logits (B, T, V), labels (B, T) with -100 ignored, soft_targets (B, T, V) or None. float32 scalar; 0 (with a
    graph, zero gradients) when no position is labelled."""
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (B, T, V) and labels (B, T), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    selected = labels != -100
    if not bool(selected.any()):
        return logits.float().sum() * 0.0
    picked = logits[selected].float()  # (M, V)
    loss = F.cross_entropy(picked, labels[selected])
    if soft_targets is not None and alpha > 0:
        if soft_targets.shape != logits.shape:
            raise ValueError(f"soft_targets {tuple(soft_targets.shape)} must match logits {tuple(logits.shape)}")
        distill = -(soft_targets[selected].float() * F.log_softmax(picked, dim=-1)).sum(dim=-1).mean()
        loss = (1 - alpha) * loss + alpha * distill
    return loss


def masked_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of the labelled positions (labels != -100) whose argmax logit is the label: float32 scalar; NaN when
    no position is labelled. logits (B, T, V), labels (B, T)."""
    selected = labels != -100
    if not bool(selected.any()):
        return torch.tensor(float("nan"))
    return (logits[selected].argmax(dim=-1) == labels[selected]).float().mean()
