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
from reference.blip2.sampler import sample_negatives


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
        self.queue_in_use: int | None = None  # ITC reads only the newest this-many queue keys (None: all held)

    def online_modules(self) -> nn.ModuleDict:
        raise NotImplementedError

    def unimodal_text(self, modules: nn.ModuleDict, input_ids, attention_mask) -> torch.Tensor:
        raise NotImplementedError

    def _modules_of(self, momentum: bool):
        return self.momentum if momentum else self.online_modules()

    def image_pass(self, patch_feats: torch.Tensor, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(image tokens (B, 1+N, D), normalised ITC feature (B, E) of the pooled tokens ([CLS] by default));
        momentum=True: the momentum copy's."""
        m = self._modules_of(momentum)
        embeds = m["image_encoder"](patch_feats)
        return embeds, F.normalize(m["vision_proj"](m["image_encoder"].pooled(embeds)), dim=-1)

    def text_pass(self, input_ids, attention_mask, momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(unimodal text hidden states (B, T, C), normalised [CLS] ITC feature (B, E))."""
        m = self._modules_of(momentum)
        hidden = self.unimodal_text(m, input_ids, attention_mask)
        return hidden, F.normalize(m["text_proj"](hidden[:, 0]), dim=-1)

    @torch.no_grad()
    def set_image_feature_mean(self, mean: torch.Tensor) -> None:
        """The training images' mean patch features (N, W) for a centring image encoder, online and momentum."""
        self.online_modules()["image_encoder"].set_feature_mean(mean)
        self.momentum["image_encoder"].set_feature_mean(mean)

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
            queue_image, queue_text, queue_ids = self.queued_keys()
        loss = itc_queue_loss(image_feat, text_feat, image_feat_m, text_feat_m, queue_image, queue_text, queue_ids,
                              ids if image_ids is not None else None, temp, alpha)
        return ContrastStep(loss, ids, temp, image_embeds, image_feat, text_hidden, text_feat, image_embeds_m,
                            image_feat_m, text_feat_m)

    def queued_keys(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The queue keys ITC uses: all those held, or only the newest `queue_in_use` (a training warm-up of the
        queue: a model trained from scratch starts with momentum keys that are nearly all alike, and a full queue of
        them makes its image features collapse)."""
        image, text, ids = self.queue.contents()  # oldest first
        if self.queue_in_use is None:
            return image, text, ids
        n = max(0, min(int(self.queue_in_use), image.shape[0]))
        return image[image.shape[0] - n:], text[text.shape[0] - n:], ids[ids.shape[0] - n:]

    @torch.no_grad()
    def enqueue(self, step: ContrastStep) -> None:
        """The batch's momentum keys (gathered across processes when there are several) join the queue."""
        self.queue.enqueue(gather_features(step.image_feat_m), gather_features(step.text_feat_m),
                           gather_features(step.ids))


def hard_negative_pairs(step: ContrastStep, generator: torch.Generator | None = None, hard: float = 1.0
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ITM pairs (image index, text index, label) (M,): the B positives (b, b), then for each text a negative image
    and for each image a negative text, drawn from the detached in-batch ITC similarities with probability
    softmax(sim) (hard = 1, the paper), uniformly (hard = 0) or from the mixture hard * softmax + (1 - hard) *
    uniform (reference/blip2/sampler.py); captions of the same image are never drawn, and a row without any
    negative adds none. A warm-up of `hard` from 0 lets a model trained from scratch learn ITM at all."""
    B, device = step.ids.shape[0], step.ids.device
    with torch.no_grad():
        sim_i2t = step.image_feat.float() @ step.text_feat.float().t() / step.temp  # (B, B)
        positives = step.ids[:, None] == step.ids[None, :]  # (B, B)
        neg_text = sample_negatives(sim_i2t, positives, generator, hard)
        neg_image = sample_negatives(sim_i2t.t(), positives.t(), generator, hard)
    t_rows = (neg_image >= 0).nonzero().squeeze(1)  # texts that got a negative image
    i_rows = (neg_text >= 0).nonzero().squeeze(1)  # images that got a negative text
    pos = torch.arange(B, device=device)
    image_idx = torch.cat([pos, neg_image[t_rows], i_rows])
    text_idx = torch.cat([pos, t_rows, neg_text[i_rows]])
    labels = torch.cat([torch.ones(B), torch.zeros(len(t_rows) + len(i_rows))]).long().to(device)
    return image_idx, text_idx, labels


@torch.no_grad()
def pair_itm_logits(model: nn.Module, image_embeds: torch.Tensor, image_index: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor, batch_size: int = 64, text_hidden: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """ITM logits (N, 2) float32 of the pairs (image tokens image_embeds[image_index[n]], text n) by
    model.itm_logits_from; the pairs run in batches of similar text length, each cut to its longest text (the
    padding is masked anyway, so this only saves time). image_embeds (Ni, 1+P, D), image_index (N,), ids / mask (N, T);
    text_hidden (N, T, C): ALBEF's unimodal text states of the N texts, when already computed."""
    N = input_ids.shape[0]
    lengths = attention_mask.sum(dim=1)
    order = lengths.argsort(stable=True)
    out = torch.zeros(N, 2)
    for s in range(0, N, batch_size):
        rows = order[s:s + batch_size]
        T = max(int(lengths[rows].max()), 1)
        extra = {} if text_hidden is None else {"text_hidden": text_hidden[rows, :T]}
        out[rows] = model.itm_logits_from(image_embeds[image_index[rows]], input_ids[rows, :T],
                                          attention_mask[rows, :T], **extra).float()
    return out
