"""The frozen image encoder of the tiny BLIP-2 model: a fixed-seed random patch encoder.

BLIP-2 keeps its image encoder (EVA ViT-g) frozen and only reads its features. Here the frozen encoder is a
deliberately simple, honest stand-in that needs no pretrained weights: the image is cut into p x p patches,
each patch's pixels (scaled to [-1, 1]) are projected by a fixed Gaussian random matrix (seeded, stored in the
checkpoint), the patch's mean colour is appended, then a fixed 2-D sinusoidal position code is added.
A random projection keeps colour and layout information (it nearly preserves distances between patches), so
everything that is learnt lives in the Q-Former. Features: (B, N = (H/p)*(W/p), width).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PatchEncoderConfig:
    image_size: int = 128  # square input images, pixels
    patch_size: int = 16  # patch side, pixels (image_size must be a multiple)
    width: int = 64  # feature width: (width - 3) random-projection features + the patch's mean RGB
    seed: int = 0  # seed of the fixed projection

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width < 8 or self.width % 4:
            raise ValueError(f"width must be a multiple of 4 and >= 8, got {self.width}")


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """Fixed 2-D sinusoidal positions (grid*grid, width): half the channels code the row, half the column."""
    quarter = width // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float64) / max(quarter - 1, 1)))  # (quarter,)
    pos = torch.arange(grid, dtype=torch.float64)
    angles = pos[:, None] * freqs[None, :] * math.pi / 2  # (grid, quarter)
    code = torch.cat([angles.sin(), angles.cos()], dim=1)  # (grid, width/2)
    rows = code[:, None, :].expand(grid, grid, -1)  # (grid, grid, width/2)
    cols = code[None, :, :].expand(grid, grid, -1)
    return torch.cat([rows, cols], dim=-1).reshape(grid * grid, width).float()


class FrozenPatchEncoder(nn.Module):
    """uint8 images (B, H, W, 3) or float (B, 3, H, W) in [0, 1] -> features (B, N, width); no trainable weight."""

    def __init__(self, config: PatchEncoderConfig) -> None:
        super().__init__()
        self.config = config
        p = config.patch_size
        gen = torch.Generator().manual_seed(config.seed)
        proj = torch.randn(3 * p * p, config.width - 3, generator=gen, dtype=torch.float64) / math.sqrt(3 * p * p)
        self.register_buffer("projection", proj.float())  # (3*p*p, width-3), saved with the checkpoint
        self.register_buffer("positions", sincos_2d(config.image_size // p, config.width), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            if images.dim() != 4 or images.shape[-1] != 3:
                raise ValueError(f"uint8 images must be (B, H, W, 3), got shape {tuple(images.shape)}")
            images = images.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
        size, p = self.config.image_size, self.config.patch_size
        if images.dim() != 4 or images.shape[1:] != (3, size, size):
            raise ValueError(f"images must be (B, 3, {size}, {size}) (or uint8 (B, {size}, {size}, 3)), "
                             f"got shape {tuple(images.shape)}")
        B, g = images.shape[0], size // p
        x = images.float().to(self.projection.device) * 2 - 1
        patches = x.reshape(B, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5)  # (B, g, g, 3, p, p)
        patches = patches.reshape(B, g * g, 3 * p * p)  # (B, N, 3*p*p)
        mean_rgb = patches.reshape(B, g * g, 3, p * p).mean(dim=-1)  # (B, N, 3)
        feats = torch.cat([patches @ self.projection, mean_rgb], dim=-1)  # (B, N, width)
        return feats + self.positions
