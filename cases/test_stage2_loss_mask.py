"""The stage-2 loss is next-token cross-entropy over the text only: no label at the Q prompt positions and
none at PAD (labels -100 there), so the loss equals the cross-entropy computed by hand from the LM's logits
on the real text tokens and does not move when the ids under PAD change. (A label on the prompt positions
asks the LM to predict its own soft prompts; a label on PAD trains the model to emit padding.)"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cases.interface.blip2_stage2 import TINY_CONFIG, random_batch

pytestmark = [getattr(pytest.mark, "blip2-stage2"),
              pytest.mark.case(stands_for="the stage-2 loss ignores the prompt positions and PAD", stage="loss")]
Q = TINY_CONFIG["num_query_tokens"]


@pytest.fixture(scope="module")
def model(api):
    torch.manual_seed(0)
    return api.build(TINY_CONFIG)


def check_labels(api, model, batch, text_len, seed) -> None:
    images, ids, mask = random_batch(TINY_CONFIG, batch, text_len, seed=seed)
    _, _, labels = api.lm_inputs(model, images, ids, mask)
    assert tuple(labels.shape) == (batch, Q + text_len)
    assert (labels[:, :Q] == -100).all(), "the prompt positions carry labels"
    assert torch.equal(labels[:, Q:], ids.masked_fill(mask == 0, -100)), "text labels: ids, -100 at PAD"


def check_loss_by_hand(api, model, batch, text_len, seed) -> None:
    images, ids, mask = random_batch(TINY_CONFIG, batch, text_len, seed=seed)
    with torch.no_grad():
        embeds = torch.cat([api.prompts(model, images),
                            api.language_model(model).get_input_embeddings()(ids)], dim=1)
        full = torch.cat([torch.ones(batch, Q, dtype=mask.dtype), mask], dim=1)
        logits = api.language_model(model)(inputs_embeds=embeds, attention_mask=full).logits.float()
        # text token t (t >= 1, not PAD) is predicted at sequence position Q + t - 1; [BOS] at Q - 1
        targets = ids.masked_fill(mask == 0, -100)
        by_hand = F.cross_entropy(logits[:, Q - 1:-1].reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                  ignore_index=-100)
        got = api.loss(model, images, ids, mask)
        changed = ids.masked_fill(mask == 0, TINY_CONFIG["vocab_size"] - 1)  # other ids under PAD
        again = api.loss(model, images, changed, mask)
    torch.testing.assert_close(got.float(), by_hand, rtol=1e-5, atol=1e-5, msg="loss != CE over the text tokens")
    torch.testing.assert_close(again.float(), got.float(), rtol=1e-6, atol=1e-6, msg="loss depends on PAD ids")


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 4), text_len=st.integers(3, 12), seed=st.integers(0, 2**16))
def test_labels_are_minus_100_at_prompts_and_pad(api, model, batch, text_len, seed):
    check_labels(api, model, batch, text_len, seed)


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(2, 4), text_len=st.integers(3, 12), seed=st.integers(0, 2**16))
def test_loss_is_the_text_cross_entropy_and_ignores_pad(api, model, batch, text_len, seed):
    check_loss_by_hand(api, model, batch, text_len, seed)
