"""The reference BLIP-2 stage 2 as the parts of the `blip2-stage2` case family (cases/interface/blip2_stage2.py).

`REFERENCE` provides every part by duck typing; a re-implementation under test provides the same names.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from reference.blip2.qformer import QFormer, QFormerConfig
from reference.blip2.stage2 import Blip2Stage2, LMConfig, build_lm


def stage2_model(config: Mapping[str, Any]) -> Blip2Stage2:
    """The family's flat config dict -> Blip2Stage2 with random weights, in eval mode."""
    c = dict(config)
    q = QFormerConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_layers"],
                      num_attention_heads=c["num_heads"], intermediate_size=c["intermediate_size"],
                      max_position_embeddings=c.get("max_text_len", 32),
                      cross_attention_freq=c.get("cross_attention_freq", 2), encoder_width=c["image_width"],
                      num_query_tokens=c["num_query_tokens"], pad_token_id=c.get("pad_token_id", 0))
    lm = build_lm(LMConfig(vocab_size=c["vocab_size"], hidden_size=c["lm_hidden_size"], num_layers=c["lm_layers"],
                           num_heads=c["lm_heads"], max_positions=c["lm_max_positions"],
                           bos_token_id=c["bos_token_id"], eos_token_id=c["eos_token_id"],
                           pad_token_id=c.get("pad_token_id", 0)))
    return Blip2Stage2(QFormer(q), lm).eval()


class Stage2Reference:
    """Parts of the `blip2-stage2` family backed by reference/blip2/stage2.py."""

    name = "reference"

    def build(self, config: Mapping[str, Any]) -> Blip2Stage2:
        return stage2_model(config)

    @staticmethod
    def language_model(model):
        return model.lm

    @staticmethod
    def prompts(model, image_embeds):
        return model.prompts(image_embeds)

    @staticmethod
    def lm_inputs(model, image_embeds, input_ids, attention_mask):
        return model.lm_inputs(image_embeds, input_ids, attention_mask)

    @staticmethod
    def loss(model, image_embeds, input_ids, attention_mask):
        return model(image_embeds, input_ids, attention_mask)

    @staticmethod
    def optimizer(model, lr, weight_decay):
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)

    @staticmethod
    def generate(model, image_embeds, num_beams=3, max_length=20, min_length=1, use_cache=True):
        return model.generate(image_embeds, num_beams=num_beams, max_length=max_length, min_length=min_length,
                              use_cache=use_cache)


REFERENCE = Stage2Reference()
