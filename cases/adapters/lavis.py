"""The real LAVIS (salesforce-lavis 1.0.2 from the package index) as an implementation of the `qformer` family.

Runs in its own environment (`tox -e lavis`): LAVIS pins `transformers<4.27,>=4.25.0` (pip takes 4.26.1) and
imports torchvision, whose package-index build does not import beside the local torch 2.13.0 CPU wheel, so that
environment uses torch 2.14.1 + torchvision 0.29.1; opencv-python-headless 4.5.5.64 (pinned by LAVIS) needs
numpy < 2, hence pandas < 2.3, scikit-image < 0.25, scipy < 1.14. Importing this module elsewhere raises.

No weights are downloaded. `Blip2Qformer.__init__` cannot run offline (BertTokenizer.from_pretrained,
BertConfig / BertLMHeadModel.from_pretrained("bert-base-uncased"), the EVA ViT-g checkpoint), so `build` does
what it does with local pieces: `BertLMHeadModel(BertConfig(...))` with LAVIS's Q-Former settings (encoder_width,
add_cross_attention, cross_attention_freq, query_length), query tokens N(0, 0.02), the `_query` weights copied
from their text twins, vision_proj / text_proj / itm_head / temp, all on a `Blip2Qformer` instance. Stand-ins:
the frozen vision tower and its LayerNorm are identities (the family starts at the image features), and the
tokenizer hands the case's token ids through (`PassThroughTokenizer`). Every forward is LAVIS's own code:
- query_pass: Blip2Qformer.forward_image; text_pass / itm_pass / itg_logits: `model.Qformer.bert` and
  `model.Qformer` called as Blip2Qformer.forward calls them; losses: Blip2Qformer.forward (samples carry
  "image_id" only when the case gives image ids); gather_features: lavis.models.base_model.concat_all_gather
  (the ITC feature gather); generate: Blip2Qformer.generate (LAVIS counts the [DEC] prompt in max_length /
  min_length, the family counts tokens after it: +1 each; LAVIS has no cache switch, so use_cache is unused).
Not provided (LAVIS computes them inline in forward, with no function to call): itc_similarity, itc_loss,
sample_hard_negatives, itm_logits, itc_scores; rerank_scores: compute_sim_matrix computes its own similarities
from a model and a data loader, it cannot take the case's matrix (tests/test_adapters_lavis.py calls it directly:
k_test larger than the gallery raises).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

try:
    from lavis.models.base_model import concat_all_gather
    from lavis.models.blip2_models.blip2_qformer import Blip2Qformer
    from lavis.models.blip2_models.Qformer import BertLMHeadModel
    from transformers import BatchEncoding, BertConfig
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(f"cases.adapters.lavis needs salesforce-lavis: run it with `tox -e lavis` ({err})") from err

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class PassThroughTokenizer:
    """Stand-in for LAVIS's BERT tokenizer (which needs a download): `text` is already (input_ids, attention_mask);
    batch_decode returns the generated ids."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.bos_token_id = config["dec_token_id"]  # LAVIS adds [DEC] as the tokenizer's bos token
        self.pad_token_id = config.get("pad_token_id", 0)
        self.sep_token_id = config["sep_token_id"]

    def __call__(self, text, **_: Any) -> BatchEncoding:
        input_ids, attention_mask = text
        return BatchEncoding({"input_ids": input_ids, "attention_mask": attention_mask})

    def batch_decode(self, ids, skip_special_tokens: bool = True):
        return ids


def _ones(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[:2], dtype=torch.long, device=x.device)


class Lavis:
    name = "lavis"

    def build(self, config: Mapping[str, Any]) -> Blip2Qformer:
        c = dict(config)
        dtype = c.get("dtype", "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(_DTYPES)}")
        bert = BertConfig(vocab_size=c["vocab_size"], hidden_size=c["hidden_size"], num_hidden_layers=c["num_layers"],
                          num_attention_heads=c["num_heads"], intermediate_size=c["intermediate_size"],
                          max_position_embeddings=c.get("max_text_len", 64), pad_token_id=c.get("pad_token_id", 0))
        bert.encoder_width = c["image_width"]  # as Blip2Base.init_Qformer sets them
        bert.add_cross_attention = True
        bert.cross_attention_freq = c.get("cross_attention_freq", 2)
        bert.query_length = c["num_query_tokens"]
        model = Blip2Qformer.__new__(Blip2Qformer)
        nn.Module.__init__(model)
        model.tokenizer = PassThroughTokenizer(c)
        model.visual_encoder, model.ln_vision = nn.Identity(), nn.Identity()
        model.Qformer = BertLMHeadModel(bert)
        model.query_tokens = nn.Parameter(torch.zeros(1, c["num_query_tokens"], bert.hidden_size))
        model.query_tokens.data.normal_(mean=0.0, std=bert.initializer_range)
        state = model.Qformer.state_dict()
        for name, param in model.Qformer.named_parameters():  # as Blip2Qformer.__init__ does
            if "_query" in name:
                param.data.copy_(state[name.replace("_query", "")])
        embed_dim = c.get("embed_dim", 256)
        model.vision_proj = nn.Linear(bert.hidden_size, embed_dim)
        model.text_proj = nn.Linear(bert.hidden_size, embed_dim)
        model.itm_head = nn.Linear(bert.hidden_size, 2)
        model.temp = nn.Parameter(0.07 * torch.ones([]))
        model.max_txt_len = c.get("max_text_len", 32)
        return model.eval().to(_DTYPES[dtype])

    # -- passes ----------------------------------------------------------------------------------
    def query_pass(self, model, image_embeds):
        return model.forward_image(image_embeds)[0]

    def text_pass(self, model, input_ids, attention_mask):
        return model.Qformer.bert(input_ids, attention_mask=attention_mask, return_dict=True).last_hidden_state

    def itm_pass(self, model, image_embeds, input_ids, attention_mask):
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        return model.Qformer.bert(input_ids, query_embeds=queries,
                                  attention_mask=torch.cat([_ones(queries), attention_mask], dim=1),
                                  encoder_hidden_states=image_embeds, encoder_attention_mask=_ones(image_embeds),
                                  return_dict=True).last_hidden_state

    def itg_logits(self, model, image_embeds, decoder_ids, attention_mask):
        queries = model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_output = model.Qformer.bert(query_embeds=queries, encoder_hidden_states=image_embeds,
                                          encoder_attention_mask=_ones(image_embeds), use_cache=True, return_dict=True)
        return model.Qformer(decoder_ids, attention_mask=torch.cat([_ones(queries), attention_mask], dim=1),
                             past_key_values=query_output.past_key_values, return_dict=True).logits

    # -- stage 1 ---------------------------------------------------------------------------------
    def losses(self, model, image_embeds, input_ids, attention_mask, image_ids=None, generator=None):
        samples = {"image": image_embeds, "text_input": (input_ids, attention_mask)}
        if image_ids is not None:
            samples["image_id"] = torch.as_tensor(image_ids)
        with torch.random.fork_rng():  # LAVIS samples its hard negatives from the global generator
            if generator is not None:
                torch.manual_seed(generator.initial_seed())
            out = model(samples)
        return {"itc": out.loss_itc, "itm": out.loss_itm, "itg": out.loss_lm, "loss": out.loss}

    @staticmethod
    def gather_features(x):
        return concat_all_gather(x)

    # -- captioning ------------------------------------------------------------------------------
    def generate(self, model, image_embeds, num_beams=3, max_length=30, min_length=10, use_cache=True):
        ids = model.generate({"image": image_embeds}, num_beams=num_beams, max_length=max_length + 1,
                             min_length=min_length + 1)
        return ids[:, 1:]  # drop the [DEC] prompt


LAVIS = Lavis()
