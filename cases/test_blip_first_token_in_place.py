"""BLIP replaces the first token of the caption before the image-grounded passes ([ENC] for the encoder, [DEC] for
the decoder). salesforce/BLIP models/blip.py writes it into the tokenizer's tensor: `text.input_ids[:,0] =
self.tokenizer.bos_token_id` (BLIP_Decoder.forward) and `= enc_token_id` (BLIP_Base, multimodal mode). A
re-implementation that receives input_ids from its caller and does the same corrupts the caller's batch: the next
pass (ITC, ITM, a second loss) sees [DEC] or [ENC] where [CLS] was. Decoder labels: -100 at padding, [SEP] kept as
the end target."""

import pytest
import torch
from hypothesis import given, strategies as st

from cases.interface.blip import TOKENS, random_batch

pytestmark = [pytest.mark.blip]
IN_PLACE = pytest.mark.case(stands_for="text.input_ids[:,0] = [DEC] / [ENC] written into the caller's tensor "
                                       "(BLIP models/blip.py)", stage="encoder / decoder input ids")


@IN_PLACE
@given(B=st.integers(1, 5), T=st.integers(3, 10), seed=st.integers(0, 999))
def test_decoder_inputs_leave_the_caller_ids_unchanged(api, B, T, seed):
    _, ids, mask = random_batch(B, T, seed=seed)
    before = ids.clone()
    dec_ids, labels = api.decoder_inputs(ids, mask, TOKENS["dec"])
    assert torch.equal(ids, before), "decoder_inputs wrote into its input"
    dec_ids, labels = torch.as_tensor(dec_ids), torch.as_tensor(labels)
    assert (dec_ids[:, 0] == TOKENS["dec"]).all() and torch.equal(dec_ids[:, 1:], ids[:, 1:])
    assert torch.equal(labels[:, 1:][mask[:, 1:] == 0], torch.full_like(labels[:, 1:][mask[:, 1:] == 0], -100))
    assert torch.equal(labels[:, 1:][mask[:, 1:] == 1], ids[:, 1:][mask[:, 1:] == 1]), "[SEP] / words lost as targets"


@IN_PLACE
@given(B=st.integers(1, 5), T=st.integers(3, 10), seed=st.integers(0, 999))
def test_encoder_inputs_leave_the_caller_ids_unchanged(api, B, T, seed):
    _, ids, _ = random_batch(B, T, seed=seed)
    before = ids.clone()
    enc_ids = torch.as_tensor(api.encoder_inputs(ids, TOKENS["enc"]))
    assert torch.equal(ids, before), "encoder_inputs wrote into its input"
    assert (enc_ids[:, 0] == TOKENS["enc"]).all() and torch.equal(enc_ids[:, 1:], ids[:, 1:])
