"""Each stage-2 case (cases/test_stage2_*.py) fails on a replica with the one bug it stands for, and
passes on the reference: the cases can fail, and for the reason they name."""

import pytest
import torch

from cases import test_stage2_frozen_lm as frozen
from cases import test_stage2_generation_cache as cache
from cases import test_stage2_loss_mask as loss_mask
from cases import test_stage2_prompt_inputs as prompt_inputs
from cases.interface.blip2_stage2 import TINY_CONFIG
from reference.blip2.stage2 import Blip2Stage2
from reference.blip2.stage2_api import REFERENCE, Stage2Reference
from reference.blip2.losses import lm_loss


class PromptsAfterText(Blip2Stage2):
    def lm_inputs(self, image_embeds, input_ids, attention_mask):
        embeds, mask, labels = super().lm_inputs(image_embeds, input_ids, attention_mask)
        Q = self.num_query_tokens
        return (torch.cat([embeds[:, Q:], embeds[:, :Q]], 1), torch.cat([mask[:, Q:], mask[:, :Q]], 1),
                torch.cat([labels[:, Q:], labels[:, :Q]], 1))


class LabelsOnPad(Blip2Stage2):
    def lm_inputs(self, image_embeds, input_ids, attention_mask):
        embeds, mask, _ = super().lm_inputs(image_embeds, input_ids, attention_mask)
        Q = self.num_query_tokens
        labels = torch.cat([input_ids.new_full((input_ids.shape[0], Q), -100), input_ids], 1)  # PAD is a target
        return embeds, mask, labels

    def forward(self, image_embeds, input_ids, attention_mask):
        embeds, mask, labels = self.lm_inputs(image_embeds, input_ids, attention_mask)
        return lm_loss(self.lm(inputs_embeds=embeds, attention_mask=mask).logits, labels, 0.0)


class CacheRestartsPositions(Blip2Stage2):
    def _step(self, tokens, state, use_cache):
        prompts, kv = state
        if use_cache and kv is not None:  # the new token gets position 0 again
            out = self.lm(input_ids=tokens[:, -1:], cache=kv, use_cache=True,
                          position_ids=torch.zeros(tokens.shape[0], 1, dtype=torch.long))
            return torch.log_softmax(out.logits[:, -1].float(), -1), (prompts, out.cache)
        return super()._step(tokens, state, use_cache)


def replica(cls, unfreeze=False):
    class Replica(Stage2Reference):
        name = cls.__name__

        def build(self, config):
            model = REFERENCE.build(config)
            model.__class__ = cls
            if unfreeze:
                model.lm.requires_grad_(True)
            return model

    return Replica()


def test_the_reference_passes_every_check():
    torch.manual_seed(0)
    model = REFERENCE.build(TINY_CONFIG)
    prompt_inputs.check_prompt_inputs(REFERENCE, model, 2, 6, 0)
    loss_mask.check_labels(REFERENCE, model, 2, 6, 0)
    loss_mask.check_loss_by_hand(REFERENCE, model, 3, 6, 0)
    frozen.check_no_lm_gradient(REFERENCE)
    frozen.check_lm_bit_identical_after_steps(REFERENCE)
    cache.check_cache_equals_recompute(REFERENCE, cache.sharpened(REFERENCE), 1)


def test_prompts_after_the_text_fail_the_prompt_case():
    bad = replica(PromptsAfterText)
    torch.manual_seed(0)
    with pytest.raises(AssertionError, match="first Q LM inputs are not the prompts"):
        prompt_inputs.check_prompt_inputs(bad, bad.build(TINY_CONFIG), 2, 6, 0)


def test_labels_on_pad_fail_the_loss_case():
    bad = replica(LabelsOnPad)
    torch.manual_seed(0)
    model = bad.build(TINY_CONFIG)
    with pytest.raises(AssertionError, match="-100 at PAD"):
        loss_mask.check_labels(bad, model, 3, 8, 1)
    with pytest.raises(AssertionError, match="loss"):
        loss_mask.check_loss_by_hand(bad, model, 3, 8, 1)


def test_an_unfrozen_lm_fails_the_frozen_case():
    bad = replica(Blip2Stage2, unfreeze=True)
    with pytest.raises(AssertionError, match="received gradients"):
        frozen.check_no_lm_gradient(bad)
    with pytest.raises(AssertionError, match="weights changed"):
        frozen.check_lm_bit_identical_after_steps(bad)


def test_a_cache_that_restarts_positions_fails_the_cache_case():
    bad = replica(CacheRestartsPositions)
    with pytest.raises(AssertionError, match="cached"):
        cache.check_cache_equals_recompute(bad, cache.sharpened(bad), 1)
