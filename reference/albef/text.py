"""A BERT-style text transformer whose layers may cross-attend to image features (ALBEF and BLIP).

Unlike the Q-Former (reference/blip2/qformer.py), whose cross-attention runs on its learned queries only, here the
TEXT tokens cross-attend to the image: this is ALBEF's fusion encoder and BLIP's image-grounded text encoder /
decoder. Each layer is BERT's post-norm block: self-attention -> cross-attention (layers that have one, when image
features are given) -> feed-forward. The attention and feed-forward blocks are the Q-Former's own
(`reference.blip2.qformer.Attention`, `FeedForward`), so both models share one implementation of them.

- `encode(input_ids, attention_mask, image_embeds=None, layers=None, causal=False)` runs the chosen layers; without
  image features every cross-attention is skipped (BLIP's unimodal 'text' mode, ALBEF's text layers);
- `run_layers(hidden, ...)` continues from hidden states (ALBEF's fusion layers on top of the text layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reference.blip2.qformer import Attention, FeedForward, QFormerConfig, additive, bert_init_, build_attention_mask


@dataclass
class TextTransformerConfig:
    vocab_size: int = 64  # word ids plus the special tokens
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 128  # feed-forward width
    max_position_embeddings: int = 32  # longest text
    encoder_width: int = 64  # width of the image features the cross-attention reads
    cross_attention_from: int = 0  # layers >= this index have a cross-attention block (0: every layer)
    pad_token_id: int = 0
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    attn_implementation: str = "sdpa"  # "sdpa" or "eager"

    def __post_init__(self) -> None:
        if not 0 <= self.cross_attention_from <= self.num_layers:
            raise ValueError(f"cross_attention_from={self.cross_attention_from} must lie in [0, num_layers="
                             f"{self.num_layers}]")
        self.block_config()  # validates widths and the attention implementation

    def block_config(self) -> QFormerConfig:
        """The Q-Former config the shared attention / feed-forward / LM-head blocks are built from."""
        return QFormerConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings, layer_norm_eps=self.layer_norm_eps,
            hidden_dropout_prob=self.hidden_dropout_prob, attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            encoder_width=self.encoder_width, num_query_tokens=0, pad_token_id=self.pad_token_id,
            initializer_range=self.initializer_range, attn_implementation=self.attn_implementation)


class TextLayer(nn.Module):
    """Self-attention, optional cross-attention to the image, feed-forward (post-norm, residual in each)."""

    def __init__(self, config: TextTransformerConfig, has_cross_attention: bool) -> None:
        super().__init__()
        block = config.block_config()
        self.attention = Attention(block, config.hidden_size)
        self.crossattention = Attention(block, config.encoder_width) if has_cross_attention else None
        self.ffn = FeedForward(block)

    def forward(self, x, self_mask, image_embeds=None, image_mask=None) -> torch.Tensor:
        """x (B, T, C); self_mask additive (B, 1, T, T) or None; image_embeds (B, N, encoder_width) or None."""
        x, _ = self.attention(x, self_mask)
        if self.crossattention is not None and image_embeds is not None:
            x, _ = self.crossattention(x, image_mask, context=image_embeds)
        return self.ffn(x)


class TextTransformer(nn.Module):
    """Word + position embeddings -> LayerNorm -> layers. Layers >= cross_attention_from can read the image."""

    def __init__(self, config: TextTransformerConfig) -> None:
        super().__init__()
        self.config = config
        C = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, C, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, C)
        self.embed_norm = nn.LayerNorm(C, eps=config.layer_norm_eps)
        self.embed_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(TextLayer(config, i >= config.cross_attention_from)
                                    for i in range(config.num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT init: normal(std initializer_range) weights, zero biases, unit LayerNorms, a zero [PAD] row."""
        std = self.config.initializer_range
        bert_init_(self, std)
        with torch.no_grad():
            self.word_embeddings.weight[self.config.pad_token_id].zero_()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T) long -> (B, T, C)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (B, T), got shape {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        if T > self.config.max_position_embeddings:
            raise ValueError(f"text of {T} tokens exceeds max_position_embeddings {self.config.max_position_embeddings}")
        positions = torch.arange(T, device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.embed_dropout(self.embed_norm(x))

    def run_layers(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   image_embeds: torch.Tensor | None = None, layers: range | None = None,
                   causal: bool = False) -> torch.Tensor:
        """hidden (B, T, C) through `layers` (default: all). attention_mask (B, T), 1 = token (default all ones);
        causal: each token sees itself and the earlier ones (BLIP's decoder). Image features (B, N, encoder_width)
        feed the cross-attention blocks; without them every cross-attention is skipped."""
        B, T, _ = hidden.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=hidden.device)
        if attention_mask.shape != (B, T):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, T)}")
        if image_embeds is not None and (image_embeds.dim() != 3 or image_embeds.shape[0] != B
                                         or image_embeds.shape[-1] != self.config.encoder_width):
            raise ValueError(f"image_embeds must be (B={B}, N, {self.config.encoder_width}), got "
                             f"{tuple(image_embeds.shape)}")
        mask = None
        if causal or not bool(attention_mask.all()):
            mask = additive(build_attention_mask(attention_mask, T, 0, 0, causal), hidden.dtype)  # (B, 1, T, T)
        image = image_embeds.to(hidden.dtype) if image_embeds is not None else None
        for i in layers if layers is not None else range(len(self.layers)):
            hidden = self.layers[i](hidden, mask, image)
        return hidden

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               image_embeds: torch.Tensor | None = None, layers: range | None = None,
               causal: bool = False) -> torch.Tensor:
        """embed(input_ids) then run_layers: (B, T, C)."""
        return self.run_layers(self.embed(input_ids), attention_mask, image_embeds, layers, causal)
