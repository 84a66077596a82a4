"""Each switch of the albef-public and blip-public replicas (cases/known_bad/albef_public.py, blip_public.py)
reproduces its published mechanism ON ITS OWN, and the reference does not: every expected failure is caused by the
behaviour it names."""

import math

import pytest
import torch

from cases.interface.albef import TINY_CONFIG, TOKENS, random_batch, unit_rows
from cases.known_bad.albef_public import AlbefPublic
from cases.known_bad.blip_public import BLIP_PUBLIC, BlipPublic
from reference.albef.api import REFERENCE


def only(bug):
    return AlbefPublic(f"albef-{bug}", {bug})


def test_random_queue_holds_random_keys_before_any_enqueue():
    img, txt, ids = only("random_queue").make_queue(4, 8).contents()
    assert ids.tolist() == [-100] * 4 and torch.allclose(img.norm(dim=1), torch.ones(4))
    assert REFERENCE.make_queue(4, 8).contents()[2].numel() == 0


def test_divisible_queue_asserts():
    q = only("divisible_queue").make_queue(6, 8)
    q.enqueue(unit_rows(3, 8, 0), unit_rows(3, 8, 1), torch.arange(3))
    with pytest.raises(AssertionError):
        q.enqueue(unit_rows(4, 8, 0), unit_rows(4, 8, 1), torch.arange(4))
    assert q.contents()[2].tolist() == [0, 1, 2]  # without random init it holds only real keys


def test_diagonal_targets_ignore_image_ids():
    feats = [unit_rows(3, 8, i) for i in range(4)] + [unit_rows(2, 8, 4), unit_rows(2, 8, 5)]
    distinct, repeated, q_ids = torch.arange(3), torch.tensor([0, 0, 1]), torch.tensor([0, 9])
    bad = only("diagonal_targets")
    torch.testing.assert_close(bad.itc_queue_loss(*feats, torch.tensor([7, 9]), distinct, 0.1, 0.4),
                               REFERENCE.itc_queue_loss(*feats, torch.tensor([7, 9]), distinct, 0.1, 0.4))
    assert not torch.isclose(bad.itc_queue_loss(*feats, q_ids, repeated, 0.1, 0.0),
                             REFERENCE.itc_queue_loss(*feats, q_ids, repeated, 0.1, 0.0))


def test_multinomial_crashes_at_batch_one_and_on_nan_and_draws_positives():
    with pytest.raises(RuntimeError):
        only("multinomial").itm_negatives(torch.randn(1, 1), torch.zeros(1, dtype=torch.long))
    sim = torch.randn(3, 3)
    sim[1] = math.nan
    with pytest.raises(RuntimeError):
        only("multinomial").itm_negatives(sim, torch.arange(3))
    neg_text, _ = only("multinomial").itm_negatives(torch.randn(2, 2), torch.zeros(2, dtype=torch.long))
    assert neg_text.tolist() == [1, 0]  # the other caption of the same image
    assert REFERENCE.itm_negatives(torch.randn(2, 2), torch.zeros(2, dtype=torch.long))[0].tolist() == [-1, -1]
    with pytest.raises(RuntimeError):  # BLIP's 1e-4 does not help a batch of one
        BlipPublic("blip-multinomial", {"multinomial"}).itm_negatives(torch.randn(1, 1), torch.zeros(1).long())


def test_mask_sep_and_mask_inplace():
    _, ids, mask = random_batch(3, 8)
    every = {**TOKENS, "probability": 1.0}
    _, labels = only("mask_sep").mask_tokens(ids.clone(), mask, every)
    assert (labels[ids == TOKENS["sep"]] == TOKENS["sep"]).all()
    assert (REFERENCE.mask_tokens(ids.clone(), mask, every)[1][ids == TOKENS["sep"]] == -100).all()
    before = ids.clone()
    masked, _ = only("mask_inplace").mask_tokens(ids, mask, every)
    assert masked is ids and not torch.equal(ids, before)


def test_mlm_nan_only_when_nothing_is_masked():
    logits, labels = torch.randn(2, 3, 5), torch.full((2, 3), -100)
    assert torch.isnan(only("mlm_nan").mlm_loss(logits, labels, torch.softmax(logits, -1), 0.4))
    labels[0, 1] = 2
    soft = torch.softmax(torch.randn(2, 3, 5), -1)
    torch.testing.assert_close(only("mlm_nan").mlm_loss(logits, labels, soft, 0.4),
                               REFERENCE.mlm_loss(logits, labels, soft, 0.4))


def test_no_process_group_crashes_the_gather_and_the_step():
    with pytest.raises((RuntimeError, ValueError)):
        only("no_process_group").gather_keys(torch.ones(2))
    torch.manual_seed(0)
    model = REFERENCE.build_albef(TINY_CONFIG)
    feats, ids, mask = random_batch(2, 6)
    with pytest.raises((RuntimeError, ValueError)):
        only("no_process_group").albef_losses(model, feats, ids, mask)


def test_blip_first_token_written_in_place():
    bad = BlipPublic("blip-inplace", {"inplace_first_token"})
    _, ids, mask = random_batch(2, 6)
    before = ids.clone()
    out, labels = bad.decoder_inputs(ids, mask, 4)
    assert out is ids and (ids[:, 0] == 4).all() and (labels[mask == 0] == -100).all()
    ids = before.clone()
    assert bad.encoder_inputs(ids, 39) is ids and (ids[:, 0] == 39).all()


def test_blip_public_lacks_the_mlm_and_albef_model_parts():
    assert BLIP_PUBLIC.mask_tokens is None and BLIP_PUBLIC.mlm_loss is None and BLIP_PUBLIC.albef_losses is None
    assert BLIP_PUBLIC.build_blip is not None and BLIP_PUBLIC.itc_queue_loss is not None
