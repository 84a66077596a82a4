"""reference/albef pieces on their own: the queue, the EMA, ITC with the queue (hand-derived values), MLM masking
and its loss, the text transformer's masks."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reference.albef.contrastive import itc_queue_loss
from reference.albef.mlm import MLMConfig, mask_tokens, mlm_loss, word_ids
from reference.albef.momentum import ema_update_, momentum_copy
from reference.albef.queue import FeatureQueue, FeatureQueueConfig
from reference.albef.text import TextTransformer, TextTransformerConfig


def keys(ids, E=2):
    ids = torch.as_tensor(ids)
    return ids.float()[:, None].expand(-1, E).clone(), -ids.float()[:, None].expand(-1, E).clone(), ids


def test_queue_wraps_around_and_returns_oldest_first():
    q = FeatureQueue(FeatureQueueConfig(size=5, embed_dim=2))
    assert len(q) == 0 and q.contents()[2].numel() == 0
    q.enqueue(*keys([0, 1, 2]))
    q.enqueue(*keys([3, 4, 5]))  # 5 does not divide by 3: slot 0 is overwritten by id 5
    img, txt, ids = q.contents()
    assert ids.tolist() == [1, 2, 3, 4, 5] and len(q) == 5
    assert torch.equal(img[:, 0], ids.float()) and torch.equal(txt[:, 1], -ids.float())
    q.enqueue(*keys([6, 7, 8, 9, 10, 11, 12]))  # larger than the queue: its last 5 survive
    assert q.contents()[2].tolist() == [8, 9, 10, 11, 12]
    q.enqueue(*keys([13]))
    assert q.contents()[2].tolist() == [9, 10, 11, 12, 13]


def test_queue_of_size_zero_and_bad_shapes():
    q = FeatureQueue(FeatureQueueConfig(size=0, embed_dim=2))
    q.enqueue(*keys([0, 1]))
    assert q.contents()[0].shape == (0, 2)
    q = FeatureQueue(FeatureQueueConfig(size=3, embed_dim=2))
    with pytest.raises(ValueError, match="enqueue expects"):
        q.enqueue(torch.zeros(2, 3), torch.zeros(2, 2), torch.arange(2))
    with pytest.raises(ValueError, match="queue size"):
        FeatureQueueConfig(size=-1)


def test_queue_state_survives_a_state_dict_round_trip():
    q = FeatureQueue(FeatureQueueConfig(size=4, embed_dim=2))
    q.enqueue(*keys([0, 1, 2]))
    r = FeatureQueue(FeatureQueueConfig(size=4, embed_dim=2))
    r.load_state_dict(q.state_dict())
    r.enqueue(*keys([3, 4]))
    assert r.contents()[2].tolist() == [1, 2, 3, 4]


def test_ema_by_hand_and_refusals():
    online = nn.Linear(1, 1)
    with torch.no_grad():
        online.weight.fill_(1.0)
        online.bias.fill_(2.0)
    mom = momentum_copy(online)
    with torch.no_grad():
        mom.weight.fill_(3.0)
        mom.bias.fill_(-2.0)
    ema_update_(online, mom, 0.75)
    assert mom.weight.item() == 0.75 * 3 + 0.25 * 1 == 2.5 and mom.bias.item() == -1.0
    with pytest.raises(ValueError, match="momentum must lie"):
        ema_update_(online, mom, 1.5)
    with pytest.raises(ValueError, match="differ"):
        ema_update_(online, momentum_copy(nn.Sequential(nn.Linear(1, 1))), 0.5)
    with pytest.raises(ValueError, match="shape"):
        ema_update_(online, momentum_copy(nn.Linear(2, 1)), 0.5)


def test_momentum_copy_keeps_internal_ties():
    shared = nn.Linear(2, 2)
    pair = nn.ModuleDict({"a": nn.Sequential(shared), "b": nn.Sequential(shared)})
    copied = momentum_copy(pair)
    assert copied["a"][0].weight is copied["b"][0].weight and copied["a"][0].weight is not shared.weight


def test_itc_queue_loss_by_hand():
    """B = 1, one queue key: image i, texts [t (its own), q]; i.t = 1, i.q = 0 (and symmetric for t2i)."""
    i = torch.tensor([[1.0, 0.0]])
    t = torch.tensor([[1.0, 0.0]])
    q = torch.tensor([[0.0, 1.0]])
    temp = 0.5
    # alpha 0: -log(e^2 / (e^2 + e^0)) in both directions
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    got = itc_queue_loss(i, t, i, t, q, q, torch.tensor([7]), torch.tensor([3]), temp, 0.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # the queue key is a caption of the same image: target (1/2, 1/2)
    same = itc_queue_loss(i, t, i, t, q, q, torch.tensor([3]), torch.tensor([3]), temp, 0.0)
    p = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    assert same.item() == pytest.approx(-(0.5 * p.log()).sum().item(), rel=1e-6)
    # alpha 1 with momentum = online: the targets are the model's own softmax (its entropy)
    self_distilled = itc_queue_loss(i, t, i, t, q, q, torch.tensor([7]), torch.tensor([3]), temp, 1.0)
    assert self_distilled.item() == pytest.approx(-(p * p.log()).sum().item(), rel=1e-6)


def test_itc_queue_loss_gradients_reach_only_the_online_features():
    gen = torch.Generator().manual_seed(0)
    feats = [F.normalize(torch.randn(3, 4, generator=gen), dim=-1).requires_grad_() for _ in range(6)]
    loss = itc_queue_loss(*feats, torch.arange(3), torch.arange(3), 0.07, 0.4)
    loss.backward()
    assert feats[0].grad.abs().sum() > 0 and feats[1].grad.abs().sum() > 0
    assert all(f.grad is None for f in feats[2:]), "momentum features and queue keys must get no gradient"


def test_itc_queue_loss_refuses_bad_input():
    x = F.normalize(torch.randn(2, 4), dim=-1)
    q = torch.zeros(0, 4)
    with pytest.raises(ValueError, match="alpha"):
        itc_queue_loss(x, x, x, x, q, q, torch.zeros(0), None, 0.1, 1.5)
    with pytest.raises(ValueError, match="queue_image"):
        itc_queue_loss(x, x, x, x, torch.zeros(1, 3), q, torch.zeros(0), None, 0.1, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        itc_queue_loss(x, x, x, x, q, q, torch.zeros(0), None, 0.0, 0.0)


def test_mask_tokens_by_hand_rules():
    ids = torch.tensor([[2, 7, 8, 9, 3, 0]])
    mask = (ids != 0).long()
    every = MLMConfig(probability=1.0, mask_ratio=1.0, random_ratio=0.0)
    masked, labels = mask_tokens(ids, mask, (0, 1, 2, 3), 4, 10, every)
    assert masked.tolist() == [[2, 4, 4, 4, 3, 0]] and labels.tolist() == [[-100, 7, 8, 9, -100, -100]]
    keep = MLMConfig(probability=1.0, mask_ratio=0.0, random_ratio=0.0)
    masked, labels = mask_tokens(ids, mask, (0, 1, 2, 3), 4, 10, keep)
    assert torch.equal(masked, ids) and labels.tolist() == [[-100, 7, 8, 9, -100, -100]]
    rand = MLMConfig(probability=1.0, mask_ratio=0.0, random_ratio=1.0)
    masked, _ = mask_tokens(ids, mask, (0, 1, 2, 3), 4, 10, rand, torch.Generator().manual_seed(0))
    assert all(int(t) in (5, 6, 7, 8, 9) for t in masked[0, 1:4])
    assert word_ids(6, (0, 1, 2, 3, 4)).tolist() == [5]
    with pytest.raises(ValueError, match="sum to at most 1"):
        MLMConfig(mask_ratio=0.8, random_ratio=0.3)


def test_mlm_loss_by_hand():
    logits = torch.zeros(1, 2, 3)
    labels = torch.tensor([[1, -100]])
    assert mlm_loss(logits, labels).item() == pytest.approx(math.log(3))
    soft = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert mlm_loss(logits, labels, soft, 0.5).item() == pytest.approx(math.log(3))
    assert mlm_loss(logits, torch.full((1, 2), -100)).item() == 0.0


def test_text_transformer_causal_and_text_only_modes():
    torch.manual_seed(0)
    cfg = TextTransformerConfig(vocab_size=20, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=16,
                                encoder_width=8, cross_attention_from=1)
    text = TextTransformer(cfg).eval()
    ids = torch.randint(5, 20, (2, 6))
    image = torch.randn(2, 3, 8)
    full = text.encode(ids, image_embeds=image, causal=True)
    prefix = text.encode(ids[:, :4], image_embeds=image, causal=True)
    torch.testing.assert_close(full[:, :4], prefix, atol=1e-5, rtol=1e-5)  # causal: the future is invisible
    assert text.layers[0].crossattention is None and text.layers[1].crossattention is not None
    torch.testing.assert_close(text.encode(ids, layers=range(1)), text.encode(ids, image_embeds=image, layers=range(1)))
    assert not torch.allclose(text.encode(ids), text.encode(ids, image_embeds=image))
    with pytest.raises(ValueError, match="image_embeds"):
        text.encode(ids, image_embeds=torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="cross_attention_from"):
        TextTransformerConfig(num_layers=2, cross_attention_from=3)
