"""Family `blip`: BLIP's own mechanisms: the text encoder / decoder that share all but self-attention, their inputs,
the captioner's nucleus sampling and the CapFilt filter. (BLIP's ITC with the momentum queue and its ITM hard
negatives are ALBEF's: family `albef`.)

Conventions (shared by every part):
- `build_blip(config)` takes TINY_CONFIG's keys and returns a model with random weights (seeded by the caller's
  torch.manual_seed), in eval mode (no dropout), on the CPU; patch_feats (B, N, patch_width) are frozen patch features
  its trainable image encoder reads.
- input_ids (B, T) are [CLS] words [SEP] [PAD]..., attention_mask (B, T) 1 = token; token ids follow TOKENS.
- CapFilt pairs are (image_id, text) tuples.
"""

from cases.interface import Family
from cases.interface.albef import random_batch, unit_rows  # noqa: F401  (the same batches serve both families)

FAMILY = Family(
    name="blip",
    reference_spec="reference.blip.api:REFERENCE",
    parts={
        "build_blip": "build_blip(config: dict) -> BLIP model (random weights, eval mode, CPU)",
        "text_encoder": "text_encoder(model) -> nn.Module: the unimodal / image-grounded text encoder",
        "text_decoder": "text_decoder(model) -> nn.Module: the image-grounded text decoder, without its LM head",
        "self_attention_parameters": "self_attention_parameters(model, module) -> list of the self-attention "
                                     "parameters of that text encoder or decoder",
        "decoder_loss": "decoder_loss(model, patch_feats, input_ids, attention_mask) -> scalar captioning (LM) loss",
        "encoder_inputs": "encoder_inputs(input_ids, enc_token_id) -> ids with [ENC] first",
        "decoder_inputs": "decoder_inputs(input_ids, attention_mask, dec_token_id) -> (ids with [DEC] first, labels "
                          "with -100 at padding)",
        "top_p_filter": "top_p_filter(logits (B,V), top_p) -> logits with -inf outside each row's nucleus",
        "generate_captions": "generate_captions(model, patch_feats, max_length, min_length, top_p, generator=None) -> (B, L) ids after "
                    "[DEC], [SEP] included when produced, then [PAD]",
        "filter_keep": "filter_keep(itm_logits (N,2), threshold) -> (N,) bool: keep iff P(match) >= threshold",
        "bootstrap": "bootstrap(web, synthetic, keep_web, keep_synthetic) -> list of the kept (image_id, text) pairs",
        "blip_losses": "blip_losses(model, patch_feats, input_ids, attention_mask, image_ids=None, generator=None) -> dict of "
                  "scalar 'itc', 'itm', 'lm' (one training step)",
    },
)

TOKENS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "dec": 4, "enc": 39, "vocab_size": 40}

TINY_CONFIG = {
    "vocab_size": 40, "hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 48,
    "patch_width": 24, "image_dim": 32, "image_depth": 1, "embed_dim": 16, "max_text_len": 16, "queue_size": 8,
    "momentum": 0.995, "alpha": 0.4,
    "pad_token_id": 0, "cls_token_id": 2, "sep_token_id": 3, "dec_token_id": 4, "enc_token_id": 39,
}
