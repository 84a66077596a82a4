"""Keypoint codec of a Pix2SeqV2 implementation: round trip with the dataset's keypoint counts (17 for
COCO, 5 for the generated dataset) on square, wide and tall images, invisible keypoints, clamping per
axis, PAD inside a row, garbage. Encoders are read back by the reference decoder and decoders fed
reference-made rows, so each case tests one stage."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cases.strategies import image_size
from cases.strategies_v2 import KEYPOINT_COUNTS, contained, garbage_row, grid_keypoints, grid_size
from cases.strategies_v2 import ids, ref  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pix2seqv2
LABEL = 0


def expected(kps: np.ndarray) -> np.ndarray:
    """What a decoder returns for (K, 3) input keypoints: labelled ones at their place with v = 2."""
    want = np.zeros_like(kps)
    labelled = kps[:, 2] > 0
    want[labelled, :2], want[labelled, 2] = kps[labelled, :2], 2
    return want


@pytest.mark.case(stands_for="keypoint round trip on the grid (any K, any dtype and container): labelled "
                  "keypoints at their place with v = 2, unlabelled ones (0, 0, 0)", stage="encode_keypoints")
@given(data=st.data(), count=st.one_of(st.sampled_from(KEYPOINT_COUNTS), st.integers(1, 20)))
@settings(max_examples=30)
def test_round_trip(api, ids, ref, data, count):
    width, height = data.draw(grid_size(ids), label="size")
    kps = data.draw(grid_keypoints(ids, width, height, count), label="keypoints")
    tokens = list(api.encode_keypoints([0, 0, width, height], LABEL, contained(kps, data), width, height))
    assert tokens[0] == ids["keypoint"] and tokens[-1] == ids["eos"]
    assert len(tokens) == 6 + 2 * len(kps) + 1
    out = ref.decode_keypoints(tokens, width, height)
    assert out["label"] == LABEL
    np.testing.assert_allclose(np.asarray(out["keypoints"], np.float64), expected(kps), atol=1e-6)


@pytest.mark.case(stands_for="flat [x, y, v] * K and (K, 3) keypoints encode alike", stage="encode_keypoints")
def test_flat_and_stacked_keypoints_agree(api):
    kps = [[5, 6, 2], [0, 0, 0], [7, 8, 1]]
    assert api.encode_keypoints([2, 3, 40, 50], LABEL, kps, 100, 100) == \
        api.encode_keypoints([2, 3, 40, 50], LABEL, np.asarray(kps).reshape(-1).tolist(), 100, 100)


@pytest.mark.case(stands_for="an unlabelled keypoint is two invisible tokens in its own place", stage="encode_keypoints")
def test_invisible_keypoint_is_two_invisible_tokens(api, ids):
    tokens = list(api.encode_keypoints([2, 3, 40, 50], LABEL, [[5, 6, 2], [50, 60, 0], [7, 8, 2]], 100, 100))
    assert tokens[8:10] == [ids["invisible"], ids["invisible"]]
    assert ids["invisible"] not in tokens[6:8] + tokens[10:12]


@pytest.mark.case(stands_for="keypoint tokens are coordinate bins on any image size (a public Pix2SeqV2 "
                  "wrote raw pixel values: tokens past num_bins on large images)", stage="encode_keypoints")
@given(data=st.data())
def test_keypoint_tokens_are_bins_on_any_image(api, ids, ref, data):
    width, height = data.draw(st.integers(ids["num_bins"], 2000)), data.draw(st.integers(ids["num_bins"], 2000))
    kps = np.array([[width, height, 2], [width - 1, 0, 2], [0, height - 1, 2], [width / 2, height / 3, 2]], np.float64)
    tokens = list(api.encode_keypoints([0, 0, width, height], LABEL, kps, width, height))
    assert all(0 <= t < ids["num_bins"] for t in tokens[6:-1]), tokens[6:-1]
    got = np.asarray(ref.decode_keypoints(tokens, width, height)["keypoints"], np.float64)
    assert np.all(np.abs(got[:, :2] - kps[:, :2]) <= np.array([width, height]) / (ids["num_bins"] - 1) + 1e-9)


@pytest.mark.case(stands_for="keypoints on and past the border clamp per axis: x to the width, y to the height",
                  stage="encode_keypoints")
@given(data=st.data(), overshoot=st.floats(0, 500))
def test_keypoints_past_the_border_clamp_per_axis(api, ids, ref, data, overshoot):
    w, h = data.draw(image_size(ids["num_bins"]), label="size")
    kps = [[0, 0, 2], [w, h, 2], [w + overshoot, h + overshoot, 2], [-overshoot, -overshoot, 2],
           [w + overshoot, 0, 2], [0, h + overshoot, 2]]
    tokens = list(api.encode_keypoints([0, 0, w, h], LABEL, kps, w, h))
    assert all(0 <= t < ids["num_bins"] for t in tokens[6:-1])
    got = np.asarray(ref.decode_keypoints(tokens, w, h)["keypoints"], np.float64)
    np.testing.assert_allclose(got[:, :2], [[0, 0], [w, h], [w, h], [0, 0], [w, 0], [0, h]], atol=1e-6 * max(w, h))


@pytest.mark.case(stands_for="decode_keypoints reads rows of any keypoint count K, not only 17 (a public "
                  "Pix2SeqV2 asserted 34 tokens)", stage="decode_keypoints")
@given(data=st.data(), count=st.one_of(st.just(5), st.integers(1, 16)), with_k=st.booleans())
def test_decode_reads_rows_of_any_keypoint_count(api, ids, ref, data, count, with_k):
    side = ids["num_bins"] - 1
    kps = data.draw(grid_keypoints(ids, side, side, count), label="keypoints")
    row = ref.encode_keypoints([0, 0, side, side], LABEL, kps, side, side)
    out = api.decode_keypoints(row, side, side, num_keypoints=count if with_k else None)
    np.testing.assert_allclose(np.asarray(out["keypoints"], np.float64).reshape(-1, 3), expected(kps), atol=1e-6)


@pytest.mark.case(stands_for="decoded keypoints are pixels of their image: x by the width, y by the height "
                  "(a public Pix2SeqV2 clamped y to the width)", stage="decode_keypoints")
@given(data=st.data())
def test_decode_scales_x_by_the_width_and_y_by_the_height(api, ids, ref, data):
    width, height = data.draw(grid_size(ids), label="size")
    kps = data.draw(grid_keypoints(ids, width, height, 17), label="keypoints")
    row = ref.encode_keypoints([0, 0, width, height], LABEL, kps, width, height)
    out = api.decode_keypoints(row, width, height)
    np.testing.assert_allclose(np.asarray(out["keypoints"], np.float64).reshape(-1, 3), expected(kps), atol=1e-6)


@pytest.mark.case(stands_for="PAD inside a keypoint row makes only that keypoint unlabelled; the others keep "
                  "their places (removing every PAD first shifts x and y)", stage="decode_keypoints")
@given(data=st.data())
def test_pad_inside_a_row_spoils_only_its_keypoint(api, ids, ref, data):
    side = ids["num_bins"] - 1
    kps = data.draw(grid_keypoints(ids, side, side, 17), label="keypoints")
    row = ref.encode_keypoints([0, 0, side, side], LABEL, kps, side, side)
    at = 6 + data.draw(st.integers(0, 2 * 17 - 1), label="position")
    row[at] = ids["pad"]
    got = np.asarray(api.decode_keypoints(row, side, side, num_keypoints=17)["keypoints"], np.float64).reshape(-1, 3)
    want = expected(kps)
    want[(at - 6) // 2] = 0
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.case(stands_for="decode_keypoints never raises on what a model emits; K = num_keypoints when given",
                  stage="decode_keypoints")
@given(data=st.data(), k=st.one_of(st.none(), st.integers(0, 20)))
def test_garbage_rows_never_raise(api, ids, data, k):
    row = data.draw(garbage_row(ids, "keypoint"), label="row")
    w, h = data.draw(image_size(ids["num_bins"]), label="size")
    got = np.asarray(api.decode_keypoints(row, w, h, num_keypoints=k)["keypoints"], np.float64).reshape(-1, 3)
    if k is not None:
        assert got.shape == (k, 3)
    assert np.all(np.isin(got[:, 2], (0, 2)))
    assert np.all((got[:, :2] >= -1e-6) & (got[:, :2] <= np.array([w, h]) + 1e-6))
