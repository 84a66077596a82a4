"""Hard-negative sampling for ITM (BLIP-2 stage 1), robust where the public code's `torch.multinomial`
fails (LAVIS #107, BLIP #76): NaN / inf similarities, rows whose negatives all underflow to zero weight in
half precision, batches with several captions of one image, and a batch of one.
"""

from __future__ import annotations

import torch


def negative_weights(sim: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Sampling weights (R, C) float32 over the negatives of each row: softmax(sim) restricted to the
    non-positive columns, computed in float32 after replacing NaN by the row's lowest weight and +-inf by the
    largest / smallest finite float. A row whose negatives are all NaN / -inf gets uniform weights over them;
    a row without any negative is all zero. Never modifies `sim`.

    sim: (R, C) any float dtype; positives: (R, C) bool, True where column c is a positive of row r.
    """
    if sim.shape != positives.shape:
        raise ValueError(f"similarity {tuple(sim.shape)} and positives {tuple(positives.shape)} differ in shape")
    x = sim.detach().float()
    finite_max = torch.finfo(torch.float32).max
    x = torch.nan_to_num(x, nan=float("-inf"), posinf=finite_max, neginf=float("-inf"))  # a copy
    negatives = ~positives.bool()
    x = x.masked_fill(~negatives, float("-inf"))
    usable = torch.isfinite(x).any(dim=1, keepdim=True)  # (R, 1): some negative has a finite similarity
    x = torch.where(usable, x, torch.zeros_like(x))  # all-NaN/-inf rows: uniform over their negatives
    weights = torch.softmax(x, dim=1).masked_fill(~negatives, 0.0)
    return torch.where(usable, weights, negatives.float())


def sample_negatives(sim: torch.Tensor, positives: torch.Tensor, generator: torch.Generator | None = None,
                     hard: float = 1.0) -> torch.Tensor:
    """One negative column per row (R,) long, drawn with probability softmax(sim) over the negatives (hard = 1,
    the paper), uniformly over them (hard = 0: random negatives), or from the mixture
    hard * softmax + (1 - hard) * uniform in between; -1 for a row that has no negative at all (every
    column is a positive of it)."""
    if not 0.0 <= hard <= 1.0:
        raise ValueError(f"hard={hard!r}: the share of hard negatives must lie in [0, 1]")
    weights = negative_weights(sim, positives)
    if hard < 1.0:
        uniform = (~positives.bool()).float()
        uniform = uniform / uniform.sum(dim=1, keepdim=True).clamp_min(1.0)
        weights = hard * weights + (1.0 - hard) * uniform
    has_negative = weights.sum(dim=1) > 0
    out = torch.full((sim.shape[0],), -1, dtype=torch.long, device=sim.device)
    if has_negative.any():
        draws = torch.multinomial(weights[has_negative], 1, generator=generator).squeeze(1)  # (R',)
        out[has_negative] = draws
    return out


def sample_hard_negatives(sim_i2t: torch.Tensor, image_ids: torch.Tensor, text_image_ids: torch.Tensor | None = None,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ITM hard negatives from the ITC similarities.

    sim_i2t: (Bi, Bt) image-to-text similarity; image_ids: (Bi,) the id of each image; text_image_ids: (Bt,)
    the id of the image each text describes (default: image_ids, i.e. text j belongs to image j).
    Returns (negative text for each image (Bi,), negative image for each text (Bt,)), long; a text (image)
    with the same id is never drawn; -1 where no negative exists. The inputs are left unchanged.
    """
    if sim_i2t.dim() != 2:
        raise ValueError(f"sim_i2t must be (num_images, num_texts), got shape {tuple(sim_i2t.shape)}")
    image_ids = torch.as_tensor(image_ids, device=sim_i2t.device).reshape(-1)
    text_image_ids = image_ids if text_image_ids is None else torch.as_tensor(text_image_ids,
                                                                              device=sim_i2t.device).reshape(-1)
    if image_ids.numel() != sim_i2t.shape[0] or text_image_ids.numel() != sim_i2t.shape[1]:
        raise ValueError(f"ids ({image_ids.numel()} images, {text_image_ids.numel()} texts) do not match the "
                         f"similarity shape {tuple(sim_i2t.shape)}")
    positives = image_ids[:, None] == text_image_ids[None, :]  # (Bi, Bt)
    neg_text = sample_negatives(sim_i2t, positives, generator)
    neg_image = sample_negatives(sim_i2t.t(), positives.t(), generator)
    return neg_text, neg_image
