"""The MLM loss with momentum distillation (ALBEF §3.3; salesforce/ALBEF models/xbert.py BertForMaskedLM.forward):
(1 - alpha) * cross-entropy at the selected positions + alpha * cross-entropy against the momentum model's softmax
at the same positions. `CrossEntropyLoss()(..., labels)` and `loss_distill[labels != -100].mean()` are both NaN when
no token of the batch was selected, which 15% masking of short captions makes a regular event; one NaN step
poisons the weights."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

pytestmark = [pytest.mark.albef]
V = 12


def logits_and_labels(B, T, seed, selected_fraction):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=gen, requires_grad=True)
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[torch.rand(B, T, generator=gen) >= selected_fraction] = -100
    soft = torch.softmax(torch.randn(B, T, V, generator=gen), dim=-1)
    return logits, labels, soft


@pytest.mark.case(stands_for="MLM loss NaN when no token was selected (mean over nothing)", stage="MLM loss")
@pytest.mark.parametrize("alpha", [0.0, 0.4])
def test_a_batch_without_selected_tokens_gives_zero(api, alpha):
    logits, labels, soft = logits_and_labels(3, 5, 0, 0.0)
    assert (labels == -100).all()
    loss = api.mlm_loss(logits, labels, soft, alpha)
    value = float(loss.detach())
    assert value == 0.0, f"loss {value} for a batch with nothing masked"
    loss.backward()
    assert logits.grad is None or not logits.grad.any()


@pytest.mark.case(stands_for="MLM loss = (1-alpha) CE + alpha soft CE over the selected positions only",
                  stage="MLM loss")
@given(B=st.integers(1, 4), T=st.integers(1, 6), seed=st.integers(0, 999), alpha=st.floats(0.0, 1.0))
def test_loss_is_the_mixture_over_selected_positions(api, B, T, seed, alpha):
    logits, labels, soft = logits_and_labels(B, T, seed, 0.5)
    labels[0, 0] = 3  # at least one selected position
    sel = labels != -100
    hard = F.cross_entropy(logits[sel].double(), labels[sel])
    distilled = -(soft[sel].double() * torch.log_softmax(logits[sel].double(), dim=-1)).sum(-1).mean()
    got = api.mlm_loss(logits, labels, soft, alpha)
    torch.testing.assert_close(torch.as_tensor(got).double(), (1 - alpha) * hard + alpha * distilled,
                               atol=1e-5, rtol=1e-5)
