"""The trainable image encoder of the tiny ALBEF and BLIP models.

ALBEF and BLIP train their ViT (unlike BLIP-2, which freezes it), and the momentum encoder is an EMA copy of it.
Nothing can be downloaded here, so the pixels first go through the frozen random patch encoder of the tiny BLIP-2
model (reference/blip2/image_encoder.py: a fixed random projection of each 16x16 patch plus its mean colour and a
sinusoidal position code, no trainable weight); this module is the trainable part on top of those patch features:
a linear embedding, a learned [CLS] token and a few pre-norm ViT blocks (reference/vision/vit.py), then LayerNorm.

    patch features (B, N, patch_width) -> (B, 1 + N, dim): the [CLS] token first (ITC feature), then N patches.

Working on patch features keeps the cases and tests cheap: they feed random (B, N, patch_width) features directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reference.vision.vit import Block, ViTConfig


@dataclass
class ImageEncoderConfig:
    patch_width: int = 64  # width of the frozen patch features (PatchEncoderConfig.width)
    dim: int = 64  # width of the image tokens the text cross-attends to
    depth: int = 2  # trainable ViT blocks
    heads: int = 4
    mlp_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}")
        if self.patch_width < 1 or self.depth < 0:
            raise ValueError(f"patch_width must be >= 1 and depth >= 0, got {self.patch_width} and {self.depth}")

    def block_config(self) -> ViTConfig:
        """The ViT config of the blocks (image_size / patch_size are unused here: the patches come in as features)."""
        return ViTConfig(image_size=16, patch_size=16, dim=self.dim, depth=self.depth, heads=self.heads,
                         mlp_ratio=self.mlp_ratio, layer_scale_init=None)


class ImageEncoder(nn.Module):
    """Frozen patch features (B, N, patch_width) -> image tokens (B, 1 + N, dim), [CLS] first."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.patch_width, config.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.blocks = nn.ModuleList(Block(config.block_config()) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, patch_feats: torch.Tensor) -> torch.Tensor:
        if patch_feats.dim() != 3 or patch_feats.shape[-1] != self.config.patch_width:
            raise ValueError(f"patch_feats must be (B, N, {self.config.patch_width}), got {tuple(patch_feats.shape)}")
        x = self.embed(patch_feats.to(self.embed.weight.dtype))  # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
