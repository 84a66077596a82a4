"""A re-creation, in our own code and from the published code's behaviour, of the pitfalls of the public BLIP code
(salesforce/BLIP models/blip_pretrain.py, blip_retrieval.py, blip.py), to show that the albef and blip cases catch
them. BLIP takes its ITC, queue and ITM sampling from ALBEF, pitfalls included, so `BlipPublic` provides the `albef`
family's parts with those behaviours (cases/known_bad/albef_public.py) besides its own:

- "random_queue", "divisible_queue" (BLIP #101), "no_process_group": as ALBEF's;
- "diagonal_targets": blip_pretrain.py builds `fill_diagonal_(1)` targets, and blip_retrieval.py computes the id
  targets `pos_idx / pos_idx.sum(1)` and then overwrites them with `fill_diagonal_(1)` (BLIP #41);
- "multinomial": `softmax(sim) + 1e-4`, `fill_diagonal_(0)`, one `torch.multinomial` per row (the 1e-4 is the fix of
  BLIP #76: batch 1 and NaN rows still raise, same-image captions are still drawn);
- "inplace_first_token": `text.input_ids[:,0] = self.tokenizer.bos_token_id` (BLIP_Decoder.forward) and
  `= enc_token_id` (BLIP_Base, multimodal) write into the caller's tensor.

BLIP has no MLM and no ALBEF model, so those `albef` parts are absent (their cases fail for the missing part). The
encoder / decoder sharing (`tie_encoder_decoder_weights(..., '/attention')`), the decoding (transformers' generate)
and CapFilt (not in the public repository) have no published pitfall here and come from the reference.
`BLIP_PUBLIC` has every behaviour (expected failures: expected_failures/blip-public.txt).
"""

from __future__ import annotations

from cases.known_bad.albef_public import AlbefPublic, public_step
from reference.blip.api import BlipReference

ALL_BUGS = frozenset({"random_queue", "divisible_queue", "diagonal_targets", "multinomial", "no_process_group",
                      "inplace_first_token"})


class BlipPublic(AlbefPublic, BlipReference):
    eps = 1e-4
    mask_tokens = None  # BLIP replaced MLM by language modelling
    mlm_loss = None
    build_albef = None
    albef_losses = None

    def encoder_inputs(self, input_ids, enc_token_id):
        if "inplace_first_token" not in self.bugs:
            return super().encoder_inputs(input_ids, enc_token_id)
        input_ids[:, 0] = enc_token_id
        return input_ids

    def decoder_inputs(self, input_ids, attention_mask, dec_token_id):
        if "inplace_first_token" not in self.bugs:
            return super().decoder_inputs(input_ids, attention_mask, dec_token_id)
        input_ids[:, 0] = dec_token_id
        return input_ids, input_ids.masked_fill(attention_mask == 0, -100)

    def blip_losses(self, model, patch_feats, input_ids, attention_mask, image_ids=None, generator=None):
        if "no_process_group" not in self.bugs:
            return super().blip_losses(model, patch_feats, input_ids, attention_mask, image_ids, generator)
        return public_step(model, patch_feats, input_ids, attention_mask, image_ids, generator)


BLIP_PUBLIC = BlipPublic("blip-public", ALL_BUGS)
