"""Published bug 2 of the Pix2Seq port: postprocess treated only an EOS index of 0 as invalid, so a
row [BOS, EOS] (the model detects nothing) reached decode, raised IndexError and lost the WHOLE batch.
An empty detection is a valid result, and one image's row never affects another's. The rows are made
by the reference tokenizer (the perfect stand-in model), so only postprocess is tested."""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from cases.strategies import coco_ground_truth, image_size, reference_for, reference_rows

BUG = ("port bug 2: a row [BOS, EOS] (nothing detected) crashes postprocess (IndexError) and loses the "
       "whole batch")
pytestmark = [pytest.mark.pix2seq, pytest.mark.case(stands_for=BUG, stage="postprocess")]


def empty_row(api, width=None):
    row = torch.full((width or api.max_len,), api.pad, dtype=torch.long)
    row[0], row[1] = api.bos, api.eos
    return row


def same_objects(got, want):
    np.testing.assert_array_equal(np.asarray(got["labels"]), want["labels"])
    np.testing.assert_allclose(np.asarray(got["boxes"], np.float64).reshape(-1, 4), want["boxes"], atol=1e-6)


@given(data=st.data(), width=st.sampled_from([2, 3, 7, None]))
def test_bos_eos_row_is_an_empty_detection(api, data, width):
    tokens = empty_row(api, width)[None]
    (detection,) = api.postprocess(tokens, torch.ones(tokens.shape), [data.draw(image_size(api.num_bins))])
    assert len(detection["boxes"]) == len(detection["labels"]) == len(detection["scores"]) == 0


@given(data=st.data())
def test_mixed_empty_and_nonempty_batch_keeps_every_image(api, data):
    """Perfect rows of a batch in which some images have no object (emptiness is the point here): every
    image still comes out, each with exactly its own objects."""
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2, max_images=6), label="gt")
    ids = [im["id"] for im in gt["images"]]
    emptied = set(data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=len(ids) - 1, unique=True)))
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] not in emptied]
    image_ids, tokens, probs, sizes = reference_rows(ref, gt)
    detections = api.postprocess(tokens, probs, sizes)
    assert len(detections) == len(image_ids)
    for got, want in zip(detections, ref.postprocess(tokens, probs, sizes)):
        same_objects(got, want)


@given(data=st.data(), position=st.integers(0, 5))
def test_one_empty_row_does_not_change_the_others(api, data, position):
    ref = reference_for(api)
    gt = data.draw(coco_ground_truth(api.num_bins, api.num_classes, min_images=2, max_images=5), label="gt")
    _, tokens, probs, sizes = reference_rows(ref, gt)
    position = min(position, len(sizes))
    rows = list(tokens)
    rows.insert(position, empty_row(api))
    sizes = sizes[:position] + [(640, 480)] + sizes[position:]
    mixed = api.postprocess(torch.stack(rows), torch.ones(len(rows), api.max_len), sizes)
    assert len(mixed) == len(rows) and len(mixed[position]["labels"]) == 0
    del mixed[position]
    for got, want in zip(mixed, ref.postprocess(tokens, probs, [s for i, s in enumerate(sizes) if i != position])):
        same_objects(got, want)
