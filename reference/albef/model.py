"""ALBEF (Li et al., 2021, "Align before Fuse"), tiny and trainable on a CPU, written from the paper.

    patch features -> ImageEncoder -> image tokens (B, 1+N, D)           [CLS] -> vision_proj -> ITC image feature
    text ids -> TextTransformer layers [0, num_text_layers)  (text only)  [CLS] -> text_proj   -> ITC text feature
             -> layers [num_text_layers, num_layers) with cross-attention to the image tokens (the fusion encoder)
                [CLS] -> itm_head (ITM);  every position -> mlm_head (MLM, decoder tied to the word embeddings)

A momentum copy of (image encoder, vision_proj, text encoder, text_proj, mlm_head) is an EMA of the online modules
(reference/albef/momentum.py); its ITC features are enqueued in the feature queue (queue.py) and serve, with the
batch's own momentum features, as the ITC columns and as the source of the distilled soft targets (contrastive.py);
its MLM predictions are the MLM soft targets (mlm.py). ITM negatives are sampled from the in-batch ITC similarities
with probability softmax(sim), captions of the same image excluded (reference/blip2/sampler.py).

One `forward` is one training step's losses. With `update_state=True` (the default) it first moves the momentum
encoders (the optimizer stepped since the last call) and finally enqueues the batch's momentum keys, as the public
code does; `update_state=False` computes the same losses without touching either (evaluation, cases).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from reference.albef.base import MomentumContrastModel, hard_negative_pairs
from reference.albef.image import ImageEncoder, ImageEncoderConfig
from reference.albef.mlm import MLMConfig, mask_tokens, masked_accuracy, mlm_loss
from reference.albef.momentum import check_momentum
from reference.albef.text import TextTransformer, TextTransformerConfig
from reference.blip2.losses import itm_loss
from reference.blip2.stage1 import LMHead


@dataclass
class AlbefConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextTransformerConfig = field(default_factory=lambda: TextTransformerConfig(cross_attention_from=2))
    embed_dim: int = 32  # ITC space
    temp_init: float = 0.07  # learnable temperature, clamped to [0.001, 0.5] when used
    momentum: float = 0.995  # EMA coefficient of the momentum encoders
    queue_size: int = 256  # momentum keys kept as extra ITC negatives (0: in-batch only)
    alpha: float = 0.4  # momentum-distillation weight (0: one-hot / same-id targets only)
    mlm: MLMConfig = field(default_factory=MLMConfig)
    pad_token_id: int = 0
    cls_token_id: int = 2
    sep_token_id: int = 3
    mask_token_id: int = 5  # [MASK]
    special_token_ids: tuple[int, ...] = (0, 1, 2, 3, 4, 5)  # never masked, never drawn as random words

    def __post_init__(self) -> None:
        for name, cls in (("image", ImageEncoderConfig), ("text", TextTransformerConfig), ("mlm", MLMConfig)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls(**getattr(self, name)))
        self.special_token_ids = tuple(int(i) for i in self.special_token_ids)
        check_momentum(self.momentum)
        if self.text.encoder_width != self.image.dim:
            raise ValueError(f"text.encoder_width {self.text.encoder_width} must equal image.dim {self.image.dim}")
        if not 0 < self.text.cross_attention_from < self.text.num_layers:
            raise ValueError(f"text.cross_attention_from={self.text.cross_attention_from} must leave at least one "
                             f"text-only and one fusion layer out of {self.text.num_layers}")
        for name in ("pad_token_id", "cls_token_id", "sep_token_id", "mask_token_id"):
            if not 0 <= getattr(self, name) < self.text.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} outside the vocabulary of {self.text.vocab_size}")

    @property
    def num_text_layers(self) -> int:
        return self.text.cross_attention_from


class Albef(MomentumContrastModel):
    def __init__(self, config: AlbefConfig) -> None:
        super().__init__()
        self.config = config
        C, E = config.text.hidden_size, config.embed_dim
        self.image_encoder = ImageEncoder(config.image)
        self.vision_proj = nn.Linear(config.image.dim, E)
        self.text = TextTransformer(config.text)
        self.text_proj = nn.Linear(C, E)
        self.mlm_head = LMHead(config.text.block_config(), self.text.word_embeddings)
        self.itm_head = nn.Linear(C, 2)
        self._init_contrast(E, config.temp_init, config.momentum, config.queue_size,
                            heads=(self.vision_proj, self.text_proj, self.itm_head, self.mlm_head.dense),
                            std=config.text.initializer_range)

    def online_modules(self) -> nn.ModuleDict:
        """The modules the momentum copy follows, under the names the copy uses (a view: not registered)."""
        return nn.ModuleDict({"image_encoder": self.image_encoder, "vision_proj": self.vision_proj, "text": self.text,
                              "text_proj": self.text_proj, "mlm_head": self.mlm_head})

    # -- passes (momentum=True: the momentum copy's; image_pass / text_pass come from the base) --------
    def unimodal_text(self, modules, input_ids, attention_mask) -> torch.Tensor:
        """The text-only layers: (B, T, C)."""
        return modules["text"].encode(input_ids, attention_mask, layers=range(self.config.num_text_layers))

    def fusion_pass(self, text_hidden, attention_mask, image_embeds) -> torch.Tensor:
        """Fusion layers over unimodal text hidden states (B, T, C) and image tokens: (B, T, C)."""
        return self.text.run_layers(text_hidden, attention_mask, image_embeds,
                                    layers=range(self.config.num_text_layers, self.config.text.num_layers))

    def itm_logits_from(self, image_embeds, input_ids, attention_mask, text_hidden=None) -> torch.Tensor:
        """Matching logits (B, 2) of pairs (image tokens b (B, 1+N, D), text b); column 1 = match. text_hidden
        (B, T, C): the texts' unimodal hidden states when already computed (text_pass), else they are."""
        hidden = self.text_pass(input_ids, attention_mask)[0] if text_hidden is None else text_hidden
        return self.itm_head(self.fusion_pass(hidden, attention_mask, image_embeds)[:, 0])

    def itm_logits(self, patch_feats, input_ids, attention_mask) -> torch.Tensor:
        """Matching logits (B, 2) of pairs (image b, text b); column 1 = match."""
        return self.itm_logits_from(self.image_pass(patch_feats)[0], input_ids, attention_mask)

    def mlm_logits(self, masked_ids, attention_mask, image_embeds, momentum: bool = False) -> torch.Tensor:
        """MLM logits (B, T, V) of the image-grounded text encoder (text then fusion layers) on masked ids."""
        m = self._modules_of(momentum)
        return m["mlm_head"](m["text"].encode(masked_ids, attention_mask, image_embeds))

    # -- one training step --------------------------------------------------------------------------
    def forward(self, patch_feats: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                image_ids: torch.Tensor | None = None, alpha: float | None = None,
                generator: torch.Generator | None = None, update_state: bool = True, itm_hard: float = 1.0) -> dict:
        """patch_feats (B, N, patch_width); input_ids / attention_mask (B, T) as [CLS] words [SEP] [PAD]...;
        image_ids (B,): captions with equal ids describe one image (positives in ITC, never ITM negatives);
        alpha: distillation weight of this step (default config.alpha; a training warm-up ramps it); itm_hard: the
        share of ITM negatives drawn from the ITC similarities (the rest uniformly). Returns {"itc", "itm", "mlm",
        "loss"} and "mlm_accuracy" (share of the masked positions predicted right, no gradient)."""
        cfg = self.config
        alpha = cfg.alpha if alpha is None else float(alpha)
        step = self.contrast(patch_feats, input_ids, attention_mask, image_ids, alpha, update_state)
        image_idx, text_idx, itm_labels = hard_negative_pairs(step, generator, itm_hard)
        fused = self.fusion_pass(step.text_hidden[text_idx], attention_mask[text_idx], step.image_embeds[image_idx])
        loss_itm = itm_loss(self.itm_head(fused[:, 0]), itm_labels)
        masked_ids, labels = mask_tokens(input_ids, attention_mask, cfg.special_token_ids, cfg.mask_token_id,
                                         cfg.text.vocab_size, cfg.mlm, generator)
        logits = self.mlm_logits(masked_ids, attention_mask, step.image_embeds)
        soft = None
        if alpha > 0:  # the momentum model's predictions are only needed as distillation targets
            with torch.no_grad():
                soft = F.softmax(self.mlm_logits(masked_ids, attention_mask, step.image_embeds_m,
                                                 momentum=True).float(), dim=-1)
        loss_mlm = mlm_loss(logits, labels, soft, alpha)
        if update_state:
            self.enqueue(step)
        return {"itc": step.loss, "itm": loss_itm, "mlm": loss_mlm, "loss": step.loss + loss_itm + loss_mlm,
                "mlm_accuracy": masked_accuracy(logits.detach(), labels)}
