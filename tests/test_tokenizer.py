"""Unit tests of reference/pix2seq tokenizer, collate and postprocess with values derived by hand."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from reference.pix2seq.collate import collate_sequences, fit_sequence, shift_for_training
from reference.pix2seq.postprocess import postprocess_rows
from reference.pix2seq.tokenizer import Vocabulary, decode_sequence, dequantize, encode_objects, quantize

VOC = Vocabulary()  # the port's VOC layout


def test_port_voc_layout():
    assert (VOC.bos, VOC.eos, VOC.pad, VOC.size) == (404, 405, 406, 407)
    assert VOC.max_objects == 59  # (300 - 2) // 5


def test_pix2seqv2_coco_layout_of_the_detection_part():
    coco = Vocabulary(num_bins=384, num_classes=91)
    assert (coco.bos, coco.eos, coco.pad) == (475, 476, 477)


def test_quantize_by_hand():
    # nearest bin of x * 383: 0 -> 0, 0.5 -> 191.5 -> 192, 0.7 -> 268.1 -> 268, 1 -> 383; clipped outside [0, 1]
    assert quantize([0.0, 0.5, 0.7, 1.0, 1.01, -0.5], 384).tolist() == [0, 192, 268, 383, 383, 0]
    assert dequantize([0, 383], 384).tolist() == [0.0, 1.0]


@given(st.integers(2, 2000), st.data())
def test_dequantize_then_quantize_is_identity(num_bins, data):
    q = data.draw(st.lists(st.integers(0, num_bins - 1), min_size=1, max_size=20))
    assert quantize(dequantize(q, num_bins), num_bins).tolist() == q


def test_encode_by_hand():
    tokens = encode_objects(VOC, [[0, 0, 383, 191.4]], [2], 383, 383)
    assert tokens == [404, 0, 0, 383, 191, 386, 405]
    assert encode_objects(VOC, np.zeros((0, 4)), [], 10, 10) == [404, 405]


@pytest.mark.parametrize("boxes, labels, message", [
    ([[0, 0, 1]], [0], "shape"),
    ([[0, 0, 1, 1]], [0, 1], "labels must have shape"),
    ([[np.nan, 0, 1, 1]], [0], "not finite"),
    ([[5, 0, 1, 1]], [0], "xmax < xmin"),
    ([[0, 0, 1, 1]], [20], "outside"),
    ([[0, 0, 1, 1]], [-1], "outside"),
    ([[0, 0, 1, 1]], [0.5], "integers"),
])
def test_encode_rejects_bad_input(boxes, labels, message):
    with pytest.raises(ValueError, match=message):
        encode_objects(VOC, boxes, labels, 10, 10)


def test_encode_rejects_bad_image_size():
    with pytest.raises(ValueError, match="image size"):
        encode_objects(VOC, [[0, 0, 1, 1]], [0], 0, 10)


@pytest.mark.parametrize("tokens, message", [
    ([405], "start with BOS"), ([404, 1, 2], "no EOS"), ([404, 1, 2, 3, 4, 390, 405, 7], "only PAD"),
    ([404, 1, 2, 3, 405], "multiple of 5"), ([404, 1, 2, 3, 390, 390, 405], "not a coordinate"),
    ([404, 1, 2, 3, 4, 5, 405], "not a class"), ([404, 1, 2, 3, 4, 404, 405], "not a class"),
])
def test_decode_rejects_malformed(tokens, message):
    with pytest.raises(ValueError, match=message):
        decode_sequence(VOC, tokens)


def test_collate_by_hand():
    small = Vocabulary(num_bins=10, num_classes=2, max_len=8)  # bos 12, eos 13, pad 14, cap 1 object
    seq = [12, 1, 2, 3, 4, 10, 5, 6, 7, 8, 11, 13]  # two objects
    batch, dropped = collate_sequences(small, [seq, [12, 13]])
    assert batch.tolist() == [[12, 1, 2, 3, 4, 10, 13, 14], [12, 13, 14, 14, 14, 14, 14, 14]]
    assert dropped == [1, 0]
    inputs, targets = shift_for_training(batch)
    assert inputs.shape == targets.shape == (2, 7) and targets[0, 0] == 1


def test_fit_sequence_rejects_non_sequences():
    with pytest.raises(ValueError, match="BOS"):
        fit_sequence(VOC, [1, 2, 3])
    with pytest.raises(ValueError, match="whole objects"):
        fit_sequence(VOC, [404, 1, 2, 405])


def test_postprocess_by_hand():
    small = Vocabulary(num_bins=11, num_classes=3, max_len=20)  # bos 14, eos 15, pad 16
    tokens = torch.tensor([
        [14, 0, 0, 10, 5, 12, 15, 16],  # one object, class 1 (token 12), box (0,0,1,0.5) of 200x100
        [14, 15, 16, 16, 16, 16, 16, 16],  # empty detection
        [14, 1, 1, 2, 2, 3, 15, 16],  # garbage: class slot holds a coordinate -> dropped
        [14, 5, 5, 1, 9, 11, 15, 16],  # inverted box xmax < xmin -> dropped
    ])
    probs = torch.linspace(0.1, 0.8, 8).repeat(4, 1)
    dets = postprocess_rows(small, tokens, probs, [(200, 100)] * 4)
    np.testing.assert_allclose(dets[0]["boxes"], [[0, 0, 200, 50]])
    assert dets[0]["labels"].tolist() == [1]
    assert dets[0]["scores"].tolist() == pytest.approx([probs[0, 5].item()])
    assert [len(d["labels"]) for d in dets[1:]] == [0, 0, 0]


def test_postprocess_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="sizes"):
        postprocess_rows(VOC, torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), [(1, 1)])
    with pytest.raises(ValueError, match="token_probs has shape"):
        postprocess_rows(VOC, torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4), [(1, 1)])
