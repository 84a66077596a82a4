"""ITC with the momentum queue and momentum distillation (ALBEF §3.2-3.3; salesforce/ALBEF
models/model_pretrain.py forward, salesforce/BLIP models/blip_pretrain.py and blip_retrieval.py forward).

Columns are the batch's momentum keys then the queue's; targets are (1 - alpha) * same-image one-hot + alpha *
softmax of the momentum similarities over the SAME columns. Published pitfalls:
- pre-training builds the targets with `fill_diagonal_(1)`, so a second caption of the same image, in the batch or
  in the queue, is a negative (ALBEF #126 asks exactly this; COCO has 5 captions per image);
- BLIP's retrieval fine-tuning computes id-based targets `pos_idx / pos_idx.sum(1)` and then overwrites them with
  `sim_targets.fill_diagonal_(1)` inside the momentum block, so the ids are never used (BLIP #41).
The loss is checked against its definition computed here in float64."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

from cases.interface.albef import unit_rows

pytestmark = [pytest.mark.albef]
E, TEMP = 8, 0.1
SAME_IMAGE = pytest.mark.case(stands_for="captions of the same image, in the batch or in the queue, are ITC "
                                         "positives (ALBEF #126, BLIP #41)", stage="ITC loss with the queue")
DEFINITION = pytest.mark.case(stands_for="ITC against [batch ; queue] with momentum-distilled soft targets "
                                         "(alpha = 0 is plain ITC)", stage="ITC loss with the queue")


def features(B, n, seed):
    """online (B, E) x2, momentum (B, E) x2, queue (n, E) x2, all unit rows."""
    return [unit_rows(k, E, seed * 10 + i) for i, k in enumerate((B, B, B, B, n, n))]


def definition(img, txt, img_m, txt_m, q_img, q_txt, q_ids, ids, temp, alpha):
    """The loss from its definition, row by row, in float64."""
    cols_txt = torch.cat([txt_m, q_txt]).double()
    cols_img = torch.cat([img_m, q_img]).double()
    col_ids = torch.cat([ids, q_ids]).tolist()
    total = 0.0
    for online, online_m, cols in ((img, img_m, cols_txt), (txt, txt_m, cols_img)):
        for b in range(img.shape[0]):
            positives = torch.tensor([float(c == int(ids[b])) for c in col_ids], dtype=torch.float64)
            hard = positives / positives.sum()
            soft = torch.softmax(cols @ online_m[b].double() / temp, dim=0)
            target = alpha * soft + (1 - alpha) * hard
            total += -(target * torch.log_softmax(cols @ online[b].double() / temp, dim=0)).sum() / img.shape[0]
    return total / 2


def loss(api, feats, q_ids, ids, alpha, temp=TEMP):
    img, txt, img_m, txt_m, q_img, q_txt = feats
    return api.itc_queue_loss(img, txt, img_m, txt_m, q_img, q_txt, q_ids, ids, temp, alpha)


@DEFINITION
@given(B=st.integers(1, 5), seed=st.integers(0, 999))
def test_alpha_zero_with_an_empty_queue_is_in_batch_itc(api, B, seed):
    img, txt, img_m, txt_m, _, _ = feats = features(B, 0, seed)
    got = loss(api, feats, torch.zeros(0, dtype=torch.long), torch.arange(B), 0.0)
    targets = torch.arange(B)
    expected = (F.cross_entropy(img @ txt_m.t() / TEMP, targets) + F.cross_entropy(txt @ img_m.t() / TEMP, targets)) / 2
    torch.testing.assert_close(torch.as_tensor(got).float(), expected, atol=1e-5, rtol=1e-5)


@DEFINITION
@given(B=st.integers(1, 4), n=st.integers(1, 6), seed=st.integers(0, 999), alpha=st.sampled_from([0.0, 1.0]))
def test_queue_keys_are_extra_columns_of_the_loss(api, B, n, seed, alpha):
    """Distinct images everywhere: alpha 0 = the queue as extra negatives; alpha 1 = soft targets from the momentum
    similarities over batch AND queue columns."""
    feats = features(B, n, seed)
    ids, q_ids = torch.arange(B), 100 + torch.arange(n)
    got = loss(api, feats, q_ids, ids, alpha)
    torch.testing.assert_close(torch.as_tensor(got).double(), definition(*feats, q_ids, ids, TEMP, alpha),
                               atol=1e-4, rtol=1e-4)


@DEFINITION
@given(B=st.integers(1, 4), n=st.integers(0, 5), seed=st.integers(0, 999), alpha=st.floats(0.0, 1.0))
def test_alpha_mixes_the_two_targets_linearly(api, B, n, seed, alpha):
    feats = features(B, n, seed)
    ids, q_ids = torch.arange(B), 100 + torch.arange(n)
    mixed = (1 - alpha) * loss(api, feats, q_ids, ids, 0.0) + alpha * loss(api, feats, q_ids, ids, 1.0)
    torch.testing.assert_close(torch.as_tensor(loss(api, feats, q_ids, ids, alpha)), torch.as_tensor(mixed),
                               atol=1e-4, rtol=1e-4)


@DEFINITION
@given(B=st.integers(1, 4), n=st.integers(2, 6), seed=st.integers(0, 999), alpha=st.floats(0.0, 1.0),
       data=st.data())
def test_loss_is_invariant_to_the_queue_order(api, B, n, seed, alpha, data):
    img, txt, img_m, txt_m, q_img, q_txt = features(B, n, seed)
    ids = torch.arange(B)
    q_ids = torch.tensor(data.draw(st.lists(st.integers(0, B + 2), min_size=n, max_size=n)))
    perm = torch.tensor(data.draw(st.permutations(list(range(n)))))
    a = api.itc_queue_loss(img, txt, img_m, txt_m, q_img, q_txt, q_ids, ids, TEMP, alpha)
    b = api.itc_queue_loss(img, txt, img_m, txt_m, q_img[perm], q_txt[perm], q_ids[perm], ids, TEMP, alpha)
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), atol=1e-5, rtol=1e-5)


@SAME_IMAGE
@given(B=st.integers(2, 5), seed=st.integers(0, 999))
def test_two_captions_of_one_image_in_the_batch_are_positives(api, B, seed):
    """Rows 0 and 1: two views of one image (different features, same id) with two of its captions: swapping the
    captions changes nothing, and the loss is the definition."""
    img, txt, img_m, txt_m, q_img, q_txt = features(B, 0, seed)
    ids, q_ids = torch.arange(B), torch.zeros(0, dtype=torch.long)
    ids[1] = 0
    swap = torch.arange(B)
    swap[[0, 1]] = swap[[1, 0]]
    a = api.itc_queue_loss(img, txt, img_m, txt_m, q_img, q_txt, q_ids, ids, TEMP, 0.0)
    b = api.itc_queue_loss(img, txt[swap], img_m, txt_m[swap], q_img, q_txt, q_ids, ids, TEMP, 0.0)
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.as_tensor(a).double(),
                               definition(img, txt, img_m, txt_m, q_img, q_txt, q_ids, ids, TEMP, 0.0),
                               atol=1e-4, rtol=1e-4)


@SAME_IMAGE
@given(B=st.integers(1, 4), n=st.integers(1, 6), seed=st.integers(0, 999), alpha=st.sampled_from([0.0, 0.4]),
       data=st.data())
def test_captions_of_a_batch_image_in_the_queue_are_positives(api, B, n, seed, alpha, data):
    feats = features(B, n, seed)
    ids = torch.arange(B)
    q_ids = torch.tensor(data.draw(st.lists(st.integers(0, B - 1), min_size=n, max_size=n)))  # all seen in the batch
    got = loss(api, feats, q_ids, ids, alpha)
    torch.testing.assert_close(torch.as_tensor(got).double(), definition(*feats, q_ids, ids, TEMP, alpha),
                               atol=1e-4, rtol=1e-4)
