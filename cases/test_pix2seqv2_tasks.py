"""Shared vocabulary, detection codec and loss mask of a Pix2SeqV2 implementation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

pytestmark = pytest.mark.pix2seqv2


@pytest.fixture(scope="module")
def ids(api):
    """The implementation's fixed token ids (num_bins, eos, task tokens, ...)."""
    return dict(api.token_layout)

TASKS = ("detection", "segmentation", "captioning", "keypoint")


def test_special_tokens_are_distinct_and_outside_bins_and_classes(api, ids):
    special = [ids["bos"], ids["eos"], ids["pad"], ids["invisible"], ids["separator"], *(ids[t] for t in TASKS)]
    assert len(set(special)) == len(special)
    assert min(special) >= ids["num_bins"] + ids["num_classes"]
    assert ids["word_start"] > max(special)


def test_task_token_replaces_bos(api, ids):
    for task in TASKS:
        prompt = api.prompt(task, [1, 2, 30, 40], 0, 100, 100)
        assert prompt[0] == ids[task] and ids["bos"] not in prompt
        assert len(prompt) == (6 if task in ("segmentation", "keypoint") else 1)


@st.composite
def objects(draw, side, num_classes):
    n = draw(st.integers(0, 6))
    boxes = []
    for _ in range(n):
        x0, y0 = draw(st.integers(0, side - 1)), draw(st.integers(0, side - 1))
        boxes.append([x0, y0, draw(st.integers(x0, side)), draw(st.integers(y0, side))])
    labels = [draw(st.integers(0, num_classes - 1)) for _ in range(n)]
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(labels, np.int64)


@given(data=st.data())
@settings(max_examples=30)
def test_detection_round_trip(api, ids, data):
    side = ids["num_bins"] - 1
    boxes, labels = data.draw(objects(side, ids["num_classes"]))
    tokens = api.encode_detection(boxes, labels, side, side)
    assert tokens[0] == ids["detection"] and tokens[-1] == ids["eos"]
    out = api.decode_detection(tokens, side, side)
    np.testing.assert_allclose(np.asarray(out["boxes"], np.float64).reshape(-1, 4), boxes, atol=1e-6)
    assert np.array_equal(np.asarray(out["labels"]), labels)


@given(row=st.lists(st.integers(-10, 2000), max_size=60), w=st.integers(1, 500), h=st.integers(1, 500))
def test_detection_garbage_rows_never_raise(api, row, w, h):
    out = api.decode_detection(row, w, h)
    assert np.asarray(out["boxes"]).reshape(-1, 4).shape[0] == np.asarray(out["labels"]).shape[0]


def _sequences(api):
    words = api.build_words(["a red circle"])
    return {
        "detection": api.encode_detection([[1, 2, 30, 40], [5, 5, 9, 9]], [0, 0], 100, 100),
        "segmentation": api.encode_segmentation([1, 2, 30, 40], 0, [[1, 2, 30, 2, 30, 40]], 100, 100),
        "keypoint": api.encode_keypoints([1, 2, 30, 40], 0, [[3, 4, 2], [0, 0, 0]], 100, 100),
        "captioning": api.encode_caption(words, "a red circle"),
    }


@given(pad=st.integers(0, 5), order=st.permutations(list(TASKS)))
@settings(max_examples=20)
def test_loss_mask_excludes_prompt_and_pad_only(api, ids, pad, order):
    """In a padded batch of all four tasks, exactly the tokens after each row's prompt are targets."""
    seqs = _sequences(api)
    width = max(len(s) for s in seqs.values()) + pad
    batch = torch.full((len(order), width), ids["pad"], dtype=torch.long)
    for row, task in enumerate(order):
        batch[row, :len(seqs[task])] = torch.tensor(seqs[task])
    mask = torch.as_tensor(api.target_mask(batch)).bool()
    assert mask.shape == (len(order), width - 1)
    for row, task in enumerate(order):
        n_prompt = len(api.prompt(task, [1, 2, 30, 40], 0, 100, 100))
        want = torch.zeros(width - 1, dtype=torch.bool)
        want[n_prompt - 1: len(seqs[task]) - 1] = True
        assert torch.equal(mask[row], want), task
