"""Pieces the ALBEF / BLIP training added to the references: patch merging, mean pooling, the queue warm-up view,
the ITM hard-negative share, length-sorted ITM pairs, masked accuracy, beam captions."""

import pytest
import torch
from hypothesis import given, settings, strategies as st

from cases.interface.albef import TINY_CONFIG, random_batch
from cases.interface.blip import TINY_CONFIG as BLIP_TINY
from reference.albef.api import albef_config
from reference.albef.base import hard_negative_pairs, pair_itm_logits
from reference.albef.image import ImageEncoder, ImageEncoderConfig, merge_patches
from reference.albef.mlm import masked_accuracy
from reference.albef.model import Albef
from reference.blip.api import blip_config
from reference.blip.generate import beam_generate
from reference.blip.model import Blip


def test_merge_patches_by_hand():
    x = torch.arange(16.0).reshape(1, 16, 1)  # a 4 x 4 grid, row-major
    assert merge_patches(x, 2).squeeze(0).tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert merge_patches(x, 1) is x
    with pytest.raises(ValueError, match="not a square grid divisible"):
        merge_patches(torch.zeros(1, 12, 1), 2)
    enc = ImageEncoder(ImageEncoderConfig(patch_width=3, dim=8, depth=1, heads=2, merge=2))
    assert enc(torch.randn(2, 16, 3)).shape == (2, 1 + 4, 8)


def test_mean_pooling_reads_the_patch_tokens_only():
    enc = ImageEncoder(ImageEncoderConfig(patch_width=3, dim=8, depth=1, heads=2, pool="mean"))
    tokens = torch.randn(2, 5, 8)
    torch.testing.assert_close(enc.pooled(tokens), tokens[:, 1:].mean(1))
    assert torch.equal(ImageEncoder(ImageEncoderConfig(patch_width=3, dim=8, heads=2)).pooled(tokens), tokens[:, 0])
    with pytest.raises(ValueError, match="pool must be"):
        ImageEncoderConfig(pool="max")


def test_queue_in_use_reads_only_the_newest_keys():
    torch.manual_seed(0)
    model = Albef(albef_config(TINY_CONFIG))
    feats = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    model.queue.enqueue(feats, feats.flip(0), torch.arange(6))
    image, _, ids = model.queued_keys()
    assert ids.tolist() == [0, 1, 2, 3, 4, 5]
    model.queue_in_use = 2
    image2, text2, ids2 = model.queued_keys()
    assert ids2.tolist() == [4, 5] and torch.equal(image2, image[4:]) and torch.equal(text2, feats.flip(0)[4:])
    model.queue_in_use = 0
    assert model.queued_keys()[0].shape == (0, 16)
    model.queue_in_use = 100
    assert model.queued_keys()[2].tolist() == [0, 1, 2, 3, 4, 5]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), hard=st.sampled_from([0.0, 0.5, 1.0]))
def test_hard_negative_pairs_never_pair_captions_of_one_image(seed, hard):
    torch.manual_seed(seed)
    model = Albef(albef_config(TINY_CONFIG)).eval()
    feats, ids, mask = random_batch(5, 8, seed=seed)
    image_ids = torch.tensor([0, 0, 1, 2, 3])
    step = model.contrast(feats, ids, mask, image_ids, 0.0, update_state=False)
    image_idx, text_idx, labels = hard_negative_pairs(step, torch.Generator().manual_seed(seed), hard)
    assert labels[:5].tolist() == [1] * 5 and labels[5:].tolist() == [0] * (len(labels) - 5)
    assert all(image_ids[i] != image_ids[t] for i, t in zip(image_idx[5:].tolist(), text_idx[5:].tolist()))
    assert len(labels) == 15  # every image and every text has a negative here


def test_pair_itm_logits_equals_the_unsorted_padded_pass():
    torch.manual_seed(0)
    model = Blip(blip_config(BLIP_TINY)).eval()
    feats, ids, mask = random_batch(6, 10, seed=1)
    mask[1, 4:], ids[1, 4:] = 0, 0  # rows of different lengths
    mask[3, 6:], ids[3, 6:] = 0, 0
    with torch.no_grad():
        embeds = model.image_pass(feats)[0]
        index = torch.tensor([5, 0, 2, 2, 1, 3])
        want = model.itm_logits_from(embeds[index], ids, mask)
        got = pair_itm_logits(model, embeds, index, ids, mask, batch_size=4)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_masked_accuracy_by_hand():
    logits = torch.zeros(1, 4, 3)
    logits[0, 0, 2] = logits[0, 1, 1] = logits[0, 2, 0] = logits[0, 3, 1] = 1.0  # argmax 2, 1, 0, 1
    labels = torch.tensor([[2, -100, 1, 1]])  # right, ignored, wrong, right
    assert float(masked_accuracy(logits, labels)) == pytest.approx(2 / 3)
    assert masked_accuracy(logits, torch.full((1, 4), -100)).isnan()


def test_beam_captions_follow_the_generation_format():
    torch.manual_seed(0)
    model = Blip(blip_config(BLIP_TINY)).eval()
    feats, _, _ = random_batch(3, 8, seed=2)
    out = beam_generate(model, feats, num_beams=2, max_length=6, min_length=2)
    cfg = model.config
    assert out.shape[0] == 3 and out.shape[1] <= 6
    for row in out.tolist():
        words = row[: row.index(cfg.sep_token_id)] if cfg.sep_token_id in row else row
        assert len(words) >= 2 or cfg.sep_token_id not in row
        assert not {cfg.cls_token_id, cfg.dec_token_id, cfg.enc_token_id} & set(words)
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        beam_generate(model, feats, max_length=BLIP_TINY["max_text_len"])


def test_centred_encoder_subtracts_the_position_means():
    cfg = ImageEncoderConfig(patch_width=3, dim=8, depth=1, heads=2, centre=True, num_patches=4)
    torch.manual_seed(0)
    a = ImageEncoder(cfg)
    b = ImageEncoder(cfg)
    b.load_state_dict(a.state_dict())
    mean = torch.randn(4, 3)
    b.set_feature_mean(mean)
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(b(x + mean), a(x))  # a's mean is zero
    assert a.pos_embed.shape == (1, 5, 8) and "feature_mean" in dict(b.named_buffers())
    with pytest.raises(ValueError, match="set_feature_mean needs centre=True"):
        b.set_feature_mean(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="do not fit"):
        b(torch.randn(2, 9, 3))
