"""Which tokens are supervised, and the masked next-token loss.

The model reads tokens[:, :-1] and predicts tokens[:, 1:]. The prompt (task token, plus the box
prompt for segmentation and keypoints) is given, never predicted: a target position j (predicting
token j+1) is supervised iff j+1 >= the row's prompt length and token j+1 is not PAD. For detection
and captioning the prompt is the task token alone, so the loss is exactly the single-task Pix2Seq
loss (cross-entropy on every token after BOS, PAD ignored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.pix2seqv2.vocab import TaskVocabulary


def prompt_lengths(vocab: TaskVocabulary, tokens: torch.Tensor) -> torch.Tensor:
    """(B, T) rows -> (B,) prompt length read from each row's first token (1 if it is no task token)."""
    first = tokens[:, 0]
    lengths = torch.ones_like(first)
    for task in ("segmentation", "keypoint"):
        lengths = torch.where(first == vocab.task_token(task), vocab.prompt_length(task), lengths)
    return lengths


def target_mask(vocab: TaskVocabulary, tokens: torch.Tensor) -> torch.Tensor:
    """(B, T) long rows -> (B, T-1) bool: True where the target tokens[:, 1:] is supervised."""
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must have shape (B, T) with T >= 2, got {tuple(tokens.shape)}")
    targets = tokens[:, 1:]  # (B, T-1)
    position = torch.arange(1, tokens.shape[1], device=tokens.device)  # index of each target token
    return (position[None, :] >= prompt_lengths(vocab, tokens)[:, None]) & (targets != vocab.pad)


def sequence_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over supervised targets.

    logits: (B, T-1, V) predictions for tokens[:, 1:]; tokens: (B, T); mask: (B, T-1) bool.
    """
    targets = tokens[:, 1:]
    if logits.shape[:2] != targets.shape or mask.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, tokens {tuple(tokens.shape)} and mask "
                         f"{tuple(mask.shape)} disagree: expected (B, T-1, V), (B, T), (B, T-1)")
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             reduction="none", label_smoothing=label_smoothing)  # (B*(T-1),)
    weights = mask.reshape(-1).to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp_min(1.0)
