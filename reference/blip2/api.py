"""The reference BLIP-2 Q-Former as the parts of the `qformer` case family (cases/interface/qformer.py).

`REFERENCE` provides every part by duck typing; a re-implementation under test provides the same names.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from reference.blip2 import captioner, losses, retrieval, sampler
from reference.blip2.qformer import QFormerConfig
from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def stage1_config(config: Mapping[str, Any]) -> Blip2Stage1Config:
    """The case family's flat config dict -> Blip2Stage1Config (see cases/interface/qformer.py for keys)."""
    c = dict(config)
    q = QFormerConfig(
        vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_layers"],
        num_attention_heads=c["num_heads"], intermediate_size=c["intermediate_size"],
        max_position_embeddings=c.get("max_text_len", 64), cross_attention_freq=c.get("cross_attention_freq", 2),
        encoder_width=c["image_width"], num_query_tokens=c["num_query_tokens"],
        pad_token_id=c.get("pad_token_id", 0), attn_implementation=c.get("attn_implementation", "sdpa"))
    return Blip2Stage1Config(qformer=q, embed_dim=c.get("embed_dim", 256), cls_token_id=c["cls_token_id"],
                             sep_token_id=c["sep_token_id"], dec_token_id=c["dec_token_id"])


class QFormerReference:
    """Parts of the `qformer` family backed by reference/blip2."""

    name = "reference"

    def build(self, config: Mapping[str, Any]) -> Blip2Stage1:
        dtype = config.get("dtype", "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
        return Blip2Stage1(stage1_config(config)).eval().to(_DTYPES[dtype])

    # -- passes ----------------------------------------------------------------------------------
    def query_pass(self, model, image_embeds):
        return model.query_pass(image_embeds).last_hidden_state

    def text_pass(self, model, input_ids, attention_mask):
        return model.text_pass(input_ids, attention_mask)

    def itm_pass(self, model, image_embeds, input_ids, attention_mask):
        return model.itm_pass(image_embeds, input_ids, attention_mask)

    def itg_logits(self, model, image_embeds, decoder_ids, attention_mask):
        return model.itg_logits(image_embeds, decoder_ids, attention_mask, reuse_query_cache=True)

    def itm_logits(self, model, image_embeds, input_ids, attention_mask):
        return model.itm_logits(image_embeds, input_ids, attention_mask)

    def itc_scores(self, model, image_embeds, input_ids, attention_mask):
        return losses.itc_similarity(model.image_features(image_embeds), model.text_features(input_ids, attention_mask))

    def losses(self, model, image_embeds, input_ids, attention_mask, image_ids=None, generator=None):
        return model(image_embeds, input_ids, attention_mask, image_ids=image_ids, generator=generator)

    # -- pure pieces -----------------------------------------------------------------------------
    @staticmethod
    def itc_similarity(image_feats, text_feats):
        return losses.itc_similarity(image_feats, text_feats)

    @staticmethod
    def itc_loss(image_feats, text_feats, temp, image_ids=None):
        return losses.itc_loss(image_feats, text_feats, temp, image_ids)

    @staticmethod
    def sample_hard_negatives(sim_i2t, image_ids, generator=None):
        return sampler.sample_hard_negatives(sim_i2t, image_ids, generator=generator)

    @staticmethod
    def gather_features(x):
        return losses.gather_features(x)

    @staticmethod
    def generate(model, image_embeds, num_beams=3, max_length=30, min_length=10, use_cache=True):
        return captioner.generate(model, image_embeds, num_beams=num_beams, max_length=max_length,
                                  min_length=min_length, use_cache=use_cache)

    @staticmethod
    def rerank_scores(sim, itm_score, k):
        return retrieval.rerank_scores(sim, itm_score, k)


REFERENCE = QFormerReference()
