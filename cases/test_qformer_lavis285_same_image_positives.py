"""LAVIS #285 (also BLIP #41, ALBEF #126): with several captions per image in a batch (COCO has 5), ITC used
`arange(B)` targets, so a caption of the SAME image counted as a negative, and ITM could draw it as a "hard
negative" labelled no-match. The public fix takes a same-image branch only when the samples carry `image_id`:
then captions with equal ids are positives of each other (ITC targets spread over them, ITM never samples them).

Both sides are pinned (cases/interface/qformer.py, "Same-image positives"): WITH image ids the targets follow
the ids; WITHOUT ids nothing says two rows show one image, so each row's only positive is its own pair, even
when two rows hold identical features. Each case feeds the ITC loss (or the stage-1 forward, inside a
one-process group so that LAVIS #537 cannot stop it first) with reference-made, well-formed inputs.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from cases.interface.qformer import TINY_CONFIG, one_process_group, random_batch

pytestmark = pytest.mark.qformer

WITH_IDS = pytest.mark.case(stands_for="LAVIS #285: captions of one image (equal image ids) must be ITC positives",
                            stage="ITC loss targets, image ids given")
WITHOUT_IDS = pytest.mark.case(stands_for="without image ids each (image b, text b) pair is its own only positive",
                               stage="ITC loss targets, no image ids")
COCO_IDS = [9, 25, 30, 34, 36, 42, 49, 61, 139, 391895, 522418, 184613]  # real COCO ids: values are not 0..B-1


def feats(B, Q, seed):
    gen = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(B, Q, 8, generator=gen), dim=-1)
    txt = F.normalize(torch.randn(B, 8, generator=gen), dim=-1)
    return img, txt


def hand_itc(img, txt, temp, ids):
    """The ITC loss derived by hand, in float64: soft targets uniform over the same-id columns, label smoothing
    0.1 (0.9 * targets + 0.1 / B), cross-entropy averaged over rows, mean of both directions."""
    sim = torch.einsum("iqe,te->itq", img.double(), txt.double()).max(dim=-1).values / temp  # (B, B)
    pos = (ids[:, None] == ids[None, :]).double()
    targets = 0.9 * pos / pos.sum(dim=1, keepdim=True) + 0.1 / len(ids)  # symmetric: text b belongs to image b
    i2t = -(F.log_softmax(sim, dim=1) * targets).sum(dim=1).mean()
    t2i = -(F.log_softmax(sim.t(), dim=1) * targets).sum(dim=1).mean()
    return (i2t + t2i) / 2


@st.composite
def ids_with_a_repeat(draw, B):
    ids = draw(st.lists(st.sampled_from(COCO_IDS), min_size=B, max_size=B))
    ids[1] = ids[0]  # at least one image with two captions
    return torch.tensor(ids)


@WITH_IDS
@given(B=st.integers(2, 6), Q=st.integers(2, 4), seed=st.integers(0, 999), temp=st.floats(0.01, 0.5),
       data=st.data())
def test_itc_loss_with_image_ids_equals_the_hand_computed_loss(api, B, Q, seed, temp, data):
    img, txt = feats(B, Q, seed)
    ids = data.draw(ids_with_a_repeat(B))
    loss = torch.as_tensor(api.itc_loss(img, txt, temp, ids)).double()
    assert float(loss) == pytest.approx(float(hand_itc(img, txt, temp, ids)), abs=1e-5, rel=1e-5)


@WITH_IDS
@given(B=st.integers(2, 6), seed=st.integers(0, 999))
def test_swapping_two_captions_of_one_image_keeps_the_itc_loss(api, B, seed):
    img, txt = feats(B, 3, seed)
    # rows 0 and 1: two views of one image (different features, same id) with two different captions
    ids = torch.arange(B)
    ids[1] = 0
    swapped = txt.clone()
    swapped[[0, 1]] = txt[[1, 0]]
    a, b = api.itc_loss(img, txt, 0.07, ids), api.itc_loss(img, swapped, 0.07, ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.case(stands_for="LAVIS #285: ITM must never draw a caption of the same image as a hard negative",
                  stage="ITM hard-negative sampling, image ids given")
@given(B=st.integers(2, 6), seed=st.integers(0, 999))
def test_hard_negatives_skip_captions_of_the_same_image(api, B, seed):
    ids = torch.arange(B) // 2
    sim = torch.randn(B, B, generator=torch.Generator().manual_seed(seed)) + 10 * (ids[:, None] == ids[None, :])
    neg_text, neg_image = api.sample_hard_negatives(sim, ids, generator=torch.Generator().manual_seed(seed))
    for b in range(B):
        for picked in (int(neg_text[b]), int(neg_image[b])):
            if (ids != ids[b]).any():
                assert ids[picked] != ids[b]


@WITHOUT_IDS
@given(B=st.integers(2, 6), Q=st.integers(2, 4), seed=st.integers(0, 999), temp=st.floats(0.01, 0.5),
       duplicate=st.booleans())
def test_itc_loss_without_image_ids_has_diagonal_targets(api, B, Q, seed, temp, duplicate):
    img, txt = feats(B, Q, seed)
    if duplicate:  # row 1 repeats row 0 exactly: without ids they are still two different images
        img[1], txt[1] = img[0], txt[0]
    loss = torch.as_tensor(api.itc_loss(img, txt, temp)).double()
    assert float(loss) == pytest.approx(float(hand_itc(img, txt, temp, torch.arange(B))), abs=1e-5, rel=1e-5)


# -- the same contract through the stage-1 forward ----------------------------------------------------
@pytest.fixture(scope="module")
def model(api):
    torch.manual_seed(0)
    return api.build(TINY_CONFIG)


def itc_of(api, model, images, ids, mask, image_ids):
    with one_process_group(), torch.no_grad():
        return torch.as_tensor(api.losses(model, images, ids, mask, image_ids=image_ids,
                                          generator=torch.Generator().manual_seed(0))["itc"]).float()


@WITH_IDS
@settings(max_examples=5)
@given(seed=st.integers(0, 999))
def test_stage1_itc_follows_the_image_ids(api, model, seed):
    """Captions 0 and 1 describe image 0 (equal ids): swapping them leaves the forward's ITC loss unchanged."""
    images, ids, mask = random_batch(TINY_CONFIG, 4, 8, seed=seed)
    image_ids = torch.tensor([391895, 391895, 9, 522418])
    swap = [1, 0, 2, 3]
    a = itc_of(api, model, images, ids, mask, image_ids)
    b = itc_of(api, model, images, ids[swap], mask[swap], image_ids)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@WITHOUT_IDS
@settings(max_examples=5)
@given(seed=st.integers(0, 999))
def test_stage1_itc_without_image_ids_keeps_identical_rows_apart(api, model, seed):
    """Rows 0 and 1 are the same image with the same caption, but no ids say so: the forward's ITC loss equals the
    one with distinct ids given."""
    images, ids, mask = random_batch(TINY_CONFIG, 4, 8, seed=seed)
    images[1], ids[1], mask[1] = images[0], ids[0], mask[0]
    distinct = torch.tensor([30, 9, 139, 61])
    torch.testing.assert_close(itc_of(api, model, images, ids, mask, None),
                               itc_of(api, model, images, ids, mask, distinct), atol=1e-5, rtol=1e-5)
