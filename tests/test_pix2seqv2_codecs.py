"""Exact values, derived by hand, of the Pix2SeqV2 vocabulary and codecs (reference/pix2seqv2)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from reference.pix2seq.tokenizer import encode_objects
from reference.pix2seqv2 import (COCO, TaskVocabulary, WordList, decode_caption, decode_keypoints,
                                 decode_segmentation, encode_caption, encode_detection, encode_keypoints,
                                 encode_segmentation, polygons_to_rle, sequence_loss, target_mask)
from reference.pix2seqv2.segmentation import fit_polygons


def test_coco_layout_of_design_section_3():
    assert (COCO.bos, COCO.eos, COCO.pad) == (475, 476, 477)
    assert COCO.task_tokens == {"detection": 478, "segmentation": 479, "captioning": 480, "keypoint": 481}
    assert (COCO.invisible, COCO.separator, COCO.word_start) == (500, 501, 550)
    assert COCO.is_class(384) and COCO.is_class(474) and not COCO.is_class(475)
    assert COCO.task_of(480) == "captioning" and COCO.task_of(475) is None


def test_compact_layout():
    v = TaskVocabulary.compact(num_bins=128, num_classes=3, num_words=10)
    assert (v.bos, v.eos, v.pad) == (131, 132, 133)
    assert list(v.task_tokens.values()) == [134, 135, 136, 137]
    assert (v.invisible, v.separator, v.word_start, v.size) == (138, 139, 140, 150)


def test_bad_layouts_are_rejected():
    with pytest.raises(ValueError, match="invisible_offset"):
        TaskVocabulary(invisible_offset=4)
    with pytest.raises(ValueError, match="both"):
        TaskVocabulary(invisible_offset=30, separator_offset=30)
    with pytest.raises(ValueError, match="word_offset"):
        TaskVocabulary(word_offset=20)
    with pytest.raises(ValueError, match="unknown task"):
        COCO.task_token("depth")


def test_detection_is_the_pix2seq_sequence_with_the_task_token():
    seq = encode_detection(COCO, [[10, 20, 30, 40]], [2], 383, 383)
    assert seq == [478, 10, 20, 30, 40, 386, 476]
    assert seq[1:] == encode_objects(COCO.base, [[10, 20, 30, 40]], [2], 383, 383)[1:]


def test_segmentation_tokens_by_hand():
    # 383 x 383 image with 384 bins: pixel p is bin p.
    seq = encode_segmentation(COCO, [10, 10, 50, 50], 3, [[10, 10, 50, 10, 50, 50, 10, 50], [0, 0, 5, 0, 5, 5]],
                              383, 383)
    assert seq == [479, 10, 10, 50, 50, 387, 10, 10, 50, 10, 50, 50, 10, 50, 501, 0, 0, 5, 0, 5, 5, 476]
    out = decode_segmentation(COCO, seq + [477, 477], 383, 383)
    assert out["label"] == 3 and np.allclose(out["box"], [10, 10, 50, 50])
    assert np.allclose(out["polygons"][1], [0, 0, 5, 0, 5, 5])


def test_segmentation_seeded_start_is_a_rotation():
    poly = [10, 10, 50, 10, 50, 50, 10, 50]
    seen = {tuple(encode_segmentation(COCO, [0, 0, 60, 60], 0, [poly], 383, 383, seed=s)[6:14]) for s in range(40)}
    rotations = {tuple(np.roll(np.reshape(poly, (4, 2)), -k, axis=0).reshape(-1)) for k in range(4)}
    assert seen == rotations  # all four start vertices occur, nothing else


def test_segmentation_decode_skips_malformed_pieces():
    # piece 1: pair (7, class 400) dropped, three pairs remain; piece 2: two points only -> dropped;
    # tokens after EOS ignored.
    row = [479, 1, 1, 9, 9, 384, 1, 1, 7, 400, 5, 1, 5, 5, 501, 2, 2, 3, 3, 476, 9, 9, 9, 9, 9, 9]
    out = decode_segmentation(COCO, row, 383, 383)
    assert out["polygons"] == [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]
    assert decode_segmentation(COCO, [479, 500, 500], 383, 383) == {"box": None, "label": None, "polygons": []}


def test_fit_polygons_caps_points_and_tokens():
    big = np.zeros((200, 2))
    assert sum(len(p) for p in fit_polygons([big], 128, 1000)) == 128
    # three 3-point polygons cost 6 + 1 + 6 + 1 + 6 = 20 tokens: they fit 20, not 19 (then two: 13).
    assert len(fit_polygons([np.zeros((3, 2))] * 3, 128, 20)) == 3
    assert len(fit_polygons([np.zeros((3, 2))] * 3, 128, 19)) == 2
    # 15 body tokens for one 10-point polygon: 7 points (14 tokens).
    assert len(fit_polygons([np.zeros((10, 2))], 128, 15)[0]) == 7
    seq = encode_segmentation(COCO, [0, 0, 1, 1], 0, [np.random.default_rng(0).uniform(0, 383, 400)], 383, 383)
    assert len(seq) == 6 + 2 * 128 + 1


def test_rle_of_a_square():
    rle = polygons_to_rle([[0, 0, 4, 0, 4, 4, 0, 4]], 10, 8)
    assert rle["size"] == [8, 10] and isinstance(rle["counts"], str)
    mask = mask_utils.decode(rle)
    assert mask.shape == (8, 10) and mask_utils.area(rle) == mask.sum() > 0
    assert polygons_to_rle([[0, 0, 4, 0]], 10, 8) == polygons_to_rle([], 10, 8)  # 2 points: no area


def test_keypoints_tokens_by_hand_on_a_wide_image():
    # width 200, height 100, 384 bins: x -> nearest bin of x / 200 * 383, y -> of y / 100 * 383.
    seq = encode_keypoints(COCO, [0, 0, 200, 100], 1,
                           [[100, 50, 2], [50, 50, 1], [7, 7, 0], [250, 150, 2], [-5, 100, 2]], 200, 100)
    assert seq == [481, 0, 0, 383, 383, 385, 192, 192, 96, 192, 500, 500, 383, 383, 0, 383, 476]
    kps = decode_keypoints(COCO, seq, 200, 100)["keypoints"]
    np.testing.assert_allclose(kps[3], [200, 100, 2])
    np.testing.assert_allclose(kps[2], [0, 0, 0])
    np.testing.assert_allclose(kps[0], [192 / 383 * 200, 192 / 383 * 100, 2])


def test_keypoints_decode_pads_and_cuts():
    kps = decode_keypoints(COCO, [481, 0, 0, 9, 9, 384, 3, 3, 500, 3, 476], 383, 383, num_keypoints=3)["keypoints"]
    np.testing.assert_allclose(kps, [[3, 3, 2], [0, 0, 0], [0, 0, 0]])


def test_keypoint_input_errors():
    with pytest.raises(ValueError, match="visibility"):
        encode_keypoints(COCO, [0, 0, 9, 9], 0, [[1, 1, 3]], 10, 10)
    with pytest.raises(ValueError, match="triples"):
        encode_keypoints(COCO, [0, 0, 9, 9], 0, [1, 1], 10, 10)
    with pytest.raises(ValueError, match="xyxy"):
        encode_keypoints(COCO, [9, 0, 0, 9], 0, [[1, 1, 2]], 10, 10)


def test_polygon_input_errors():
    with pytest.raises(ValueError, match=r"polygons\[1\] has 5 numbers"):
        encode_segmentation(COCO, [0, 0, 9, 9], 0, [[0, 0, 1, 0, 1, 1], [0, 0, 1, 1, 2]], 10, 10)
    with pytest.raises(ValueError, match="at least 3"):
        encode_segmentation(COCO, [0, 0, 9, 9], 0, [[0, 0, 1, 1]], 10, 10)


def test_word_list_and_caption_tokens_by_hand():
    words = WordList.build(["b a a", "C b A."])  # counts a 3, b 2, c 1
    assert words.words == ("<unk>", "a", "b", "c")
    vocab = COCO.with_words(len(words))
    assert encode_caption(vocab, words, "A c d") == [480, 551, 553, 550, 476]
    assert decode_caption(vocab, words, [480, 551, 553, 550, 476, 552]) == "a c <unk>"
    assert decode_caption(vocab, words, [480, 551, 20, 554, 477, 552]) == "a b"  # bin/PAD/out-of-list skipped
    with pytest.raises(ValueError, match="num_words"):
        encode_caption(COCO, words, "a")


def _batch(vocab, seqs):
    width = max(len(s) for s in seqs) + 2
    out = torch.full((len(seqs), width), vocab.pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


def test_masked_loss_equals_the_single_task_detection_loss():
    torch.manual_seed(0)
    tokens = _batch(COCO, [encode_detection(COCO, [[1, 2, 30, 40], [5, 6, 7, 8]], [0, 3], 383, 383),
                           encode_detection(COCO, [], [], 383, 383)])
    logits = torch.randn(2, tokens.shape[1] - 1, COCO.size)
    single = F.cross_entropy(logits.reshape(-1, COCO.size), tokens[:, 1:].reshape(-1), ignore_index=COCO.pad)
    assert torch.allclose(sequence_loss(logits, tokens, target_mask(COCO, tokens)), single)


def test_masked_loss_equals_the_loss_after_the_box_prompt():
    torch.manual_seed(1)
    seg = encode_segmentation(COCO, [1, 2, 30, 40], 0, [[1, 2, 30, 2, 30, 40]], 383, 383)
    kpt = encode_keypoints(COCO, [1, 2, 30, 40], 0, [[3, 4, 2], [0, 0, 0]], 383, 383)
    tokens = _batch(COCO, [seg, kpt])
    mask = target_mask(COCO, tokens)
    assert mask.sum().item() == (len(seg) - 6) + (len(kpt) - 6)
    logits = torch.randn(2, tokens.shape[1] - 1, COCO.size)
    # single-task loss: the prompt is fed, predictions start at position 5 (predicting token 6)
    single = F.cross_entropy(logits[:, 5:].reshape(-1, COCO.size), tokens[:, 6:].reshape(-1), ignore_index=COCO.pad)
    assert torch.allclose(sequence_loss(logits, tokens, mask), single)
    # uniform logits: every supervised token costs log(V)
    flat = sequence_loss(torch.zeros_like(logits), tokens, mask)
    assert torch.allclose(flat, torch.tensor(float(np.log(COCO.size))))
