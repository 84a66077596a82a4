"""What ALBEF and BLIP share: a learnable temperature, momentum encoders, the feature queue, the ITC step with the
queue and momentum distillation, and the ITM hard-negative pairs (BLIP takes all of these from ALBEF).

A subclass provides `online_modules()` (the modules the momentum copy follows, by name: at least image_encoder,
vision_proj and text_proj) and `unimodal_text(modules, input_ids, attention_mask)` (its unimodal text hidden
states), and calls `_init_contrast` once its modules exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reference.albef.contrastive import itc_queue_loss
from reference.albef.momentum import ema_update_, momentum_copy
from reference.albef.queue import FeatureQueue, FeatureQueueConfig
from reference.blip2.losses import clamp_temperature, gather_features
from reference.blip2.sampler import sample_hard_negatives


@dataclass
class ContrastStep:
    """The ITC part of one training step and the features the other losses reuse."""

    loss: torch.Tensor
    ids: torch.Tensor  # (B,) image ids (arange when none were given)
    temp: torch.Tensor
    image_embeds: torch.Tensor  # (B, 1+N, D) online image tokens
    image_feat: torch.Tensor  # (B, E)
    text_hidden: torch.Tensor  # (B, T, C) online unimodal text hidden states
    text_feat: torch.Tensor  # (B, E)
    image_embeds_m: torch.Tensor  # momentum image tokens
    image_feat_m: torch.Tensor
    text_feat_m: torch.Tensor


class MomentumContrastModel(nn.Module):
    def _init_contrast(self, embed_dim: int, temp_init: float, momentum: float, queue_size: int,
                       heads: tuple[nn.Module, ...] = (), std: float = 0.02) -> None:
        """The temperature, the momentum copy and the queue; `heads` (Linear layers) start as normal(std), bias 0."""
        for module in heads:
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        self.momentum_coefficient = momentum
        self.temp = nn.Parameter(torch.tensor(float(temp_init)))
        self.momentum = momentum_copy(self.online_modules())
        self.queue = FeatureQueue(FeatureQueueConfig(queue_size, embed_dim))

    def online_modules(self) -> nn.ModuleDict:
        raise NotImplementedError

    def unimodal_text(self, modules: nn.ModuleDict, input_ids, attention_mask) -> torch.Tensor:
        raise NotImplementedError

    def _modules_of(self, momentum: bool):
        return self.momentum if momentum else self.online_modules()

    def image_pass(self, patch_feats: torch.Tensor, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(image tokens (B, 1+N, D), normalised [CLS] ITC feature (B, E)); momentum=True: the momentum copy's."""
        m = self._modules_of(momentum)
        embeds = m["image_encoder"](patch_feats)
        return embeds, F.normalize(m["vision_proj"](embeds[:, 0]), dim=-1)

    def text_pass(self, input_ids, attention_mask, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(unimodal text hidden states (B, T, C), normalised [CLS] ITC feature (B, E))."""
        m = self._modules_of(momentum)
        hidden = self.unimodal_text(m, input_ids, attention_mask)
        return hidden, F.normalize(m["text_proj"](hidden[:, 0]), dim=-1)

    def momentum_parameters(self) -> list[nn.Parameter]:
        return list(self.momentum.parameters())

    @torch.no_grad()
    def update_momentum(self) -> None:
        ema_update_(self.online_modules(), self.momentum, self.momentum_coefficient)

    def temperature(self) -> torch.Tensor:
        """The learnable temperature clamped to [0.001, 0.5], gradient-preserving."""
        return clamp_temperature(self.temp)

    def contrast(self, patch_feats, input_ids, attention_mask, image_ids, alpha: float, update_state: bool
                 ) -> ContrastStep:
        """Online and momentum passes and the ITC loss against [batch ; queue] (the queue is not updated here)."""
        B = patch_feats.shape[0]
        if input_ids.shape[0] != B or attention_mask.shape != input_ids.shape:
            raise ValueError(f"{B} images but input_ids {tuple(input_ids.shape)} / attention_mask "
                             f"{tuple(attention_mask.shape)}")
        ids = torch.arange(B, device=patch_feats.device) if image_ids is None else \
            torch.as_tensor(image_ids, device=patch_feats.device).reshape(-1).long()
        temp = self.temperature()
        image_embeds, image_feat = self.image_pass(patch_feats)
        text_hidden, text_feat = self.text_pass(input_ids, attention_mask)
        with torch.no_grad():
            if update_state:
                self.update_momentum()
            image_embeds_m, image_feat_m = self.image_pass(patch_feats, momentum=True)
            _, text_feat_m = self.text_pass(input_ids, attention_mask, momentum=True)
            queue_image, queue_text, queue_ids = self.queue.contents()
        loss = itc_queue_loss(image_feat, text_feat, image_feat_m, text_feat_m, queue_image, queue_text, queue_ids,
                              ids if image_ids is not None else None, temp, alpha)
        return ContrastStep(loss, ids, temp, image_embeds, image_feat, text_hidden, text_feat, image_embeds_m,
                            image_feat_m, text_feat_m)

    @torch.no_grad()
    def enqueue(self, step: ContrastStep) -> None:
        """The batch's momentum keys (gathered across processes when there are several) join the queue."""
        self.queue.enqueue(gather_features(step.image_feat_m), gather_features(step.text_feat_m),
                           gather_features(step.ids))


def hard_negative_pairs(step: ContrastStep, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ITM pairs (image index, text index, label) (M,): the B positives (b, b), then for each text a negative image
    and for each image a negative text, drawn with probability softmax(sim) from the detached in-batch ITC
    similarities; captions of the same image are never drawn, and a row without any negative adds none."""
    B, device = step.ids.shape[0], step.ids.device
    with torch.no_grad():
        sim_i2t = step.image_feat.float() @ step.text_feat.float().t() / step.temp  # (B, B)
        neg_text, neg_image = sample_hard_negatives(sim_i2t, step.ids, generator=generator)
    t_rows = (neg_image >= 0).nonzero().squeeze(1)  # texts that got a negative image
    i_rows = (neg_text >= 0).nonzero().squeeze(1)  # images that got a negative text
    pos = torch.arange(B, device=device)
    image_idx = torch.cat([pos, neg_image[t_rows], i_rows])
    text_idx = torch.cat([pos, t_rows, neg_text[i_rows]])
    labels = torch.cat([torch.ones(B), torch.zeros(len(t_rows) + len(i_rows))]).long().to(device)
    return image_idx, text_idx, labels
