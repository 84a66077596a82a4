"""transformers' BLIP-2 as an implementation of the `qformer` case family (cases/interface/qformer.py).

`build` makes a `Blip2ForImageTextRetrieval` from a tiny random `Blip2Config` (no weights are downloaded). The
case family starts at the frozen image features, so the vision tower is replaced by `FrozenFeatures`, which hands
the case's image features through as the vision model's output; everything after it is the library's own code:
- query_pass / text_pass / itm_pass: `model.qformer` (Blip2QFormerModel) fed by `model.query_tokens` and
  `model.embeddings` (Blip2TextEmbeddings), called as Blip2ForImageTextRetrieval.forward calls them;
- itm_logits / itc_scores: `Blip2ForImageTextRetrieval.forward(use_image_text_matching_head=True / False)`
  (`logits_per_image`: ITM logits of pair b, or the max-over-queries cosine similarity of every pair).
Not provided, because transformers has no counterpart: the stage-1 losses (ITC / ITM / ITG), the ITG decoder
(no LM head on the Q-Former, no causal mask), hard-negative sampling, the feature gather, caption generation from
the Q-Former, retrieval re-ranking, and the ITC similarity / loss as functions of given features.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class FrozenFeatures(nn.Module):
    """Stand-in for the frozen vision tower: its output IS the image features the case supplies (B, N, width)."""

    def forward(self, pixel_values: torch.Tensor, **_: Any):
        return (pixel_values,)


class TransformersBlip2:
    name = "transformers-blip2"

    def build(self, config: Mapping[str, Any]):
        from transformers import Blip2Config, Blip2ForImageTextRetrieval

        c = dict(config)
        dtype = c.get("dtype", "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
        width = c["image_width"]
        vision = dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
                      num_attention_heads=next(h for h in (4, 3, 2, 1) if width % h == 0), image_size=8, patch_size=4)
        qformer = dict(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_layers"],
                       num_attention_heads=c["num_heads"], intermediate_size=c["intermediate_size"],
                       max_position_embeddings=c.get("max_text_len", 64),
                       cross_attention_frequency=c.get("cross_attention_freq", 2), encoder_hidden_size=width,
                       use_qformer_text_input=True, pad_token_id=c.get("pad_token_id", 0))
        model = Blip2ForImageTextRetrieval(Blip2Config(vision_config=vision, qformer_config=qformer,
                                                       num_query_tokens=c["num_query_tokens"],
                                                       image_text_hidden_size=c.get("embed_dim", 256)))
        model.vision_model = FrozenFeatures()
        return model.eval().to(_DTYPES[dtype])

    # -- passes, as Blip2ForImageTextRetrieval.forward runs them -----------------------------------
    @staticmethod
    def _ones(x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[:2], dtype=torch.long, device=x.device)

    def query_pass(self, model, image_embeds):
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        return model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds,
                             encoder_attention_mask=self._ones(image_embeds)).last_hidden_state

    def text_pass(self, model, input_ids, attention_mask):
        return model.qformer(query_embeds=model.embeddings(input_ids=input_ids), query_length=0,
                             attention_mask=attention_mask).last_hidden_state

    def itm_pass(self, model, image_embeds, input_ids, attention_mask):
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        mask = torch.cat([self._ones(queries), attention_mask], dim=1)
        return model.qformer(query_embeds=model.embeddings(input_ids=input_ids, query_embeds=queries),
                             query_length=queries.shape[1], attention_mask=mask, encoder_hidden_states=image_embeds,
                             encoder_attention_mask=self._ones(image_embeds)).last_hidden_state

    # -- model-level scores: the library's forward -------------------------------------------------
    def itm_logits(self, model, image_embeds, input_ids, attention_mask):
        return model(pixel_values=image_embeds, input_ids=input_ids, attention_mask=attention_mask,
                     use_image_text_matching_head=True).logits_per_image

    def itc_scores(self, model, image_embeds, input_ids, attention_mask):
        return model(pixel_values=image_embeds, input_ids=input_ids, attention_mask=attention_mask,
                     use_image_text_matching_head=False).logits_per_image


TRANSFORMERS_BLIP2 = TransformersBlip2()
