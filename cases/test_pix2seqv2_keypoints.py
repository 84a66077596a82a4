"""Keypoint codec of a Pix2SeqV2 implementation: round trip, invisible keypoints, border clamping, garbage."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytestmark = pytest.mark.pix2seqv2


@pytest.fixture(scope="module")
def ids(api):
    """The implementation's fixed token ids (num_bins, eos, task tokens, ...)."""
    return dict(api.token_layout)

BOX, LABEL = [2.0, 3.0, 40.0, 50.0], 0


@st.composite
def grid_keypoints(draw, side, max_k=17):
    k = draw(st.integers(1, max_k))
    rows = [[draw(st.integers(0, side)), draw(st.integers(0, side)), draw(st.sampled_from([0, 1, 2]))]
            for _ in range(k)]
    return np.array(rows, np.float64)  # (K, 3)


@given(data=st.data())
@settings(max_examples=30)
def test_round_trip(api, ids, data):
    """Labelled keypoints come back at their place with v = 2, unlabelled ones as (0, 0, 0)."""
    side = ids["num_bins"] - 1
    kps = data.draw(grid_keypoints(side))
    tokens = api.encode_keypoints(BOX, LABEL, kps, side, side)
    assert tokens[0] == ids["keypoint"] and tokens[-1] == ids["eos"]
    assert len(tokens) == 6 + 2 * len(kps) + 1
    out = api.decode_keypoints(tokens, side, side)
    got = np.asarray(out["keypoints"], np.float64)
    assert got.shape == kps.shape and out["label"] == LABEL
    labelled = kps[:, 2] > 0
    np.testing.assert_allclose(got[labelled, :2], kps[labelled, :2], atol=1e-6)
    assert np.all(got[labelled, 2] == 2) and np.all(got[~labelled] == 0)


def test_flat_and_stacked_keypoints_agree(api):
    kps = [[5, 6, 2], [0, 0, 0], [7, 8, 1]]
    assert api.encode_keypoints(BOX, LABEL, kps, 100, 100) == \
        api.encode_keypoints(BOX, LABEL, np.asarray(kps).reshape(-1).tolist(), 100, 100)


def test_invisible_keypoint_is_two_invisible_tokens(api, ids):
    tokens = api.encode_keypoints(BOX, LABEL, [[5, 6, 2], [50, 60, 0], [7, 8, 2]], 100, 100)
    assert tokens[8:10] == [ids["invisible"], ids["invisible"]]
    assert ids["invisible"] not in tokens[6:8] + tokens[10:12]


@given(w=st.integers(2, 1000), h=st.integers(2, 1000), overshoot=st.floats(0, 500))
def test_keypoints_on_and_past_the_border_clamp_per_axis(api, ids, w, h, overshoot):
    """x is clamped to the width and y to the height (not the other way round): corners stay corners."""
    kps = [[0, 0, 2], [w, h, 2], [w + overshoot, h + overshoot, 2], [-overshoot, -overshoot, 2],
           [w + overshoot, 0, 2], [0, h + overshoot, 2]]
    tokens = api.encode_keypoints([0, 0, w, h], LABEL, kps, w, h)
    assert all(0 <= t < ids["num_bins"] for t in tokens[6:-1])
    got = np.asarray(api.decode_keypoints(tokens, w, h)["keypoints"], np.float64)
    want = np.array([[0, 0], [w, h], [w, h], [0, 0], [w, 0], [0, h]], np.float64)
    np.testing.assert_allclose(got[:, :2], want, atol=1e-6 * max(w, h))


@given(row=st.lists(st.integers(-10, 2000), max_size=60), w=st.integers(1, 500), h=st.integers(1, 500),
       k=st.one_of(st.none(), st.integers(0, 20)))
def test_garbage_rows_never_raise(api, row, w, h, k):
    got = np.asarray(api.decode_keypoints(row, w, h, num_keypoints=k)["keypoints"], np.float64).reshape(-1, 3)
    if k is not None:
        assert got.shape == (k, 3)
    assert np.all(np.isin(got[:, 2], (0, 2)))
    assert np.all((got[:, :2] >= -1e-6) & (got[:, :2] <= np.array([w, h]) + 1e-6))
