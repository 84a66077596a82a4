"""Published bug 2 of the Pix2Seq port: postprocess treated only an EOS index of 0 as invalid, so a
row [BOS, EOS] (the model detects nothing) reached decode, raised IndexError and lost the WHOLE batch.
An empty detection is a valid result, and one image's row never affects another's."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from cases.strategies import coco_ground_truth, perfect_model_rows

pytestmark = pytest.mark.pix2seq


def empty_row(api, width=None):
    width = width or api.max_len
    row = torch.full((width,), api.pad, dtype=torch.long)
    row[0], row[1] = api.bos, api.eos
    return row


def test_bos_eos_row_is_an_empty_detection(api):
    tokens = empty_row(api)[None]
    (detection,) = api.postprocess(tokens, torch.ones(tokens.shape), [(640, 480)])
    assert len(detection["boxes"]) == len(detection["labels"]) == len(detection["scores"]) == 0


@given(data=st.data())
def test_mixed_empty_and_nonempty_batch_keeps_every_image(api, data):
    """Perfect rows for a batch in which some images have no object: the others still come out whole."""
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2, max_images=6), label="gt")
    image_ids, tokens, probs, sizes = perfect_model_rows(api, gt)
    detections = api.postprocess(tokens, probs, sizes)
    assert len(detections) == len(image_ids)
    per_image = {img["id"]: 0 for img in gt["images"]}
    for ann in gt["annotations"]:
        per_image[ann["image_id"]] += 1
    assert [len(d["labels"]) for d in detections] == [per_image[i] for i in image_ids]


@given(nonempty=st.integers(0, 5), position=st.integers(0, 5))
def test_one_empty_row_does_not_change_the_others(api, nonempty, position):
    side = api.num_bins - 1
    seq = api.encode(np.array([[10, 20, 100, 200]] * nonempty).reshape(-1, 4), np.zeros(nonempty, np.int64), side, side)
    rows = [torch.as_tensor(api.collate([seq]))[0] for _ in range(5)]
    alone = api.postprocess(torch.stack(rows), torch.ones(5, api.max_len), [(side, side)] * 5)
    rows.insert(position, empty_row(api))
    mixed = api.postprocess(torch.stack(rows), torch.ones(6, api.max_len), [(side, side)] * 6)
    assert len(mixed[position]["labels"]) == 0
    del mixed[position]
    for a, b in zip(alone, mixed):
        np.testing.assert_array_equal(np.asarray(a["boxes"]), np.asarray(b["boxes"]))
