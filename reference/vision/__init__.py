"""Vision encoders shared by the models (a DeiT-III style ViT)."""

from reference.vision.vit import ViTConfig, VisionTransformer

__all__ = ["ViTConfig", "VisionTransformer"]
