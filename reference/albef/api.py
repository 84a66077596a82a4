"""The reference ALBEF mechanisms as the parts of the `albef` case family (cases/interface/albef.py).

`REFERENCE` provides every part by duck typing; a re-implementation under test provides the same names.
"""

from __future__ import annotations

from typing import Any, Mapping

from reference.albef import contrastive, mlm, momentum
from reference.albef.image import ImageEncoderConfig
from reference.albef.model import Albef, AlbefConfig
from reference.albef.queue import FeatureQueue, FeatureQueueConfig
from reference.albef.text import TextTransformerConfig
from reference.blip2 import losses, sampler

TOKEN_VALUES_THAT_ARE_NOT_IDS = ("vocab_size", "probability")


def special_ids(tokens: Mapping[str, Any]) -> list[int]:
    """Every token id of a case family's TOKENS dict ([PAD], [UNK], [CLS], [SEP], [DEC], [MASK], ...)."""
    return [int(v) for k, v in tokens.items() if k not in TOKEN_VALUES_THAT_ARE_NOT_IDS]


def encoder_configs(c: Mapping[str, Any], cross_attention_from: int) -> tuple[ImageEncoderConfig, TextTransformerConfig]:
    """The image and text encoder configs of a flat case-family config (keys of the families' TINY_CONFIG)."""
    image = ImageEncoderConfig(patch_width=c["patch_width"], dim=c["image_dim"], depth=c.get("image_depth", 1),
                               heads=c["num_heads"])
    text = TextTransformerConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"],
        num_layers=c.get("num_text_layers", 0) + c.get("num_fusion_layers", 0) or c.get("num_layers", 2),
        num_heads=c["num_heads"], intermediate_size=c["intermediate_size"],
        max_position_embeddings=c.get("max_text_len", 32), encoder_width=c["image_dim"],
        cross_attention_from=cross_attention_from, pad_token_id=c.get("pad_token_id", 0))
    return image, text


def albef_config(c: Mapping[str, Any]) -> AlbefConfig:
    image, text = encoder_configs(c, c["num_text_layers"])
    return AlbefConfig(image=image, text=text, embed_dim=c["embed_dim"], momentum=c.get("momentum", 0.995),
                       queue_size=c.get("queue_size", 0), alpha=c.get("alpha", 0.4),
                       pad_token_id=c.get("pad_token_id", 0), cls_token_id=c["cls_token_id"],
                       sep_token_id=c["sep_token_id"], mask_token_id=c["mask_token_id"],
                       special_token_ids=tuple(c["special_token_ids"]))


class AlbefReference:
    """Parts of the `albef` family backed by reference/albef."""

    name = "reference"

    momentum_copy = staticmethod(momentum.momentum_copy)
    ema_update = staticmethod(momentum.ema_update_)
    itc_queue_loss = staticmethod(contrastive.itc_queue_loss)
    itm_negatives = staticmethod(sampler.sample_hard_negatives)
    mlm_loss = staticmethod(mlm.mlm_loss)
    gather_keys = staticmethod(losses.gather_features)

    @staticmethod
    def make_queue(size: int, embed_dim: int) -> FeatureQueue:
        return FeatureQueue(FeatureQueueConfig(size, embed_dim))

    @staticmethod
    def mask_tokens(input_ids, attention_mask, tokens, generator=None):
        config = mlm.MLMConfig(probability=float(tokens.get("probability", 0.15)))
        return mlm.mask_tokens(input_ids, attention_mask, special_ids(tokens), tokens["mask"], tokens["vocab_size"],
                               config, generator)

    @staticmethod
    def build_albef(config: Mapping[str, Any]) -> Albef:
        return Albef(albef_config(config)).eval()

    @staticmethod
    def albef_losses(model, patch_feats, input_ids, attention_mask, image_ids=None, generator=None):
        return model(patch_feats, input_ids, attention_mask, image_ids=image_ids, generator=generator,
                     update_state=True)


REFERENCE = AlbefReference()
