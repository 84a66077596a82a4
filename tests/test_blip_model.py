"""The tiny BLIP: parameter sharing by identity, gradients, generation, the nucleus filter by hand, CapFilt."""

import math

import pytest
import torch

from cases.interface.blip import TINY_CONFIG, random_batch
from cases.test_blip_parameter_sharing import sharing_problems
from reference.blip import capfilt
from reference.blip.api import blip_config
from reference.blip.generate import generate, top_p_filter
from reference.blip.model import Blip, BlipConfig, self_attention_parameters
from reference.albef.text import TextTransformerConfig


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return Blip(blip_config(TINY_CONFIG)).eval()


def test_decoder_shares_all_but_self_attention_by_identity(model):
    enc, dec = model.text_encoder, model.text_decoder
    assert dec.word_embeddings is enc.word_embeddings and dec.position_embeddings is enc.position_embeddings
    for e, d in zip(enc.layers, dec.layers):
        assert d.crossattention is e.crossattention and d.ffn is e.ffn
        assert d.attention is not e.attention
        assert all(a is not b for a, b in zip(d.attention.parameters(), e.attention.parameters()))
    assert model.lm_head.word_embeddings[0].weight is enc.word_embeddings.weight  # tied LM head
    assert not sharing_problems(list(enc.parameters()), list(dec.parameters()), self_attention_parameters(enc),
                                self_attention_parameters(dec))
    distinct = {id(p) for p in model.parameters()}
    assert len(distinct) == len(list(model.parameters()))  # parameters() lists each shared one once


def test_the_sharing_case_catches_a_copied_decoder(model):
    """Equal values are not sharing: a decoder whose shared modules are deep copies fails the case's check."""
    import copy

    dec = copy.deepcopy(model.text_decoder)
    problems = sharing_problems(list(model.text_encoder.parameters()), list(dec.parameters()),
                                self_attention_parameters(model.text_encoder), self_attention_parameters(dec))
    assert any("not the encoder's objects" in p for p in problems)
    problems = sharing_problems(list(model.text_encoder.parameters()), list(model.text_encoder.parameters()),
                                self_attention_parameters(model.text_encoder),
                                self_attention_parameters(model.text_encoder))
    assert any("must not be shared" in p for p in problems)


def test_training_step_gradients(model):
    feats, ids, mask = random_batch(4, 8)
    out = model(feats, ids, mask, image_ids=torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(0))
    assert set(out) == {"itc", "itm", "lm", "loss"} and all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert all(p.grad is None for p in model.momentum_parameters())
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    # ITC (no cross-attention) and ITM / LM (cross-attention) all reach the shared layers
    assert model.text_encoder.layers[0].crossattention.query.weight.grad.abs().sum() > 0
    assert model.text_decoder.layers[0].attention.query.weight.grad.abs().sum() > 0


def test_unimodal_text_encoder_never_reads_the_image(model):
    feats, ids, mask = random_batch(2, 6)
    a = model.text_pass(ids, mask)[1]
    model.image_encoder.embed.weight.data.mul_(3.0)
    torch.testing.assert_close(model.text_pass(ids, mask)[1], a)


def test_decoder_is_causal(model):
    feats, ids, mask = random_batch(2, 8)
    embeds = model.image_pass(feats)[0]
    dec = ids.clone()
    dec[:, 0] = TINY_CONFIG["dec_token_id"]
    full = model.decoder_logits(embeds, dec)
    torch.testing.assert_close(full[:, :5], model.decoder_logits(embeds, dec[:, :5]), atol=1e-5, rtol=1e-5)


def test_top_p_filter_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.35, 0.10, 0.05], [0.02, 0.02, 0.01, 0.95]]))
    out = top_p_filter(logits, 0.9)
    assert torch.isfinite(out).tolist() == [[True, True, True, False], [False, False, False, True]]
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(logits, 0.0)


def test_generation_is_seeded_and_greedy_is_deterministic(model):
    feats, _, _ = random_batch(3, 4)
    a = generate(model, feats, 6, 2, 0.9, generator=torch.Generator().manual_seed(1))
    b = generate(model, feats, 6, 2, 0.9, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape[0] == 3 and a.shape[1] <= 6
    g1, g2 = generate(model, feats, 6, 0, sample=False), generate(model, feats, 6, 0, sample=False)
    assert torch.equal(g1, g2)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        generate(model, feats, 40)


def test_capfilt_pieces_by_hand(model):
    logits = torch.tensor([[0.0, 0.0], [0.0, math.log(3.0)], [2.0, 0.0]])
    prob = capfilt.match_probability(logits)
    torch.testing.assert_close(prob, torch.tensor([0.5, 0.75, 1 / (1 + math.e ** 2)]))
    assert capfilt.keep_mask(prob, 0.5).tolist() == [True, True, False]
    web = [capfilt.Caption(0, "a"), capfilt.Caption(1, "b")]
    syn = [capfilt.Caption(0, "c", "synthetic"), capfilt.Caption(1, "d", "synthetic")]
    kept = capfilt.bootstrap(web, syn, [False, True], [True, False])
    assert kept == [capfilt.Caption(1, "b"), capfilt.Caption(0, "c", "synthetic")]
    feats, ids, mask = random_batch(5, 6)
    scores = capfilt.match_scores(model, feats, ids, mask, batch_size=2)
    torch.testing.assert_close(scores, capfilt.match_probability(model.itm_logits(feats, ids, mask)).detach())
    with pytest.raises(ValueError, match="flags"):
        capfilt.bootstrap(web, syn, [True], [True, True])


def test_config_refusals():
    with pytest.raises(ValueError, match="every text layer"):
        BlipConfig(text=TextTransformerConfig(cross_attention_from=1))
    with pytest.raises(ValueError, match="enc_token_id"):
        BlipConfig(text=TextTransformerConfig(vocab_size=5), enc_token_id=5)
