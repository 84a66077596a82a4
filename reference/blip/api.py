"""The reference BLIP as the parts of the `blip` case family (cases/interface/blip.py)."""

from __future__ import annotations

from typing import Any, Mapping

from reference.albef.api import encoder_configs
from reference.blip import capfilt, generate as generation
from reference.blip.model import Blip, BlipConfig, encoder_inputs, self_attention_parameters
from reference.blip2.losses import decoder_inputs


def blip_config(c: Mapping[str, Any]) -> BlipConfig:
    image, text = encoder_configs(c, 0)
    return BlipConfig(image=image, text=text, embed_dim=c["embed_dim"], momentum=c.get("momentum", 0.995),
                      queue_size=c.get("queue_size", 0), alpha=c.get("alpha", 0.4),
                      pad_token_id=c.get("pad_token_id", 0), cls_token_id=c["cls_token_id"],
                      sep_token_id=c["sep_token_id"], dec_token_id=c["dec_token_id"], enc_token_id=c["enc_token_id"])


class BlipReference:
    """Parts of the `blip` family backed by reference/blip."""

    name = "reference"

    encoder_inputs = staticmethod(encoder_inputs)
    decoder_inputs = staticmethod(decoder_inputs)
    top_p_filter = staticmethod(generation.top_p_filter)

    @staticmethod
    def build_blip(config: Mapping[str, Any]) -> Blip:
        return Blip(blip_config(config)).eval()

    @staticmethod
    def text_encoder(model):
        return model.text_encoder

    @staticmethod
    def text_decoder(model):
        return model.text_decoder

    @staticmethod
    def self_attention_parameters(model, module):
        return self_attention_parameters(module)

    @staticmethod
    def decoder_loss(model, patch_feats, input_ids, attention_mask):
        return model.lm_loss(model.image_pass(patch_feats)[0], input_ids, attention_mask)

    @staticmethod
    def generate_captions(model, patch_feats, max_length=20, min_length=1, top_p=0.9, generator=None):
        return generation.generate(model, patch_feats, max_length, min_length, top_p, sample=True, generator=generator)

    @staticmethod
    def filter_keep(itm_logits, threshold=0.5):
        return capfilt.keep_mask(capfilt.match_probability(itm_logits), threshold)

    @staticmethod
    def bootstrap(web, synthetic, keep_web, keep_synthetic):
        kept = capfilt.bootstrap([capfilt.Caption(i, t) for i, t in web],
                                 [capfilt.Caption(i, t, "synthetic") for i, t in synthetic], keep_web, keep_synthetic)
        return [(c.image_id, c.text) for c in kept]

    @staticmethod
    def blip_losses(model, patch_feats, input_ids, attention_mask, image_ids=None, generator=None):
        return model(patch_feats, input_ids, attention_mask, image_ids=image_ids, generator=generator)


REFERENCE = BlipReference()
