"""CapFilt (BLIP §3.3): a captioner writes a synthetic caption per web image (nucleus sampling), a filter (the ITM
head) removes the texts it predicts as unmatched, from both the web texts and the synthetic ones, and the kept
pairs form the bootstrapped dataset a new model is pre-trained on.

The pieces are small and pure so that each can be checked alone:
- `match_probability(itm_logits)`: softmax of the 2-way ITM logits, column 1 (= match);
- `keep_mask(prob, threshold)`: a pair is kept iff its match probability >= threshold (0.5 = the ITM head's argmax);
- `bootstrap(web, synthetic, keep_web, keep_synthetic)`: the kept pairs, each with its own image id;
- `match_scores(model, ...)`: the filter's match probabilities, batched, without gradients;
- reference/blip/noise.py: the injected noise with a known answer and the filter's precision / recall on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from reference.albef.base import pair_itm_logits
from reference.blip.model import Blip


@dataclass(frozen=True)
class Caption:
    image_id: int
    text: str
    source: str = "web"  # "web" (the dataset's own text) or "synthetic" (written by the captioner)


def match_probability(itm_logits: torch.Tensor) -> torch.Tensor:
    """itm_logits (N, 2) -> (N,) float32 probability of 'match' (column 1)."""
    if itm_logits.dim() != 2 or itm_logits.shape[1] != 2:
        raise ValueError(f"itm_logits must be (N, 2), got shape {tuple(itm_logits.shape)}")
    return torch.softmax(itm_logits.float(), dim=1)[:, 1]


def keep_mask(match_prob: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(N,) bool: True where the pair is kept (match probability >= threshold)."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    return torch.as_tensor(match_prob).reshape(-1) >= threshold


def bootstrap(web: Sequence[Caption], synthetic: Sequence[Caption], keep_web: Sequence[bool],
              keep_synthetic: Sequence[bool]) -> list[Caption]:
    """The bootstrapped dataset: the kept web pairs then the kept synthetic pairs, each in its input order."""
    if len(web) != len(keep_web) or len(synthetic) != len(keep_synthetic):
        raise ValueError(f"{len(web)} web captions with {len(keep_web)} flags, {len(synthetic)} synthetic with "
                         f"{len(keep_synthetic)} flags")
    kept = [c for c, k in zip(web, keep_web) if bool(k)]
    return kept + [c for c, k in zip(synthetic, keep_synthetic) if bool(k)]


@torch.no_grad()
def match_scores(model: Blip, patch_feats: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 image_index: torch.Tensor | None = None, batch_size: int = 64) -> torch.Tensor:
    """The filter's match probability (N,) of the pairs (image image_index[n], text n); patch_feats (Ni, P, W), ids /
    mask (N, T); image_index (N,) long, default arange(N) (then Ni = N). Each image is encoded once."""
    N = input_ids.shape[0]
    index = torch.arange(N) if image_index is None else torch.as_tensor(image_index).reshape(-1).long()
    if attention_mask.shape != input_ids.shape or index.shape[0] != N:
        raise ValueError(f"{N} texts, attention_mask {tuple(attention_mask.shape)}, {index.shape[0]} image indices")
    if N and not 0 <= int(index.min()) <= int(index.max()) < patch_feats.shape[0]:
        raise ValueError(f"image_index must lie in [0, {patch_feats.shape[0]}), got [{int(index.min())}, "
                         f"{int(index.max())}]")
    if N == 0:
        return torch.zeros(0)
    embeds = torch.cat([model.image_pass(patch_feats[s:s + batch_size])[0]
                        for s in range(0, patch_feats.shape[0], batch_size)])
    return match_probability(pair_itm_logits(model, embeds, index, input_ids, attention_mask, batch_size))
