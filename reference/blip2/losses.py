"""Stage-1 losses of BLIP-2 as pure functions (ITC, ITM, ITG) and the cross-process feature gather.

All losses are computed in float32 whatever the model's dtype: a label-smoothed cross-entropy over a
30522-word vocabulary sums ~30522 log-probabilities, which overflows float16 to inf (LAVIS #267).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

TEMPERATURE_RANGE = (0.001, 0.5)  # ITC temperature clamp of the public code


def distributed_world() -> int:
    """World size when a process group is initialised, else 1 (single-process runs need no setup: LAVIS #537)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (B, ...) from every process along dim 0 with gradients flowing to the local slice;
    without an initialised process group (or with one process) returns x itself."""
    if distributed_world() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def itc_similarity(image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
    """Image-text similarity (Bi, Bt) = max over the queries of <query feature, text feature>.

    image_feats (Bi, Q, E) and text_feats (Bt, E), both L2-normalised; shapes are kept at Bi = 1 or Bt = 1.
    """
    if image_feats.dim() != 3 or text_feats.dim() != 2 or image_feats.shape[-1] != text_feats.shape[-1]:
        raise ValueError(f"expected image_feats (Bi, Q, E) and text_feats (Bt, E), got "
                         f"{tuple(image_feats.shape)} and {tuple(text_feats.shape)}")
    per_query = torch.einsum("iqe,te->itq", image_feats.float(), text_feats.float())  # (Bi, Bt, Q)
    return per_query.max(dim=-1).values  # (Bi, Bt)


def clamp_temperature(temp: torch.Tensor | float) -> torch.Tensor:
    """The ITC temperature clamped to [0.001, 0.5] (NaN becomes the upper bound), gradient-preserving."""
    temp = torch.as_tensor(temp, dtype=torch.float32)
    temp = torch.nan_to_num(temp.float(), nan=TEMPERATURE_RANGE[1])
    return temp.clamp(*TEMPERATURE_RANGE)


def positive_targets(row_ids: torch.Tensor, col_ids: torch.Tensor) -> torch.Tensor:
    """Soft targets (R, C): uniform over the columns whose id equals the row's (captions of one image)."""
    pos = (row_ids.reshape(-1, 1) == col_ids.reshape(1, -1)).float()
    return pos / pos.sum(dim=1, keepdim=True).clamp_min(1.0)


def itc_loss(image_feats: torch.Tensor, text_feats: torch.Tensor, temp: torch.Tensor | float,
             image_ids: torch.Tensor | None = None, label_smoothing: float = 0.1) -> torch.Tensor:
    """Symmetric image-text contrastive loss, in-batch negatives gathered across processes.

    image_feats (B, Q, E), text_feats (B, E) of this process, L2-normalised; text b belongs to image b.
    image_ids (B,): captions of the same image are positives of each other (default: all distinct).
    The temperature is clamped to [0.001, 0.5]. Returns a float32 scalar.
    """
    B = image_feats.shape[0]
    if text_feats.shape[0] != B:
        raise ValueError(f"{B} images but {text_feats.shape[0]} texts: ITC pairs text b with image b")
    if image_ids is None:
        image_ids = torch.arange(B, device=image_feats.device) + B * _rank()
    image_ids = torch.as_tensor(image_ids, device=image_feats.device).reshape(-1)
    all_image = gather_features(image_feats)  # (W*B, Q, E)
    all_text = gather_features(text_feats)  # (W*B, E)
    all_ids = gather_features(image_ids)  # (W*B,)
    t = clamp_temperature(temp).to(image_feats.device)
    sim_i2t = itc_similarity(image_feats, all_text) / t  # (B, W*B)
    sim_t2i = itc_similarity(all_image, text_feats).t() / t  # (B, W*B)
    targets = positive_targets(image_ids, all_ids)  # (B, W*B)
    return (F.cross_entropy(sim_i2t, targets, label_smoothing=label_smoothing)
            + F.cross_entropy(sim_t2i, targets, label_smoothing=label_smoothing)) / 2


def _rank() -> int:
    return dist.get_rank() if distributed_world() > 1 else 0


def itm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """2-way image-text matching loss; logits (N, 2), labels (N,) 1 = matching pair. float32 scalar."""
    return F.cross_entropy(logits.float(), labels.long())


def decoder_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor, dec_token_id: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """ITG inputs and labels from [CLS] text [SEP] pad...: the first token becomes [DEC]; labels are the
    input ids with padding set to -100 ([SEP] stays, as the end target). Returns (ids (B, T), labels (B, T))."""
    ids = input_ids.clone()
    ids[:, 0] = dec_token_id
    labels = ids.masked_fill(attention_mask == 0, -100)
    return ids, labels


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.1) -> torch.Tensor:
    """Next-token loss: logits (B, T, V) at text positions, labels (B, T) with -100 ignored; position t
    predicts label t+1. Computed in float32. Returns a scalar (0 when no label is left)."""
    shifted = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    targets = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    if (targets != -100).sum() == 0:
        return shifted.sum() * 0.0
    return F.cross_entropy(shifted, targets, ignore_index=-100, label_smoothing=label_smoothing)
