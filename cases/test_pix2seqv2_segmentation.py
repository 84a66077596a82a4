"""Segmentation codec of a Pix2SeqV2 implementation: round trip, separators, random start, masks, garbage."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytestmark = pytest.mark.pix2seqv2


@pytest.fixture(scope="module")
def ids(api):
    """The implementation's fixed token ids (num_bins, eos, task tokens, ...)."""
    return dict(api.token_layout)


@st.composite
def grid_polygon(draw, side, min_points=3, max_points=10):
    """A polygon with integer vertices on the quantisation grid (image side = num_bins - 1)."""
    n = draw(st.integers(min_points, max_points))
    xs = draw(st.lists(st.integers(0, side), min_size=n, max_size=n))
    ys = draw(st.lists(st.integers(0, side), min_size=n, max_size=n))
    return np.stack([xs, ys], axis=1).astype(np.float64)  # (P, 2)


def is_rotation(decoded, original) -> bool:
    decoded = np.asarray(decoded, np.float64).reshape(-1, 2)
    return decoded.shape == original.shape and any(
        np.allclose(np.roll(original, -k, axis=0), decoded, atol=1e-6) for k in range(len(original)))


BOX, LABEL = [2.0, 3.0, 40.0, 50.0], 0


@given(data=st.data(), seeded=st.booleans())
@settings(max_examples=30)
def test_round_trip_any_polygon_count(api, ids, data, seeded):
    """0..4 polygons on the grid decode to the same polygons, in order, each a rotation of its input."""
    side = ids["num_bins"] - 1
    polys = data.draw(st.lists(grid_polygon(side), min_size=0, max_size=4), label="polygons")
    tokens = api.encode_segmentation(BOX, LABEL, [p.reshape(-1).tolist() for p in polys], side, side,
                                     seed=data.draw(st.integers(0, 2**31 - 1)) if seeded else None)
    assert tokens[0] == ids["segmentation"] and tokens[-1] == ids["eos"]
    assert sum(t == ids["separator"] for t in tokens) == max(0, len(polys) - 1)
    out = api.decode_segmentation(tokens, side, side)
    assert out["label"] == LABEL
    np.testing.assert_allclose(out["box"], BOX, atol=1e-6)
    assert len(out["polygons"]) == len(polys)
    for dec, poly in zip(out["polygons"], polys):
        assert is_rotation(dec, poly)
        if not seeded:
            np.testing.assert_allclose(np.asarray(dec).reshape(-1, 2), poly, atol=1e-6)


def test_two_polygons_have_exactly_one_separator(api, ids):
    side = ids["num_bins"] - 1
    a, b = [1, 1, 9, 1, 9, 9], [20, 20, 30, 20, 30, 30, 20, 30]
    tokens = api.encode_segmentation(BOX, LABEL, [a, b], side, side)
    assert tokens.count(ids["separator"]) == 1
    cut = tokens.index(ids["separator"])
    assert cut == 6 + len(a) and len(tokens) == 6 + len(a) + 1 + len(b) + 1


@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=10)
def test_random_start_really_rotates(api, ids, seed):
    """Over 24 seeds the start vertex of a 6-point polygon varies, and every encoding is a rotation."""
    side = ids["num_bins"] - 1
    poly = np.array([[1, 1], [20, 1], [30, 10], [30, 30], [10, 30], [1, 20]], np.float64)
    starts = set()
    for s in range(seed, seed + 24):
        out = api.decode_segmentation(api.encode_segmentation(BOX, LABEL, [poly.reshape(-1).tolist()], side, side,
                                                              seed=s), side, side)
        dec = np.asarray(out["polygons"][0]).reshape(-1, 2)
        assert is_rotation(dec, poly)
        starts.add(tuple(dec[0]))
    assert len(starts) >= 3  # P(<= 2 distinct of 6 in 24 uniform draws) < 1e-11


def test_same_seed_same_tokens(api, ids):
    side = ids["num_bins"] - 1
    poly = [1, 1, 20, 1, 30, 10, 30, 30, 10, 30]
    assert api.encode_segmentation(BOX, LABEL, [poly], side, side, seed=7) == \
        api.encode_segmentation(BOX, LABEL, [poly], side, side, seed=7)


def test_long_outline_fits_the_sequence(api, ids):
    """A 1000-vertex circle is thinned: the sequence fits max_len and decodes to one polygon."""
    side = ids["num_bins"] - 1
    angle = np.linspace(0, 2 * np.pi, 1000, endpoint=False)
    circle = np.stack([side / 2 + side / 3 * np.cos(angle), side / 2 + side / 3 * np.sin(angle)], 1)
    tokens = api.encode_segmentation(BOX, LABEL, [circle.reshape(-1).tolist()], side, side, seed=0)
    assert len(tokens) <= ids["max_len"]
    out = api.decode_segmentation(tokens, side, side)
    assert len(out["polygons"]) == 1 and len(out["polygons"][0]) >= 6


@given(data=st.data())
@settings(max_examples=25)
def test_decoded_mask_equals_the_input_mask_on_the_grid(api, ids, data):
    side = ids["num_bins"] - 1
    polys = [p.reshape(-1).tolist() for p in data.draw(st.lists(grid_polygon(side), min_size=1, max_size=3))]
    out = api.decode_segmentation(api.encode_segmentation(BOX, LABEL, polys, side, side, seed=1), side, side)
    want, got = api.polygons_to_rle(polys, side, side), api.polygons_to_rle(out["polygons"], side, side)
    assert list(got["size"]) == [side, side]
    from pycocotools import mask as mask_utils
    assert np.array_equal(mask_utils.decode(dict(got)), mask_utils.decode(dict(want)))


def test_no_polygon_gives_an_empty_mask(api):
    from pycocotools import mask as mask_utils
    rle = api.polygons_to_rle([], 40, 30)
    mask = mask_utils.decode(dict(rle))
    assert mask.shape == (30, 40) and mask.sum() == 0


@given(row=st.lists(st.integers(-10, 2000), max_size=80), w=st.integers(1, 500), h=st.integers(1, 500))
def test_garbage_rows_never_raise(api, row, w, h):
    out = api.decode_segmentation(row, w, h)
    for poly in out["polygons"]:
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        assert len(xy) >= 3
        assert np.all((xy >= -1e-6) & (xy <= np.array([w, h]) + 1e-6))
    api.polygons_to_rle(out["polygons"], w, h)
