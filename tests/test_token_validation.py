"""Token stages at their boundary (issue 15): float or bool tokens are a TypeError (12.9 must not become
a class token), the strict decoder never returns xmax < xmin (it raises), postprocess refuses
token_probs of another shape than the tokens and image sizes that are not positive finite numbers,
naming the argument."""

import math

import numpy as np
import pytest
import torch

from reference.pix2seq.collate import collate_sequences
from reference.pix2seq.postprocess import postprocess_rows
from reference.pix2seq.tokenizer import Vocabulary, as_token_array, decode_sequence, encode_objects
from reference.pix2seqv2 import COCO, decode_caption, decode_detection, decode_keypoints, decode_segmentation
from reference.pix2seqv2.captioning import WordList

VOC = Vocabulary()  # bins 0-383, classes 384-403, BOS 404, EOS 405, PAD 406


def row_with_object(box=(10, 20, 30, 40), cls=3):
    return [VOC.bos, *box, VOC.num_bins + cls, VOC.eos]


@pytest.mark.parametrize("tokens", [np.array([404.0, 12.9]), torch.tensor([404.0, 405.0]), [404.0, 405.5],
                                    np.array([True, False])])
def test_float_or_bool_tokens_are_a_type_error(tokens):
    with pytest.raises(TypeError, match="integer token ids"):
        as_token_array(tokens)
    with pytest.raises(TypeError, match="tokens must be integer"):
        decode_sequence(VOC, tokens)


def test_integer_tokens_of_any_container_are_accepted():
    for tokens in (row_with_object(), np.array(row_with_object(), np.int32), torch.tensor(row_with_object()), []):
        assert as_token_array(tokens).dtype == np.int64


def test_float_class_token_never_becomes_a_class():
    row = torch.tensor([row_with_object()], dtype=torch.float32)
    row[0, 5] = VOC.num_bins + 12.9
    with pytest.raises(TypeError, match="tokens"):
        postprocess_rows(VOC, row, torch.ones(row.shape), [(100, 100)])
    with pytest.raises(TypeError, match="sequence"):
        collate_sequences(VOC, [[404.0, 405.0]])


@pytest.mark.parametrize("decode", [lambda r: decode_detection(COCO, r, 10, 10), lambda r: decode_keypoints(COCO, r, 10, 10),
                                    lambda r: decode_segmentation(COCO, r, 10, 10),
                                    lambda r: decode_caption(COCO.with_words(2), WordList.build(["a"]), r)])
def test_pix2seqv2_decoders_refuse_float_rows(decode):
    with pytest.raises(TypeError, match="integer token ids"):
        decode(np.array([478.0, 12.9, 476.0]))
    decode([])  # an empty row is no error


def test_decode_raises_on_an_inverted_box():
    with pytest.raises(ValueError, match=r"object 0: box tokens \[30, 20, 10, 40\] have xmax < xmin"):
        decode_sequence(VOC, row_with_object((30, 20, 10, 40)))
    with pytest.raises(ValueError, match="ymax < ymin"):
        decode_sequence(VOC, row_with_object((10, 40, 30, 20)))
    boxes, _ = decode_sequence(VOC, row_with_object((10, 20, 10, 20)))  # a zero-size box is upright
    assert boxes.shape == (1, 4)


def test_postprocess_drops_an_inverted_box():
    row = torch.tensor([row_with_object((30, 20, 10, 40))[:-1] + row_with_object()[1:]])  # two objects, then EOS
    (det,) = postprocess_rows(VOC, row, torch.ones(row.shape), [(383, 383)])
    assert det["boxes"].tolist() == [[10.0, 20.0, 30.0, 40.0]] and det["labels"].tolist() == [3]


@pytest.mark.parametrize("probs_shape", [(2, 7), (1, 6), (1, 8), (7,)])
def test_postprocess_refuses_token_probs_of_another_shape(probs_shape):
    tokens = torch.tensor([row_with_object()])
    with pytest.raises(ValueError, match=r"token_probs has shape .* for tokens of shape \(1, 7\)"):
        postprocess_rows(VOC, tokens, torch.ones(probs_shape), [(100, 100)])


@pytest.mark.parametrize("size", [(-1, 100), (100, 0), (math.nan, 100), (100, math.inf), (100,), "wide"])
def test_postprocess_refuses_bad_image_sizes_naming_them(size):
    tokens = torch.tensor([row_with_object(), row_with_object()])
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        postprocess_rows(VOC, tokens, torch.ones(tokens.shape), [(100, 100), size])


@pytest.mark.parametrize("width, height", [(-5, 10), (10, math.nan), (0, 0)])
def test_codecs_refuse_bad_image_sizes_naming_them(width, height):
    with pytest.raises(ValueError, match="width=.*height="):
        encode_objects(VOC, [[1, 2, 3, 4]], [0], width, height)
    for decode in (decode_detection, decode_keypoints, decode_segmentation):
        with pytest.raises(ValueError, match="width=.*height="):
            decode(COCO, [478, 476], width, height)
