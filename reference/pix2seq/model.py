"""Pix2Seq model (Chen et al., 2022) with the public PyTorch port's structure (docs/design.md §3).

    images (B,3,S,S) -> ViT (DeiT-III) -> patch tokens (B,N,E) -> AdaptiveAvgPool1d over channels -> (B,N,d)
    -> + learned encoder pos-embed = memory;  tokens (B,T) -> embedding + learned decoder pos-embed
    -> post-norm transformer decoder (ReLU, dropout 0.1) -> Linear -> logits (B,T,V)

The module tree mirrors the port's `EncoderDecoder`, so a port state_dict loads with strict names:
`encoder.model.*` (timm ViT), `decoder.{embedding, decoder_pos_embed, encoder_pos_embed, output}` and
`decoder.decoder.layers.i.*` with nn.TransformerDecoderLayer's names (self_attn.in_proj_weight,
multihead_attn.out_proj, linear1, linear2, norm1..3). The decoder layers are written here (not
nn.TransformerDecoder) so that generation can keep a self-attention KV cache (see generate.py);
tests check parity with nn.TransformerDecoder itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reference.pix2seq.tokenizer import Vocabulary
from reference.vision.vit import ViTConfig, VisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Pix2SeqConfig:
    encoder: ViTConfig = field(default_factory=ViTConfig)  # the ViT backbone
    dim: int = 256  # decoder width d; encoder channels are average-pooled down (or up) to it
    decoder_layers: int = 6  # nn.TransformerDecoder num_layers
    decoder_heads: int = 8  # attention heads in the decoder
    decoder_ff: int = 2048  # feed-forward width (nn.TransformerDecoderLayer default)
    dropout: float = 0.1  # dropout inside decoder layers (nn.TransformerDecoderLayer default)
    pos_dropout: float = 0.05  # dropout after adding the learned pos-embeds (the port's value)
    num_bins: int = 384  # coordinate bins of the vocabulary
    num_classes: int = 20  # object classes of the vocabulary
    max_len: int = 300  # sequence length; the decoder pos-embed has max_len - 1 positions

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = ViTConfig(**self.encoder)
        limits = {"dim": 65536, "decoder_layers": 256, "decoder_heads": 1024, "decoder_ff": 1 << 18,
                  "num_bins": 1 << 16, "num_classes": 1 << 16, "max_len": 1 << 16}
        for name, high in limits.items():  # a corrupt config must not divide by zero or allocate 512 GB
            value = getattr(self, name)
            low = 0 if name == "num_classes" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"Pix2SeqConfig.{name} must be an integer in [{low}, {high}], got {value!r}")
        for name in ("dropout", "pos_dropout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise ValueError(f"Pix2SeqConfig.{name} must be in [0, 1), got {value!r}")
        if self.max_len < 7:
            raise ValueError(f"Pix2SeqConfig.max_len={self.max_len} holds no object: BOS, 5 tokens and EOS need 7")
        if self.dim % self.decoder_heads:
            raise ValueError(f"dim={self.dim} is not divisible by decoder_heads={self.decoder_heads}")

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(num_bins=self.num_bins, num_classes=self.num_classes, max_len=self.max_len)

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    @classmethod
    def port(cls, **overrides: Any) -> "Pix2SeqConfig":
        """The port's VOC model: DeiT-III small/16 at 384 px, d=256, 6 layers x 8 heads, ff 2048."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> "Pix2SeqConfig":
        """A model that trains on a CPU in minutes on the generated 128 px dataset (4 classes)."""
        base = dict(encoder=ViTConfig.tiny(128), dim=128, decoder_layers=3, decoder_heads=4, decoder_ff=512,
                    num_bins=128, num_classes=4, max_len=62)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Pix2SeqConfig":
        """The inverse of to_dict; ValueError naming unknown fields or bad values."""
        if not isinstance(data, dict):
            raise ValueError(f"a Pix2Seq config is a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown Pix2SeqConfig fields {unknown}")
        if isinstance(data.get("encoder"), dict):
            unknown = sorted(set(data["encoder"]) - set(ViTConfig.__dataclass_fields__))
            if unknown:
                raise ValueError(f"unknown ViTConfig fields {unknown}")
        return cls(**data)


class Encoder(nn.Module):
    """Images (B,3,S,S) -> patch features (B,N,d): ViT tokens without the class token, channels pooled to d."""

    def __init__(self, cfg: Pix2SeqConfig) -> None:
        super().__init__()
        self.model = VisionTransformer(cfg.encoder)
        self.bottleneck = nn.AdaptiveAvgPool1d(cfg.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.model(images)[:, 1:])  # (B, N, E) -> (B, N, d)


class Attention(nn.Module):
    """nn.MultiheadAttention's parameters (in_proj_weight (3d,d), in_proj_bias, out_proj), batch first,
    split into projections and attention so that keys and values can be cached."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, nh, T, hs)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,T,d) -> q (B,nh,T,hs)."""
        d = x.shape[-1]
        return self._heads(F.linear(x, self.in_proj_weight[:d], self.in_proj_bias[:d]))

    def key_value(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,S,d) -> k, v each (B,nh,S,hs)."""
        d = x.shape[-1]
        k, v = F.linear(x, self.in_proj_weight[d:], self.in_proj_bias[d:]).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """q (B,nh,T,hs), k/v (B,nh,S,hs), mask bool broadcastable to (B,nh,T,S), True = attend -> (B,T,d)."""
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)  # (B,nh,T,hs)
        B, nh, T, hs = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, T, nh * hs))  # (B, T, d)


class KVCache:
    """Self-attention keys/values of every decoder layer, preallocated to `length` positions, plus
    which positions hold a PAD token (masked as keys, as the port's tgt_key_padding_mask does).

    `start` may be an int (eager: attend to positions < start + T) or a 1-element LongTensor (static
    shapes for CUDA graphs: attend over all `length` positions with a mask)."""

    def __init__(self, layers: int, batch: int, heads: int, length: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        shape = (layers, batch, heads, length, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.key_ok = torch.zeros(batch, length, dtype=torch.bool, device=device)  # written before use
        self.length = length

    def self_mask(self, key_ok_new: torch.Tensor, start: int | torch.Tensor) -> torch.Tensor:
        """Record key_ok_new (B,T) at positions start.. and return the mask (B,1,T,S) for those queries."""
        T = key_ok_new.shape[1]
        if isinstance(start, torch.Tensor):
            positions = start + torch.arange(T, device=start.device)  # (T,)
            self.key_ok.index_copy_(1, positions, key_ok_new)
            causal = torch.arange(self.length, device=start.device)[None, :] <= positions[:, None]  # (T, S)
            return self.key_ok[:, None, None, :] & causal[None, None]  # (B, 1, T, S)
        self.key_ok[:, start:start + T] = key_ok_new
        S = start + T
        causal = torch.ones(T, S, dtype=torch.bool, device=key_ok_new.device).tril(diagonal=start)  # (T, S)
        return self.key_ok[:, None, None, :S] & causal[None, None]  # (B, 1, T, S)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int | torch.Tensor):
        """Write k/v (B,nh,T,hs) at positions start..; return the keys/values to attend over."""
        if isinstance(start, torch.Tensor):
            positions = start + torch.arange(k.shape[2], device=start.device)
            self.k[layer].index_copy_(2, positions, k)
            self.v[layer].index_copy_(2, positions, v)
            return self.k[layer], self.v[layer]
        end = start + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class DecoderLayer(nn.Module):
    """nn.TransformerDecoderLayer (post-norm, ReLU) with the same parameter names, batch first."""

    def __init__(self, cfg: Pix2SeqConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.self_attn = Attention(d, cfg.decoder_heads, cfg.dropout)
        self.multihead_attn = Attention(d, cfg.decoder_heads, cfg.dropout)
        self.linear1 = nn.Linear(d, cfg.decoder_ff)
        self.linear2 = nn.Linear(cfg.decoder_ff, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout1 = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)
        self.dropout2, self.dropout3 = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, memory_kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor,
                cache: KVCache | None = None, layer: int = 0, start: int | torch.Tensor = 0) -> torch.Tensor:
        """x (B,T,d) at positions start..start+T-1; memory_kv: cross-attention k, v (B,nh,N,hs);
        mask (B,1,T,S) bool; without a cache the keys are x itself (S = T)."""
        k, v = self.self_attn.key_value(x)
        if cache is not None:
            k, v = cache.update(layer, k, v, start)
        x = self.norm1(x + self.dropout1(self.self_attn.attend(self.self_attn.query(x), k, v, mask)))
        x = self.norm2(x + self.dropout2(self.multihead_attn.attend(self.multihead_attn.query(x), *memory_kv, None)))
        return self.norm3(x + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class DecoderStack(nn.Module):
    """Holds the layers under `layers.i` like nn.TransformerDecoder (which the port uses without a final norm)."""

    def __init__(self, cfg: Pix2SeqConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))


class Decoder(nn.Module):
    def __init__(self, cfg: Pix2SeqConfig) -> None:
        super().__init__()
        vocab = cfg.vocab
        self.pad = vocab.pad
        self.embedding = nn.Embedding(vocab.size, cfg.dim)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, cfg.max_len - 1, cfg.dim))
        self.decoder_pos_drop = nn.Dropout(cfg.pos_dropout)
        self.decoder = DecoderStack(cfg)
        self.output = nn.Linear(cfg.dim, vocab.size)
        self.encoder_pos_embed = nn.Parameter(torch.zeros(1, cfg.encoder.num_patches, cfg.dim))
        self.encoder_pos_drop = nn.Dropout(cfg.pos_dropout)
        for name, p in self.named_parameters():  # the port: xavier for matrices, trunc-normal pos-embeds
            if name.endswith("pos_embed"):
                nn.init.trunc_normal_(p, std=0.02)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def memory(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled encoder features (B,N,d) -> decoder memory (B,N,d) (+ encoder pos-embed)."""
        return self.encoder_pos_drop(features + self.encoder_pos_embed)

    def cross_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Memory (B,N,d) -> per layer the cross-attention k, v (B,nh,N,hs), computed once per image."""
        return [layer.multihead_attn.key_value(memory) for layer in self.decoder.layers]

    def embed(self, tokens: torch.Tensor, start: int | torch.Tensor = 0) -> torch.Tensor:
        """tokens (B,T) at positions start.. -> (B,T,d)."""
        T = tokens.shape[1]
        if isinstance(start, torch.Tensor):
            pos = self.decoder_pos_embed[0].index_select(0, start + torch.arange(T, device=tokens.device))
        else:
            if start + T > self.decoder_pos_embed.shape[1]:
                raise ValueError(f"positions up to {start + T - 1} exceed the decoder's "
                                 f"{self.decoder_pos_embed.shape[1]} positions (max_len - 1)")
            pos = self.decoder_pos_embed[0, start:start + T]
        return self.decoder_pos_drop(self.embedding(tokens) + pos)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Full causal pass (training, or a recompute): features (B,N,d), tokens (B,T) -> logits (B,T,V).
        PAD tokens are masked as keys (the port's tgt_key_padding_mask)."""
        memory_kv = self.cross_kv(self.memory(features))
        T = tokens.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # (T, T)
        mask = (tokens != self.pad)[:, None, None, :] & causal  # (B, 1, T, T)
        x = self.embed(tokens)
        for layer, kv in zip(self.decoder.layers, memory_kv):
            x = layer(x, kv, mask)
        return self.output(x)

    def decode(self, tokens: torch.Tensor, start: int | torch.Tensor, memory_kv, cache: KVCache) -> torch.Tensor:
        """Incremental pass: tokens (B,T) at positions start.. with earlier keys in `cache` -> logits (B,T,V)."""
        mask = cache.self_mask(tokens != self.pad, start)
        x = self.embed(tokens, start)
        for i, (layer, kv) in enumerate(zip(self.decoder.layers, memory_kv)):
            x = layer(x, kv, mask, cache=cache, layer=i, start=start)
        return self.output(x)


class Pix2Seq(nn.Module):
    """The port's EncoderDecoder: forward(images (B,3,S,S), tokens (B,T)) -> logits (B,T,V)."""

    def __init__(self, cfg: Pix2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vocab = cfg.vocab
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B,3,S,S) -> pooled patch features (B,N,d) (the decoder adds its pos-embed)."""
        return self.encoder(images)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(images), tokens)

    def new_cache(self, batch: int, length: int, device=None, dtype=None) -> KVCache:
        p = self.decoder.output.weight
        cfg = self.cfg
        return KVCache(cfg.decoder_layers, batch, cfg.decoder_heads, length, cfg.dim // cfg.decoder_heads,
                       device or p.device, dtype or p.dtype)


def prepare_images(images, image_size: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """uint8 images (a list of HxWx3 arrays, or a (B,H,W,3) array/tensor) -> (B,3,S,S) ImageNet-normalised,
    resized to image_size x image_size (bilinear) like the port's resize without keeping aspect."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        batch = [images[i] for i in range(images.shape[0])]
    else:
        batch = list(images)
    out = []
    for i, image in enumerate(batch):
        x = torch.as_tensor(image)
        if x.ndim != 3 or x.shape[-1] != 3:
            raise ValueError(f"images[{i}] must be HxWx3, got shape {tuple(x.shape)}")
        x = x.to(device=device, dtype=dtype).permute(2, 0, 1)[None] / 255.0  # (1, 3, H, W)
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        out.append(x)
    x = torch.cat(out)  # (B, 3, S, S)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=dtype).view(1, 3, 1, 1)
    return (x - mean) / std
