"""The trainable image encoder of the tiny ALBEF and BLIP models.

ALBEF and BLIP train their ViT (unlike BLIP-2, which freezes it), and the momentum encoder is an EMA copy of it.
Nothing can be downloaded here, so the pixels first go through the frozen random patch encoder of the tiny BLIP-2
model (reference/blip2/image_encoder.py: a fixed random projection of each 16x16 patch plus its mean colour and a
sinusoidal position code, no trainable weight); this module is the trainable part on top of those patch features:
an optional merge of each `merge` x `merge` block of neighbouring patches into one token (the features of the block
concatenated: a ViT with `merge` times larger patches on the same pixels, and `merge`^2 times fewer tokens for the
attention and the text's cross-attention to read), a linear embedding, a learned [CLS] token and a few pre-norm ViT
blocks (reference/vision/vit.py), then LayerNorm.

    patch features (B, N, patch_width) -> (B, 1 + N / merge^2, dim): the [CLS] token first (ITC feature), then the
    (merged) patches in row-major order.

The frozen features carry a fixed sinusoidal position code that is the same for every image and larger than what
differs between images, so the image tokens start nearly image-independent; `centre=True` subtracts the training
set's mean feature at each patch position (which removes that code) and adds learned position embeddings instead,
as a ViT has.

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
    merge: int = 1  # merge x merge neighbouring patches become one token (1: none)
    pool: str = "cls"  # the ITC image feature: the [CLS] token (ALBEF, BLIP) or "mean" of the patch tokens
    centre: bool = False  # subtract the training set's mean feature of each patch position, add learned positions
    num_patches: int = 64  # frozen patches per image (used when centre)

    def __post_init__(self) -> None:
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {self.pool!r}")
        if self.merge < 1:
            raise ValueError(f"merge must be >= 1, got {self.merge}")
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
        self.embed = nn.Linear(config.patch_width * config.merge ** 2, config.dim)
        if config.centre:
            self.register_buffer("feature_mean", torch.zeros(config.num_patches, config.patch_width))  # (N, W)
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches // config.merge ** 2, config.dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
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
        if self.config.centre:
            if self.feature_mean.shape != patch_feats.shape[1:]:
                raise ValueError(f"centre=True: patch features {tuple(patch_feats.shape)} do not fit the "
                                 f"{tuple(self.feature_mean.shape)} position means")
            patch_feats = patch_feats - self.feature_mean
        x = self.embed(merge_patches(patch_feats, self.config.merge).to(self.embed.weight.dtype))  # (B, N', D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        if self.config.centre:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    @torch.no_grad()
    def set_feature_mean(self, mean: torch.Tensor) -> None:
        """centre=True: store the mean patch features (N, W) of the training images."""
        if not self.config.centre or mean.shape != self.feature_mean.shape:
            raise ValueError(f"set_feature_mean needs centre=True and a mean of shape "
                             f"{tuple(getattr(self, 'feature_mean', torch.zeros(0)).shape)}, got {tuple(mean.shape)}")
        self.feature_mean.copy_(mean)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image's global feature (B, dim) from forward's tokens (B, 1 + N, dim): [CLS], or the patch mean."""
        return tokens[:, 0] if self.config.pool == "cls" else tokens[:, 1:].mean(dim=1)


def merge_patches(patch_feats: torch.Tensor, merge: int) -> torch.Tensor:
    """(B, g*g, W) patches of a g x g grid (row-major) -> (B, (g/merge)^2, merge*merge*W): each merge x merge block's
    features concatenated (row-major inside the block); merge = 1 returns the input."""
    if merge == 1:
        return patch_feats
    B, N, W = patch_feats.shape
    g = int(round(N ** 0.5))
    if g * g != N or g % merge:
        raise ValueError(f"{N} patches are not a square grid divisible into {merge} x {merge} blocks")
    h = g // merge
    x = patch_feats.reshape(B, h, merge, h, merge, W).permute(0, 1, 3, 2, 4, 5)  # (B, h, h, merge, merge, W)
    return x.reshape(B, h * h, merge * merge * W)
