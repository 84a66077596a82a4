"""MLM masking (ALBEF §3.2, BERT's recipe; salesforce/ALBEF models/model_pretrain.py `mask()`): 15% of the words
selected, of those 80% -> [MASK], 10% -> a random word, 10% unchanged; labels -100 wherever nothing was selected.
Published behaviours:
- `mask()` protects only [PAD] and [CLS]: ALBEF's tokenizer drops [SEP] for single sentences (ALBEF #75), so with a
  standard BERT tokenizer (BLIP's keeps [SEP]) the end token is masked and predicted like a word;
- `mask()` writes [MASK] into the tensor it is given (`input_ids[indices_replaced] = mask_token_id`): its caller
  must clone first, or the ITC / ITM inputs of the same step see masked text."""

import pytest
import torch
from hypothesis import given, strategies as st

from cases.interface.albef import SPECIAL_IDS, TOKENS, random_batch

pytestmark = [pytest.mark.albef]
ALL_SELECTED = {**TOKENS, "probability": 1.0}


def drawn(B, T, seed):
    _, ids, mask = random_batch(B, T, seed=seed)
    return ids, mask


@pytest.mark.case(stands_for="mask() protects only [PAD] and [CLS]: [SEP] is masked (ALBEF #75 drops [SEP])",
                  stage="MLM masking")
@given(B=st.integers(1, 6), T=st.integers(3, 12), seed=st.integers(0, 999))
def test_special_tokens_are_never_selected(api, B, T, seed):
    ids, mask = drawn(B, T, seed)
    masked, labels = api.mask_tokens(ids.clone(), mask, ALL_SELECTED, generator=torch.Generator().manual_seed(seed))
    special = torch.isin(ids, torch.tensor(SPECIAL_IDS))
    assert torch.equal(torch.as_tensor(masked)[special], ids[special]), "a special token was replaced"
    assert (torch.as_tensor(labels)[special] == -100).all(), "a special token carries an MLM label"
    words = ~special & mask.bool()
    assert (torch.as_tensor(labels)[words] == ids[words]).all(), "with probability 1 every word is selected"


@pytest.mark.case(stands_for="MLM labels: the original id where selected, -100 everywhere else",
                  stage="MLM masking")
@given(B=st.integers(1, 6), T=st.integers(3, 12), seed=st.integers(0, 999), p=st.sampled_from([0.15, 0.5, 1.0]))
def test_labels_are_minus_100_exactly_where_nothing_was_selected(api, B, T, seed, p):
    ids, mask = drawn(B, T, seed)
    masked, labels = api.mask_tokens(ids.clone(), mask, {**TOKENS, "probability": p},
                                     generator=torch.Generator().manual_seed(seed))
    masked, labels = torch.as_tensor(masked), torch.as_tensor(labels)
    assert masked.shape == labels.shape == ids.shape
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected]), "a label is not the original token"
    assert not (masked != ids)[~selected].any(), "a token was changed without being selected"
    assert not selected[mask == 0].any(), "padding was selected"
    assert ((masked >= 0) & (masked < TOKENS["vocab_size"])).all()


@pytest.mark.case(stands_for="mask() writes [MASK] into the caller's input_ids", stage="MLM masking")
@given(seed=st.integers(0, 999))
def test_input_ids_are_left_unchanged(api, seed):
    ids, mask = drawn(4, 10, seed)
    before = ids.clone()
    api.mask_tokens(ids, mask, {**TOKENS, "probability": 0.5}, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(ids, before), "mask_tokens modified its input"


@pytest.mark.case(stands_for="BERT masking rates: 15% selected, then 80% [MASK] / 10% random / 10% unchanged",
                  stage="MLM masking")
def test_selection_and_replacement_rates(api):
    ids, mask = drawn(600, 16, 7)
    masked, labels = api.mask_tokens(ids.clone(), mask, TOKENS, generator=torch.Generator().manual_seed(7))
    masked, labels = torch.as_tensor(masked), torch.as_tensor(labels)
    words = mask.bool() & ~torch.isin(ids, torch.tensor(SPECIAL_IDS))
    selected = (labels != -100) & words  # rates among the words (specials are another case's business)
    n = int(selected.sum())
    rate = n / int(words.sum())
    as_mask = float((masked[selected] == TOKENS["mask"]).sum()) / n
    unchanged = float((masked[selected] == ids[selected]).sum()) / n
    # about 6000 words and 900 selected: 5 binomial standard deviations
    assert abs(rate - 0.15) < 0.025, f"selected {rate:.3f} of the words"
    assert abs(as_mask - 0.8) < 0.07, f"{as_mask:.3f} of the selected became [MASK]"
    assert abs(unchanged - 0.1) < 0.06, f"{unchanged:.3f} of the selected stayed unchanged"
    assert abs(1 - as_mask - unchanged - 0.1) < 0.06, "random replacements are not about 10%"
