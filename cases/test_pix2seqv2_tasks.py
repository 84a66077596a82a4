"""Shared vocabulary, prompts, detection codec and loss mask of a Pix2SeqV2 implementation. Encoders are
read back by the reference decoder and decoders fed reference-made rows, so each case tests one stage."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from cases.strategies import every_grid_position, hostile_objects, image_size
from cases.strategies_v2 import garbage_row
from cases.strategies_v2 import ids, ref  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pix2seqv2
TASKS = ("detection", "segmentation", "captioning", "keypoint")


def objects(ids, **kw):
    return hostile_objects(ids["num_bins"], ids["num_classes"], **kw)


@pytest.mark.case(stands_for="the special tokens are distinct and outside the bins and classes", stage="token_layout")
def test_special_tokens_are_distinct_and_outside_bins_and_classes(ids):
    special = [ids["bos"], ids["eos"], ids["pad"], ids["invisible"], ids["separator"], *(ids[t] for t in TASKS)]
    assert len(set(special)) == len(special)
    assert min(special) >= ids["num_bins"] + ids["num_classes"]
    assert ids["word_start"] > max(special)


@pytest.mark.case(stands_for="the task token replaces BOS; the box prompt of segmentation and keypoints is the "
                  "box's object tokens (x by the width, y by the height)", stage="prompt")
@given(data=st.data(), task=st.sampled_from(TASKS))
def test_task_token_replaces_bos(api, ids, ref, data, task):
    _, _, width, height, boxes, labels = data.draw(objects(ids, min_objects=1, max_objects=1), label="box")
    prompt = list(api.prompt(task, boxes[0].tolist(), int(labels[0]), width, height))
    assert prompt[0] == ids[task] and ids["bos"] not in prompt
    assert len(prompt) == (6 if task in ("segmentation", "keypoint") else 1)
    if len(prompt) == 6:
        got = ref.decode_detection([ids["detection"], *prompt[1:], ids["eos"]], width, height)
        assert np.asarray(got["labels"]).tolist() == [int(labels[0])]
        err = np.abs(np.asarray(got["boxes"][0]) - boxes[0])
        assert np.all(err <= np.array([width, height, width, height]) / (ids["num_bins"] - 1) + 1e-9), err


@pytest.mark.case(stands_for="detection round trip within one bin, any box dtype and container (integer "
                  "boxes normalised in their integer dtype become zeros)", stage="encode_detection")
@given(data=st.data())
@settings(max_examples=30)
def test_detection_round_trip(api, ids, ref, data):
    boxes, labels, width, height, want, want_labels = data.draw(objects(ids), label="objects")
    tokens = list(api.encode_detection(boxes, labels, width, height))
    assert tokens[0] == ids["detection"] and tokens[-1] == ids["eos"]
    out = ref.decode_detection(tokens, width, height)
    assert np.array_equal(np.asarray(out["labels"]), want_labels)
    err = np.abs(np.asarray(out["boxes"], np.float64).reshape(-1, 4) - want)
    assert np.all(err <= np.array([width, height, width, height]) / (ids["num_bins"] - 1) + 1e-9), err.max(0)


@pytest.mark.case(stands_for="quantisation: every grid position encodes to its own bin exactly (a truncating "
                  "quantiser puts a few positions one bin low)", stage="encode_detection")
@pytest.mark.parametrize("scale", [(1, 1), (2, 1), (1, 3)], ids=["square", "wide", "tall"])
def test_detection_every_grid_position_is_exact(api, ids, ref, scale):
    width, height = (ids["num_bins"] - 1) * scale[0], (ids["num_bins"] - 1) * scale[1]
    boxes, cap = every_grid_position(ids["num_bins"], *scale), (ids["max_len"] - 2) // 5
    moved = 0
    for start in range(0, len(boxes), cap):
        chunk = boxes[start:start + cap]
        out = ref.decode_detection(api.encode_detection(chunk, np.zeros(len(chunk), np.int64), width, height),
                                   width, height)
        moved += int((np.abs(np.asarray(out["boxes"]).reshape(-1, 4) - chunk).max(axis=1) > 1e-6).sum())
    assert moved == 0, f"{moved} of {len(boxes)} grid boxes move on {width}x{height}"


@pytest.mark.case(stands_for="an image without objects ([] or an empty array) encodes to [DET, EOS]",
                  stage="encode_detection")
@pytest.mark.parametrize("container", ["list", "ndarray", "tensor"])
def test_detection_of_nothing(api, ids, container):
    empty = {"list": ([], []), "ndarray": (np.zeros((0, 4)), np.zeros(0, np.int64)),
             "tensor": (torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))}[container]
    assert list(api.encode_detection(*empty, 640, 480)) == [ids["detection"], ids["eos"]]


@pytest.mark.case(stands_for="decode_detection reads a reference row exactly, in pixels of its own image, "
                  "each score the probability of the object's class token", stage="decode_detection")
@given(data=st.data(), pad=st.integers(0, 5))
def test_decode_detection_reads_reference_rows(api, ids, ref, data, pad):
    _, _, width, height, boxes, labels = data.draw(objects(ids), label="objects")
    row = ref.encode_detection(boxes, labels, width, height) + [ids["pad"]] * pad
    probs = np.random.default_rng(len(row)).uniform(0.05, 1.0, len(row))
    got, want = api.decode_detection(row, width, height, probs=probs), ref.decode_detection(row, width, height, probs=probs)
    assert np.asarray(got["labels"]).tolist() == want["labels"].tolist()
    np.testing.assert_allclose(np.asarray(got["boxes"], np.float64).reshape(-1, 4), want["boxes"], atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["scores"], np.float64), want["scores"], rtol=1e-6)


@pytest.mark.case(stands_for="PAD inside a row spoils only its own object (removing every PAD first shifts "
                  "the objects after it)", stage="decode_detection")
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.large_base_example])
def test_decode_detection_pad_inside_a_row(api, ids, ref, data):
    _, _, width, height, boxes, labels = data.draw(objects(ids, min_objects=3), label="objects")
    row = ref.encode_detection(boxes, labels, width, height)
    k, slot = data.draw(st.integers(0, len(labels) - 2), label="object"), data.draw(st.integers(0, 4), label="slot")
    spoiled = list(row)
    spoiled[1 + 5 * k + slot] = ids["pad"]
    got, want = api.decode_detection(spoiled, width, height), ref.decode_detection(row, width, height)
    keep = [i for i in range(len(labels)) if i != k]
    assert np.asarray(got["labels"]).tolist() == want["labels"][keep].tolist()
    np.testing.assert_allclose(np.asarray(got["boxes"], np.float64).reshape(-1, 4), want["boxes"][keep], atol=1e-6)


@pytest.mark.case(stands_for="decode_detection never raises on what a model emits; labels stay in [0, C)",
                  stage="decode_detection")
@given(data=st.data())
def test_detection_garbage_rows_never_raise(api, ids, data):
    row = data.draw(garbage_row(ids, "detection"), label="row")
    width, height = data.draw(image_size(ids["num_bins"]), label="size")
    out = api.decode_detection(row, width, height)
    labels = np.asarray(out["labels"])
    assert np.asarray(out["boxes"]).reshape(-1, 4).shape[0] == labels.shape[0]
    assert np.all((labels >= 0) & (labels < ids["num_classes"]))


def _sequences(ref):
    words = ref.build_words(["a red circle"])
    return {
        "detection": ref.encode_detection([[1, 2, 30, 40], [5, 5, 9, 9]], [0, 0], 100, 100),
        "segmentation": ref.encode_segmentation([1, 2, 30, 40], 0, [[1, 2, 30, 2, 30, 40]], 100, 100),
        "keypoint": ref.encode_keypoints([1, 2, 30, 40], 0, [[3, 4, 2], [0, 0, 0]], 100, 100),
        "captioning": ref.encode_caption(words, "a red circle"),
    }


@pytest.mark.case(stands_for="the loss mask supervises every token after the prompt and no PAD (a public "
                  "Pix2SeqV2 also masked the first target token: the task token had replaced BOS)",
                  stage="target_mask")
@given(pad=st.integers(0, 5), order=st.permutations(list(TASKS)))
@settings(max_examples=20)
def test_loss_mask_excludes_prompt_and_pad_only(api, ids, ref, pad, order):
    seqs = _sequences(ref)
    width = max(len(s) for s in seqs.values()) + pad
    batch = torch.full((len(order), width), ids["pad"], dtype=torch.long)
    for row, task in enumerate(order):
        batch[row, :len(seqs[task])] = torch.tensor(seqs[task])
    mask = torch.as_tensor(api.target_mask(batch)).bool()
    assert mask.shape == (len(order), width - 1)
    for row, task in enumerate(order):
        n_prompt = 6 if task in ("segmentation", "keypoint") else 1
        want = torch.zeros(width - 1, dtype=torch.bool)
        want[n_prompt - 1: len(seqs[task]) - 1] = True
        assert torch.equal(mask[row], want), f"{task}: {mask[row].int().tolist()}"
