"""Unit and property tests of the BLIP-2 pieces around the Q-Former: hard-negative sampler, ITC / LM losses,
retrieval re-ranking and recall, caption generation, tokenizer, frozen patch encoder."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from reference.blip2 import captioner, losses, retrieval, sampler
from reference.blip2.image_encoder import FrozenPatchEncoder, PatchEncoderConfig, sincos_2d
from reference.blip2.qformer import QFormerConfig
from reference.blip2.stage1 import Blip2Stage1, Blip2Stage1Config
from reference.blip2.tokenizer import WordTokenizer, normalize

DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])


@st.composite
def similarity_and_ids(draw):
    B = draw(st.integers(1, 6))
    ids = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=B, max_size=B)))
    values = draw(st.lists(st.one_of(st.floats(-1e4, 1e4), st.sampled_from([math.nan, math.inf, -math.inf])),
                           min_size=B * B, max_size=B * B))
    return torch.tensor(values).reshape(B, B).to(draw(DTYPES)), ids


@given(data=similarity_and_ids(), seed=st.integers(0, 99))
def test_sampler_always_returns_a_negative_when_one_exists(data, seed):
    sim, ids = data
    before = sim.clone()
    neg_text, neg_image = sampler.sample_hard_negatives(sim, ids, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(sim.isnan(), before.isnan()) and torch.equal(sim.nan_to_num(), before.nan_to_num())
    for b in range(len(ids)):
        has_negative = bool((ids != ids[b]).any())
        for picked in (neg_text[b], neg_image[b]):
            assert (picked >= 0) == has_negative
            if has_negative:
                assert ids[picked] != ids[b]


def test_sampler_prefers_the_hardest_negative():
    sim = torch.tensor([[1.0, 50.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    neg_text, _ = sampler.sample_hard_negatives(sim, torch.arange(3), generator=torch.Generator().manual_seed(0))
    assert neg_text[0] == 1


def test_negative_weights_in_half_precision_with_tiny_temperature_are_a_distribution():
    sim = (torch.randn(8, 8) / 0.001).half()  # softmax of this underflows to one-hot in float16
    w = sampler.negative_weights(sim, torch.eye(8, dtype=torch.bool))
    torch.testing.assert_close(w.sum(1), torch.ones(8))
    assert (w.diagonal() == 0).all()


def test_sampler_rejects_mismatched_ids():
    with pytest.raises(ValueError, match="do not match"):
        sampler.sample_hard_negatives(torch.zeros(3, 3), torch.arange(2))


def normed(*shape, seed=0):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_itc_similarity_is_max_over_queries_by_hand():
    img = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one image, two queries
    txt = torch.tensor([[0.6, 0.8], [-1.0, 0.0]])
    torch.testing.assert_close(losses.itc_similarity(img, txt), torch.tensor([[0.8, 0.0]]))


@settings(max_examples=25)
@given(B=st.integers(1, 6), temp=st.floats(1e-6, 10.0), seed=st.integers(0, 99))
def test_itc_loss_clamps_temperature_and_is_finite(B, temp, seed):
    img, txt = normed(B, 3, 8, seed=seed), normed(B, 8, seed=seed + 1)
    loss = losses.itc_loss(img, txt, temp)
    clamped = min(max(temp, 0.001), 0.5)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, losses.itc_loss(img, txt, clamped))


def test_itc_loss_by_hand_at_batch_two_without_smoothing():
    img = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.exp(10) / (math.exp(10) + 1))  # sims 1 and 0 at temperature 0.1
    torch.testing.assert_close(losses.itc_loss(img, txt, 0.1, label_smoothing=0.0), torch.tensor(expected))


def test_captions_of_one_image_are_positives():
    img = normed(1, 2, 8).expand(2, 2, 8)  # the same image twice
    txt = normed(2, 8, seed=3)
    with_ids = losses.itc_loss(img, txt, 0.07, image_ids=torch.tensor([5, 5]))
    assert torch.isclose(with_ids, losses.itc_loss(img, txt.flip(0), 0.07, image_ids=torch.tensor([5, 5])))
    targets = losses.positive_targets(torch.tensor([5, 5, 6]), torch.tensor([5, 5, 6]))
    torch.testing.assert_close(targets, torch.tensor([[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 1.0]]))


def test_gather_without_process_group_is_identity():
    x = torch.randn(3, 2)
    assert losses.gather_features(x) is x


def test_lm_loss_ignores_padding_and_is_finite_in_half_precision():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 30522, generator=gen).half()
    ids = torch.randint(5, 30522, (2, 5), generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    dec, labels = losses.decoder_inputs(ids, mask, dec_token_id=4)
    assert (dec[:, 0] == 4).all() and torch.equal(dec[:, 1:], ids[:, 1:])
    assert (labels[1, 3:] == -100).all() and torch.equal(labels[0, 1:], ids[0, 1:])
    loss = losses.lm_loss(logits, labels)
    assert torch.isfinite(loss)
    changed = logits.clone()
    changed[1, 2:] = 0  # positions whose targets are padding (and the last position) carry no loss
    torch.testing.assert_close(loss, losses.lm_loss(changed, labels))


def test_rerank_by_hand():
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    calls = []

    def itm(i, t):
        calls.extend(zip(i.tolist(), t.tolist()))
        return (i == t).float() * 10

    i2t, t2i = retrieval.rerank_scores(sim, itm, k=2)
    expected_i2t = torch.tensor([[10.9, -100, 0.5], [-100, 10.8, 0.3]])
    torch.testing.assert_close(i2t, expected_i2t)
    torch.testing.assert_close(t2i, torch.tensor([[10.9, 0.2], [0.1, 10.8], [0.5, 0.3]]))
    assert len(calls) == len(set(calls)) == len(set(map(tuple, (i2t > -100).nonzero().tolist())) | set((i, t) for t, i in (t2i > -100).nonzero().tolist()))


def test_recall_at_k_by_hand():
    score_i2t = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])  # image 0 owns text 0, image 1 texts 1 and 2
    rec = retrieval.recall_at_k(score_i2t, score_i2t.t(), [0, 1, 1], ks=(1, 2))
    assert rec["i2t_R@1"] == 50.0 and rec["i2t_R@2"] == 50.0  # image 0: text 0 ranks 3rd
    assert rec["t2i_R@1"] == pytest.approx(100 / 3) and rec["t2i_R@2"] == 100.0


def test_recall_ties_count_against_the_ground_truth():
    """Image 0 owns text 3, which is outside a top-2 re-ranking and shares the fill value with text 2:
    the tie must not rescue it at R@3 (rank = 3 other texts scoring at least as high)."""
    i2t = torch.tensor([[5.0, 4.0, -100.0, -100.0], [1.0, 1.0, 1.0, 0.0]])
    t2i = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    rec = retrieval.recall_at_k(i2t, t2i, [1, 1, 1, 0], ks=(3,))
    assert rec["i2t_R@3"] == 50.0 and rec["t2i_R@3"] == 100.0


def tiny_model(seed=0):
    torch.manual_seed(seed)
    q = QFormerConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=48, max_position_embeddings=40, encoder_width=24, num_query_tokens=4)
    m = Blip2Stage1(Blip2Stage1Config(qformer=q, embed_dim=16, cls_token_id=2, sep_token_id=3, dec_token_id=4))
    with torch.no_grad():  # sharpen the random model so that captions vary and [SEP] can win
        m.lm_head.bias[3] += 2.0
        for p in m.qformer.parameters():
            p.mul_(8) if p.dim() > 1 else None
    return m.eval()


@pytest.mark.parametrize("beams", [1, 2, 4])
def test_generation_cache_equals_recompute_and_batch_equals_single(beams):
    m = tiny_model(beams)
    image = torch.randn(3, 5, 24, generator=torch.Generator().manual_seed(beams))
    cached = captioner.generate(m, image, num_beams=beams, max_length=12, min_length=2)
    assert torch.equal(cached, captioner.generate(m, image, num_beams=beams, max_length=12, min_length=2,
                                                  use_cache=False))
    for b in range(3):
        single = captioner.generate(m, image[b:b + 1], num_beams=beams, max_length=12, min_length=2)[0]
        assert torch.equal(single, cached[b, : single.numel()]) and (cached[b, single.numel():] == 0).all()


@settings(max_examples=10)
@given(min_length=st.integers(0, 6), extra=st.integers(0, 6), beams=st.integers(1, 3))
def test_generation_lengths(min_length, extra, beams):
    m = tiny_model()
    out = captioner.generate(m, torch.randn(2, 5, 24), num_beams=beams, max_length=min_length + extra,
                             min_length=min_length) if min_length + extra > 0 else None
    if out is None:
        return
    assert out.shape[1] <= min_length + extra
    for row in out.tolist():
        if 3 in row:
            assert row.index(3) >= min_length


def test_beam_search_score_is_not_below_greedy():
    m = tiny_model(7)
    image = torch.randn(2, 5, 24, generator=torch.Generator().manual_seed(7))

    def logprob(tokens):
        ids = torch.cat([torch.full((tokens.shape[0], 1), 4), tokens], 1)
        with torch.no_grad():
            logp = m.itg_logits(image, ids, (ids != 0).long()).log_softmax(-1)[:, :-1]
        picked = logp.gather(2, tokens[:, :, None]).squeeze(2) * (tokens != 0)
        return picked.sum(1) / (tokens != 0).sum(1)

    greedy = captioner.generate(m, image, num_beams=1, max_length=8, min_length=0)
    beam = captioner.generate(m, image, num_beams=4, max_length=8, min_length=0)
    assert (logprob(beam) >= logprob(greedy) - 1e-5).all()


def test_generate_rejects_bad_arguments():
    m = tiny_model()
    with pytest.raises(ValueError, match="min_length"):
        captioner.generate(m, torch.randn(1, 5, 24), max_length=3, min_length=5)
    with pytest.raises(ValueError, match="image_embeds"):
        captioner.generate(m, torch.randn(5, 24))


@given(words=st.lists(st.sampled_from(["red", "circle", "left", "a", "of", "zebra"]), max_size=12),
       max_len=st.integers(3, 16))
def test_tokenizer_round_trip(words, max_len):
    tok = WordTokenizer.from_texts(["a red circle, left of a square."])
    ids, mask = tok.encode([" ".join(words)], max_len)
    kept = [w if w in tok.words else "[UNK]" for w in words][: max_len - 2]
    assert tok.decode(ids[0].tolist()) == " ".join(kept)
    assert ids[0, 0] == tok.cls_id and ids[0, len(kept) + 1] == tok.sep_id
    assert mask.sum() == len(kept) + 2
    assert normalize("A red circle, left.") == ["a", "red", "circle", "left"]


def test_patch_encoder_keeps_colour_and_position():
    enc = FrozenPatchEncoder(PatchEncoderConfig(image_size=32, patch_size=8, width=16))
    img = np.zeros((2, 32, 32, 3), np.uint8)
    img[0, :8, :8] = (255, 0, 0)  # red top-left
    img[1, :8, :8] = (0, 0, 255)  # blue top-left
    feats = enc(torch.from_numpy(img))
    assert feats.shape == (2, 16, 16)
    assert not torch.allclose(feats[0, 0], feats[1, 0]) and torch.allclose(feats[0, 1:], feats[1, 1:])
    assert not torch.allclose(feats[0, 1], feats[0, 2])  # equal content, different positions
    assert sum(p.numel() for p in enc.parameters()) == 0
    assert torch.equal(FrozenPatchEncoder(enc.config).projection, enc.projection)  # seeded
    assert sincos_2d(4, 16).shape == (16, 16)
    with pytest.raises(ValueError, match="images must be"):
        enc(torch.zeros(1, 3, 16, 16))


def test_retrieval_ranks_by_hand():
    """2 images, 3 texts (texts 0, 1 describe image 0; text 2 image 1). Ties count against the truth."""
    from reference.blip2.retrieval import recall_at_k, recall_from_ranks, retrieval_ranks

    i2t = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.7]])
    t2i = torch.tensor([[0.3, 0.3], [0.8, 0.1], [0.6, 0.4]])
    image_rank, text_rank = retrieval_ranks(i2t, t2i, [0, 0, 1])
    assert image_rank.tolist() == [0, 1] and text_rank.tolist() == [1, 0, 1]
    expected = {"i2t_R@1": 50.0, "t2i_R@1": 100.0 / 3, "i2t_R@2": 100.0, "t2i_R@2": 100.0,
                "i2t_mean": 75.0, "t2i_mean": (100.0 / 3 + 100.0) / 2}
    assert recall_from_ranks(image_rank, text_rank, ks=(1, 2)) == pytest.approx(expected, abs=1e-12)
    assert recall_at_k(i2t, t2i, [0, 0, 1], ks=(1, 2)) == pytest.approx(expected, abs=1e-12)
