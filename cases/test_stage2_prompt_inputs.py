"""BLIP-2 stage 2 feeds the LM [Q soft prompts ; text embeddings]: exactly num_query_tokens prompt vectors
(the projected Q-Former outputs, nothing else) before the LM's own word embeddings of the text, with the
prompts unmasked. Public re-implementations have appended the prompts after the text, dropped or repeated
the [BOS] embedding, or fed the Q-Former outputs without the projection (a width mismatch hidden by equal
toy widths)."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.interface.blip2_stage2 import TINY_CONFIG, random_batch

pytestmark = [getattr(pytest.mark, "blip2-stage2"),
              pytest.mark.case(stands_for="the LM receives exactly Q projected prompt embeddings, then the text's",
                               stage="LM inputs")]
Q = TINY_CONFIG["num_query_tokens"]


@pytest.fixture(scope="module")
def model(api):
    torch.manual_seed(0)
    return api.build(TINY_CONFIG)


def captured_lm_inputs(api, model, images, ids, mask) -> dict:
    """The inputs_embeds / attention_mask the LM's forward receives during loss()."""
    seen = {}
    lm = api.language_model(model)

    def hook(module, args, kwargs):
        seen["inputs_embeds"] = kwargs.get("inputs_embeds")
        seen["attention_mask"] = kwargs.get("attention_mask")

    handle = lm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            api.loss(model, images, ids, mask)
    finally:
        handle.remove()
    return seen


def check_prompt_inputs(api, model, batch: int, text_len: int, seed: int) -> None:
    images, ids, mask = random_batch(TINY_CONFIG, batch, text_len, seed=seed)
    seen = captured_lm_inputs(api, model, images, ids, mask)
    embeds = seen["inputs_embeds"]
    assert embeds is not None, "the LM was not called with inputs_embeds"
    with torch.no_grad():
        prompts = api.prompts(model, images)
        words = api.language_model(model).get_input_embeddings()(ids)
    H = words.shape[-1]
    assert tuple(prompts.shape) == (batch, Q, H), f"prompts {tuple(prompts.shape)}, expected {(batch, Q, H)}"
    assert tuple(embeds.shape) == (batch, Q + text_len, H), \
        f"LM inputs {tuple(embeds.shape)}, expected (B, Q + T, H) = {(batch, Q + text_len, H)}"
    torch.testing.assert_close(embeds[:, :Q], prompts, msg="the first Q LM inputs are not the prompts")
    torch.testing.assert_close(embeds[:, Q:], words, msg="the LM inputs after the prompts are not the text's")
    if seen["attention_mask"] is not None:
        expected = torch.cat([torch.ones(batch, Q, dtype=mask.dtype), mask], dim=1)
        assert torch.equal(seen["attention_mask"].long(), expected.long()), "prompt / text attention mask"


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 4), text_len=st.integers(3, 12), seed=st.integers(0, 2**16))
def test_lm_receives_q_prompts_then_the_text(api, model, batch, text_len, seed):
    check_prompt_inputs(api, model, batch, text_len, seed)


def test_lm_inputs_part_agrees_with_what_the_lm_receives(api, model):
    images, ids, mask = random_batch(TINY_CONFIG, 3, 9, seed=1)
    embeds, full_mask, _ = api.lm_inputs(model, images, ids, mask)
    seen = captured_lm_inputs(api, model, images, ids, mask)
    torch.testing.assert_close(embeds.detach(), seen["inputs_embeds"].detach())
    assert torch.equal(full_mask.long(), torch.cat([torch.ones(3, Q, dtype=torch.long), mask], dim=1))
