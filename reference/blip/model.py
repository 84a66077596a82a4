"""BLIP (Li et al., 2022), tiny and trainable on a CPU: the multimodal mixture of encoder-decoder, written from the
paper. One text transformer with a cross-attention block in every layer serves as

- the unimodal text encoder (run without image features: every cross-attention skipped; [CLS] -> ITC),
- the image-grounded text encoder (the same modules with cross-attention; first token [ENC]; position 0 -> ITM),

and the image-grounded text decoder (causal self-attention; first token [DEC]; LM head -> captioning) shares every
parameter with that encoder EXCEPT its self-attention layers (the paper's best setting, Table 3): the decoder's
embeddings, cross-attention and feed-forward blocks ARE the encoder's modules (the same parameter objects, so a
step on either loss moves both), its self-attention blocks are its own. The LM head is tied to the shared word
embeddings. ITC (momentum queue, distillation) and the ITM hard negatives are ALBEF's (reference/albef/base.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from reference.albef.base import MomentumContrastModel, hard_negative_pairs
from reference.albef.image import ImageEncoder, ImageEncoderConfig
from reference.albef.momentum import check_momentum
from reference.albef.text import TextTransformer, TextTransformerConfig
from reference.blip2.losses import decoder_inputs, itm_loss, lm_loss
from reference.blip2.stage1 import LMHead


@dataclass
class BlipConfig:
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextTransformerConfig = field(default_factory=lambda: TextTransformerConfig(cross_attention_from=0))
    embed_dim: int = 32  # ITC space
    temp_init: float = 0.07
    momentum: float = 0.995
    queue_size: int = 256
    alpha: float = 0.4  # momentum-distillation weight of ITC
    label_smoothing: float = 0.1  # LM loss, as the public code
    pad_token_id: int = 0
    cls_token_id: int = 2  # unimodal text encoder input
    sep_token_id: int = 3  # end of text, generation stop
    dec_token_id: int = 4  # [DEC]: decoder input
    enc_token_id: int = 5  # [ENC]: image-grounded encoder input

    def __post_init__(self) -> None:
        for name, cls in (("image", ImageEncoderConfig), ("text", TextTransformerConfig)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, cls(**getattr(self, name)))
        check_momentum(self.momentum)
        if self.text.cross_attention_from != 0:
            raise ValueError(f"BLIP has a cross-attention block in every text layer: text.cross_attention_from must "
                             f"be 0, got {self.text.cross_attention_from}")
        if self.text.encoder_width != self.image.dim:
            raise ValueError(f"text.encoder_width {self.text.encoder_width} must equal image.dim {self.image.dim}")
        for name in ("pad_token_id", "cls_token_id", "sep_token_id", "dec_token_id", "enc_token_id"):
            if not 0 <= getattr(self, name) < self.text.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} outside the vocabulary of {self.text.vocab_size}")


def share_all_but_self_attention(encoder: TextTransformer, decoder: TextTransformer) -> None:
    """Make the decoder use the encoder's embeddings, cross-attention and feed-forward MODULES (so the very same
    parameter objects); the decoder keeps its own self-attention blocks."""
    if len(encoder.layers) != len(decoder.layers):
        raise ValueError(f"encoder has {len(encoder.layers)} layers, decoder {len(decoder.layers)}")
    decoder.word_embeddings = encoder.word_embeddings
    decoder.position_embeddings = encoder.position_embeddings
    decoder.embed_norm = encoder.embed_norm
    for enc, dec in zip(encoder.layers, decoder.layers):
        dec.crossattention = enc.crossattention
        dec.ffn = enc.ffn


def self_attention_parameters(text: TextTransformer) -> list[nn.Parameter]:
    """The parameters of every layer's self-attention block (query, key, value, output dense, its LayerNorm)."""
    return [p for layer in text.layers for p in layer.attention.parameters()]


def encoder_inputs(input_ids: torch.Tensor, enc_token_id: int) -> torch.Tensor:
    """[CLS] text ... -> [ENC] text ... for the image-grounded encoder; a new tensor (the input is not written)."""
    ids = input_ids.clone()
    ids[:, 0] = enc_token_id
    return ids


class Blip(MomentumContrastModel):
    def __init__(self, config: BlipConfig) -> None:
        super().__init__()
        self.config = config
        C, E = config.text.hidden_size, config.embed_dim
        self.image_encoder = ImageEncoder(config.image)
        self.vision_proj = nn.Linear(config.image.dim, E)
        self.text_encoder = TextTransformer(config.text)
        self.text_proj = nn.Linear(C, E)
        self.itm_head = nn.Linear(C, 2)
        self.text_decoder = TextTransformer(config.text)
        share_all_but_self_attention(self.text_encoder, self.text_decoder)
        self.lm_head = LMHead(config.text.block_config(), self.text_encoder.word_embeddings)
        self._init_contrast(E, config.temp_init, config.momentum, config.queue_size,
                            heads=(self.vision_proj, self.text_proj, self.itm_head, self.lm_head.dense),
                            std=config.text.initializer_range)

    def online_modules(self) -> nn.ModuleDict:
        """What the momentum copy follows (the decoder is not part of it, as in the public code)."""
        return nn.ModuleDict({"image_encoder": self.image_encoder, "vision_proj": self.vision_proj,
                              "text_encoder": self.text_encoder, "text_proj": self.text_proj})

    # -- passes (image_pass / text_pass come from the base) --------------------------------------------
    def unimodal_text(self, modules, input_ids, attention_mask) -> torch.Tensor:
        """The unimodal text encoder: the same layers with every cross-attention skipped, (B, T, C)."""
        return modules["text_encoder"].encode(input_ids, attention_mask)

    def itm_logits_from(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        """Image-grounded encoder on [ENC] text over image tokens: matching logits (B, 2), column 1 = match."""
        hidden = self.text_encoder.encode(encoder_inputs(input_ids, self.config.enc_token_id), attention_mask,
                                          image_embeds)
        return self.itm_head(hidden[:, 0])

    def itm_logits(self, patch_feats, input_ids, attention_mask) -> torch.Tensor:
        return self.itm_logits_from(self.image_pass(patch_feats)[0], input_ids, attention_mask)

    def decoder_logits(self, image_embeds, decoder_ids, attention_mask=None) -> torch.Tensor:
        """Image-grounded decoder (causal) on ids starting with [DEC]: logits (B, T, V)."""
        hidden = self.text_decoder.encode(decoder_ids, attention_mask, image_embeds, causal=True)
        return self.lm_head(hidden)

    def lm_loss(self, image_embeds, input_ids, attention_mask) -> torch.Tensor:
        """Captioning loss: [DEC] text [SEP] with pads -100, next-token, label smoothing."""
        dec_ids, labels = decoder_inputs(input_ids, attention_mask, self.config.dec_token_id)
        return lm_loss(self.decoder_logits(image_embeds, dec_ids, attention_mask), labels, self.config.label_smoothing)

    # -- one training step --------------------------------------------------------------------------
    def forward(self, patch_feats: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                image_ids: torch.Tensor | None = None, alpha: float | None = None,
                generator: torch.Generator | None = None, update_state: bool = True, itm_hard: float = 1.0) -> dict:
        """patch_feats (B, N, patch_width); input_ids / attention_mask (B, T) as [CLS] words [SEP] [PAD]...;
        image_ids (B,) make captions of one image positives; alpha, itm_hard as ALBEF's (reference/albef/model.py).
        Returns {"itc", "itm", "lm", "loss"}."""
        alpha = self.config.alpha if alpha is None else float(alpha)
        step = self.contrast(patch_feats, input_ids, attention_mask, image_ids, alpha, update_state)
        image_idx, text_idx, itm_labels = hard_negative_pairs(step, generator, itm_hard)
        logits = self.itm_logits_from(step.image_embeds[image_idx], input_ids[text_idx], attention_mask[text_idx])
        loss_itm = itm_loss(logits, itm_labels)
        loss_lm = self.lm_loss(step.image_embeds, input_ids, attention_mask)
        if update_state:
            self.enqueue(step)
        return {"itc": step.loss, "itm": loss_itm, "lm": loss_lm, "loss": step.loss + loss_itm + loss_lm}
