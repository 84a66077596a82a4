"""Vision Transformer encoder (Dosovitskiy et al., 2021) in the DeiT-III flavour (Touvron et al., 2022).

Parameter names follow timm's `VisionTransformer` as built for `deit3_small_patch16_384`
(patch_size 16, embed_dim 384, depth 12, heads 6, `no_embed_class=True`, `init_values=1e-6`), so that a
timm state_dict or the Pix2Seq port's `encoder.model.*` weights load without renaming:

    patch_embed.proj.{weight,bias}   cls_token (1,1,D)   pos_embed (1,N,D)  (patches only: no_embed_class)
    blocks.i.norm1  blocks.i.attn.qkv  blocks.i.attn.proj  blocks.i.ls1.gamma
    blocks.i.norm2  blocks.i.mlp.fc1   blocks.i.mlp.fc2    blocks.i.ls2.gamma
    norm

DeiT-III adds the position embedding to the patch tokens only and prepends the class token after it.
LayerNorm eps is 1e-6, the MLP uses exact GELU. There is no classification head (timm's num_classes=0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ViTConfig:
    image_size: int = 384  # square input side in pixels
    patch_size: int = 16  # patch side; the grid is (image_size // patch_size) ** 2 tokens
    dim: int = 384  # embedding width D
    depth: int = 12  # number of transformer blocks
    heads: int = 6  # attention heads (dim % heads == 0)
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * dim
    layer_scale_init: float | None = 1e-6  # LayerScale init (DeiT-III); None = no LayerScale
    in_chans: int = 3  # input channels

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "dim", "depth", "heads", "in_chans"):
            value, low = getattr(self, name), 0 if name == "depth" else 1
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65536:
                raise ValueError(f"ViTConfig.{name} must be an integer in [{low}, 65536], got {value!r}")
        if not (isinstance(self.mlp_ratio, (int, float)) and 0 < self.mlp_ratio <= 64):
            raise ValueError(f"ViTConfig.mlp_ratio must be a number in (0, 64], got {self.mlp_ratio!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def deit3_small_384(cls) -> "ViTConfig":
        """timm's deit3_small_patch16_384: 576 patches of width 384, about 21.7M parameters."""
        return cls()

    @classmethod
    def tiny(cls, image_size: int = 128) -> "ViTConfig":
        """A ViT small enough to train on a CPU in minutes (64 patches of width 128 at 128 px)."""
        return cls(image_size=image_size, patch_size=16, dim=128, depth=4, heads=4, mlp_ratio=2.0)


class PatchEmbed(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) -> (B, N, D) patch tokens in row-major grid order."""
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, N, D)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, nh, N, hs)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, nh, N, hs)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = Mlp(cfg.dim, int(cfg.dim * cfg.mlp_ratio))
        scale = cfg.layer_scale_init
        self.ls1 = LayerScale(cfg.dim, scale) if scale is not None else nn.Identity()
        self.ls2 = LayerScale(cfg.dim, scale) if scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """Images (B, 3, H, W) -> tokens (B, 1 + N, D): the class token first, then the N patch tokens."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.cfg.image_size
        if images.ndim != 4 or images.shape[1] != self.cfg.in_chans or images.shape[-2:] != (size, size):
            raise ValueError(f"images must have shape (B, {self.cfg.in_chans}, {size}, {size}), "
                             f"got {tuple(images.shape)}")
        x = self.patch_embed(images) + self.pos_embed  # (B, N, D): DeiT-III embeds patches only
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
