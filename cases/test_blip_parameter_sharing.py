"""BLIP's multimodal mixture of encoder-decoder (BLIP §3.1, Table 3; salesforce/BLIP models/blip_pretrain.py
`tie_encoder_decoder_weights(..., '/attention')`): the image-grounded text decoder shares EVERY parameter with the
text encoder except its self-attention layers. Sharing means the same parameter objects (checked with `is`), not
equal values: a copy starts equal and drifts apart at the first step. BLIP #93 asks whether the tie done at
construction survives training; the second case checks that it does: a step on the decoder's loss alone moves the
encoder's shared weights and leaves the encoder's own self-attention untouched."""

import pytest
import torch

from cases.interface.blip import TINY_CONFIG, random_batch

pytestmark = [pytest.mark.blip,
              pytest.mark.case(stands_for="the text decoder shares all but self-attention with the encoder, by "
                                          "identity (BLIP #93)", stage="encoder / decoder parameter sharing")]


def sharing_problems(encoder_params, decoder_params, encoder_sa, decoder_sa) -> list[str]:
    """What breaks 'the decoder shares all but self-attention', from the four parameter lists (empty = shared)."""
    enc_ids, enc_sa_ids, dec_sa_ids = {id(p) for p in encoder_params}, {id(p) for p in encoder_sa}, \
        {id(p) for p in decoder_sa}
    problems = []
    if not decoder_sa or len(decoder_sa) != len(encoder_sa):
        problems.append(f"{len(decoder_sa)} decoder vs {len(encoder_sa)} encoder self-attention parameters")
    if dec_sa_ids & enc_ids:
        problems.append("a decoder self-attention parameter is the encoder's (self-attention must not be shared)")
    if not enc_sa_ids <= enc_ids or not dec_sa_ids <= {id(p) for p in decoder_params}:
        problems.append("the self-attention parameters are not parameters of their modules")
    unshared = [p for p in decoder_params if id(p) not in dec_sa_ids and id(p) not in enc_ids]
    if unshared:
        problems.append(f"{len(unshared)} decoder parameters outside self-attention are not the encoder's objects "
                        f"(shapes {[tuple(p.shape) for p in unshared[:4]]})")
    if len(decoder_params) - len(decoder_sa) < 1:
        problems.append("the decoder has nothing besides self-attention")
    return problems


def parts(api, model):
    encoder, decoder = api.text_encoder(model), api.text_decoder(model)
    return (list(encoder.parameters()), list(decoder.parameters()), list(api.self_attention_parameters(model, encoder)),
            list(api.self_attention_parameters(model, decoder)))


def test_decoder_shares_every_parameter_but_self_attention(api):
    torch.manual_seed(0)
    problems = sharing_problems(*parts(api, api.build_blip(TINY_CONFIG)))
    assert not problems, "; ".join(problems)


def test_a_decoder_step_moves_the_shared_encoder_weights(api):
    torch.manual_seed(0)
    model = api.build_blip(TINY_CONFIG)
    encoder_params, _, encoder_sa, _ = parts(api, model)
    sa_ids = {id(p) for p in encoder_sa}
    before = [p.detach().clone() for p in encoder_params]
    feats, ids, mask = random_batch(3, 8)
    model.zero_grad(set_to_none=True)
    api.decoder_loss(model, feats, ids, mask).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    moved = [not torch.equal(p, b) for p, b in zip(encoder_params, before)]
    shared_moved = [m for p, m in zip(encoder_params, moved) if id(p) not in sa_ids]
    sa_moved = [m for p, m in zip(encoder_params, moved) if id(p) in sa_ids]
    assert any(shared_moved), "a decoder-only step left every shared encoder weight unchanged: not tied"
    assert not any(sa_moved), "a decoder-only step moved the encoder's own self-attention"
