"""ALBEF's image-text contrastive loss with a momentum queue and momentum distillation (Li et al., 2021, §3.2-3.3).

The columns of each similarity row are the momentum encoders' keys of the current batch followed by the queue's
keys: for an image, the B batch texts then the n queued texts (likewise for a text). With temperature t:

    s_i2t = image_feat @ [text_feat_m ; queue_text]^T / t        (B, B + n)
    s_t2i = text_feat @ [image_feat_m ; queue_image]^T / t       (B, B + n)
    y     = uniform over the columns whose image id equals the row's (the row's own pair, other captions of the same
            image in the batch, and captions of that image still in the queue: positives, never negatives)
    q     = softmax(s_m), the same similarities computed from the momentum features (batch + queue columns)
    loss  = mean over rows of  H(alpha * q + (1 - alpha) * y,  softmax(s)),  averaged over the two directions

alpha = 0 is plain ITC with the queue as extra negatives; with an empty queue and distinct ids it is the in-batch
symmetric InfoNCE. The loss depends on the queue as a SET: permuting its keys (with their ids) leaves it unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.blip2.losses import positive_targets


def _check(name: str, x: torch.Tensor, rows: int | None, E: int) -> None:
    if x.dim() != 2 or x.shape[1] != E or (rows is not None and x.shape[0] != rows):
        want = f"({rows if rows is not None else 'n'}, {E})"
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")


def column_ids(image_ids: torch.Tensor | None, queue_ids: torch.Tensor, B: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row ids (B,), column ids (B + n,)). Without image ids every batch pair is distinct and no queue key is a
    positive of any row (the queue's ids are replaced by ids no row has)."""
    n = queue_ids.shape[0]
    if image_ids is None:
        rows = torch.arange(B, device=device)
        return rows, torch.cat([rows, -1 - torch.arange(n, device=device)])
    rows = torch.as_tensor(image_ids, device=device).reshape(-1).long()
    if rows.shape[0] != B:
        raise ValueError(f"image_ids has {rows.shape[0]} entries for a batch of {B}")
    return rows, torch.cat([rows, queue_ids.to(device).long()])


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_j targets_ij log softmax(logits)_ij; logits, targets (R, C)."""
    return -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()


def itc_queue_loss(image_feat: torch.Tensor, text_feat: torch.Tensor, image_feat_m: torch.Tensor,
                   text_feat_m: torch.Tensor, queue_image: torch.Tensor, queue_text: torch.Tensor,
                   queue_ids: torch.Tensor, image_ids: torch.Tensor | None, temp: torch.Tensor | float,
                   alpha: float = 0.0) -> torch.Tensor:
    """The symmetric ITC loss above, a float32 scalar.

    image_feat, text_feat (B, E): online features, L2-normalised (gradients flow through them); image_feat_m,
    text_feat_m (B, E): momentum features of the same batch; queue_image, queue_text (n, E), queue_ids (n,): the
    queue's keys (n may be 0); image_ids (B,) or None; temp: the temperature, used as given (positive);
    alpha in [0, 1]: weight of the momentum-distilled soft targets.
    """
    B, E = image_feat.shape[0], image_feat.shape[-1]
    for name, x, rows in (("image_feat", image_feat, B), ("text_feat", text_feat, B), ("image_feat_m", image_feat_m, B),
                          ("text_feat_m", text_feat_m, B), ("queue_image", queue_image, None),
                          ("queue_text", queue_text, None)):
        _check(name, x, rows, E)
    if queue_image.shape[0] != queue_text.shape[0] or queue_ids.reshape(-1).shape[0] != queue_image.shape[0]:
        raise ValueError(f"queue columns differ in length: image {queue_image.shape[0]}, text {queue_text.shape[0]}, "
                         f"ids {queue_ids.reshape(-1).shape[0]}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    temp = torch.as_tensor(temp, dtype=torch.float32, device=image_feat.device)
    if not bool(temp > 0):
        raise ValueError(f"temperature must be positive, got {float(temp)}")
    rows, cols = column_ids(image_ids, queue_ids.reshape(-1), B, image_feat.device)
    targets = positive_targets(rows, cols)  # (B, B + n)
    with torch.no_grad():
        text_cols = torch.cat([text_feat_m, queue_text.to(text_feat_m.dtype)]).float()  # (B + n, E)
        image_cols = torch.cat([image_feat_m, queue_image.to(image_feat_m.dtype)]).float()  # (B + n, E)
        if alpha > 0:
            t_i2t = alpha * F.softmax(image_feat_m.float() @ text_cols.t() / temp, dim=1) + (1 - alpha) * targets
            t_t2i = alpha * F.softmax(text_feat_m.float() @ image_cols.t() / temp, dim=1) + (1 - alpha) * targets
        else:
            t_i2t = t_t2i = targets
    sim_i2t = image_feat.float() @ text_cols.t() / temp  # (B, B + n)
    sim_t2i = text_feat.float() @ image_cols.t() / temp  # (B, B + n)
    return (soft_cross_entropy(sim_i2t, t_i2t) + soft_cross_entropy(sim_t2i, t_t2i)) / 2
