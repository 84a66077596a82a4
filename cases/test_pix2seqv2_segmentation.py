"""Segmentation codec of a Pix2SeqV2 implementation: round trip, separators, random start, the length
limit, clamping, masks, garbage. Encoders are read back by the reference decoder and decoders fed
reference-made rows (square, wide and tall grid images), so each case tests one stage."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pycocotools import mask as mask_utils

from cases.strategies import image_size
from cases.strategies_v2 import box_of, contained, garbage_row, grid_polygon, grid_size
from cases.strategies_v2 import ids, ref  # noqa: F401 (fixtures)

pytestmark = pytest.mark.pix2seqv2
LABEL = 0


def is_rotation(decoded, original) -> bool:
    decoded = np.asarray(decoded, np.float64).reshape(-1, 2)
    return decoded.shape == original.shape and any(
        np.allclose(np.roll(original, -k, axis=0), decoded, atol=1e-6) for k in range(len(original)))


@st.composite
def instance(draw, ids, min_polygons=1, max_polygons=4):
    width, height = draw(grid_size(ids))
    polys = draw(st.lists(grid_polygon(ids, width, height), min_size=min_polygons, max_size=max_polygons))
    box = box_of(np.concatenate(polys)) if polys else [0.0, 0.0, float(width), float(height)]
    return width, height, box, polys


@pytest.mark.case(stands_for="segmentation round trip: 0..4 grid polygons (any dtype and container) come back "
                  "in order, each a rotation of its input, with one separator between two", stage="encode_segmentation")
@given(data=st.data(), seeded=st.booleans())
@settings(max_examples=30)
def test_round_trip_any_polygon_count(api, ids, ref, data, seeded):
    width, height, box, polys = data.draw(instance(ids, min_polygons=0), label="instance")
    given_polys = [contained(p.reshape(-1), data, f"polygon {i}") for i, p in enumerate(polys)]
    tokens = list(api.encode_segmentation(box, LABEL, given_polys, width, height,
                                          seed=data.draw(st.integers(0, 2**31 - 1)) if seeded else None))
    assert tokens[0] == ids["segmentation"] and tokens[-1] == ids["eos"]
    assert sum(t == ids["separator"] for t in tokens) == max(0, len(polys) - 1)
    out = ref.decode_segmentation(tokens, width, height)
    assert out["label"] == LABEL and len(out["polygons"]) == len(polys)
    for dec, poly in zip(out["polygons"], polys):
        assert is_rotation(dec, poly), (np.asarray(dec).reshape(-1, 2).tolist(), poly.tolist())
        if not seeded:
            np.testing.assert_allclose(np.asarray(dec).reshape(-1, 2), poly, atol=1e-6)


@pytest.mark.case(stands_for="a seeded encoding starts each polygon at a random vertex (a public Pix2SeqV2 "
                  "discarded np.roll's result: the start never moved)", stage="encode_segmentation")
@given(seed=st.integers(0, 2**31 - 1))
@settings(max_examples=10)
def test_random_start_really_rotates(api, ids, ref, seed):
    """Over 24 seeds the start vertex of a 6-point polygon varies, and every encoding is a rotation."""
    side = ids["num_bins"] - 1
    poly = np.array([[1, 1], [20, 1], [30, 10], [30, 30], [10, 30], [1, 20]], np.float64)
    starts = set()
    for s in range(seed, seed + 24):
        tokens = api.encode_segmentation(box_of(poly), LABEL, [poly.reshape(-1).tolist()], side, side, seed=s)
        dec = np.asarray(ref.decode_segmentation(tokens, side, side)["polygons"][0]).reshape(-1, 2)
        assert is_rotation(dec, poly)
        starts.add(tuple(dec[0]))
    assert len(starts) >= 3  # P(<= 2 distinct of 6 in 24 uniform draws) < 1e-11


@pytest.mark.case(stands_for="the same seed gives the same tokens", stage="encode_segmentation")
def test_same_seed_same_tokens(api, ids):
    side = ids["num_bins"] - 1
    poly = [1, 1, 20, 1, 30, 10, 30, 30, 10, 30]
    assert api.encode_segmentation([1, 1, 30, 30], LABEL, [poly], side, side, seed=7) == \
        api.encode_segmentation([1, 1, 30, 30], LABEL, [poly], side, side, seed=7)


@pytest.mark.case(stands_for="long outlines are thinned to fit max_len in all, not per polygon (a public "
                  "Pix2SeqV2 kept 128 points of each polygon: three outlines overflow)", stage="encode_segmentation")
@pytest.mark.parametrize("polygons", [1, 3])
def test_long_outlines_fit_the_sequence(api, ids, ref, polygons):
    side = ids["num_bins"] - 1
    angle = np.linspace(0, 2 * np.pi, 1000, endpoint=False)
    outlines = [np.stack([side * (0.2 + 0.3 * k) + side / 12 * np.cos(angle), side / 2 + side / 3 * np.sin(angle)], 1)
                for k in range(polygons)]
    tokens = api.encode_segmentation([0, 0, side, side], LABEL, [o.reshape(-1).tolist() for o in outlines], side, side, seed=0)
    assert len(tokens) <= ids["max_len"], f"{len(tokens)} tokens for max_len {ids['max_len']}"
    out = ref.decode_segmentation(tokens, side, side)
    assert len(out["polygons"]) == polygons and min(len(p) for p in out["polygons"]) >= 6


@pytest.mark.case(stands_for="polygon vertices outside the image are clamped to it: every point token is a "
                  "coordinate bin (a public Pix2SeqV2 only clamped negatives)", stage="encode_segmentation")
@given(data=st.data(), overshoot=st.floats(0.01, 1.0))
def test_vertices_outside_the_image_are_clamped(api, ids, ref, data, overshoot):
    width, height = data.draw(image_size(ids["num_bins"]), label="size")
    poly = np.array([[-overshoot * width, -overshoot * height], [(1 + overshoot) * width, 0],
                     [(1 + overshoot) * width, (1 + overshoot) * height], [0, (1 + overshoot) * height]])
    tokens = list(api.encode_segmentation([0, 0, width, height], LABEL, [poly.reshape(-1).tolist()], width, height))
    body = tokens[6:-1]
    assert all(0 <= t < ids["num_bins"] for t in body), body
    got = np.asarray(ref.decode_segmentation(tokens, width, height)["polygons"][0]).reshape(-1, 2)
    np.testing.assert_allclose(got, [[0, 0], [width, 0], [width, height], [0, height]], atol=1e-6 * max(width, height))


@pytest.mark.case(stands_for="decode_segmentation reads reference rows of any polygon count exactly, in pixels "
                  "(a public Pix2SeqV2 crashed on exactly one separator: squeeze().tolist() gave an int)",
                  stage="decode_segmentation")
@given(data=st.data(), pad=st.integers(0, 4))
@settings(max_examples=30)
def test_decode_reads_reference_rows(api, ids, ref, data, pad):
    width, height, box, polys = data.draw(instance(ids), label="instance")
    row = ref.encode_segmentation(box, LABEL, [p.reshape(-1).tolist() for p in polys], width, height) + [ids["pad"]] * pad
    out = api.decode_segmentation(row, width, height)
    assert out["label"] == LABEL
    np.testing.assert_allclose(np.asarray(out["box"], np.float64), box, atol=1e-6)
    assert len(out["polygons"]) == len(polys)
    for dec, poly in zip(out["polygons"], polys):
        np.testing.assert_allclose(np.asarray(dec, np.float64).reshape(-1, 2), poly, atol=1e-6)


@pytest.mark.case(stands_for="PAD inside a polygon drops at most that one point: the other points and "
                  "polygons keep their places (removing every PAD first shifts x and y)", stage="decode_segmentation")
@given(data=st.data())
@settings(suppress_health_check=[HealthCheck.large_base_example])
def test_pad_inside_a_row_spoils_only_its_point(api, ids, ref, data):
    width, height = data.draw(grid_size(ids), label="size")
    polys = [data.draw(grid_polygon(ids, width, height, min_points=5), label=f"polygon {i}") for i in range(3)]
    row = ref.encode_segmentation(box_of(np.concatenate(polys)), LABEL, [p.reshape(-1).tolist() for p in polys],
                                  width, height)
    at = 6 + data.draw(st.integers(0, 2 * len(polys[0]) - 1), label="position in the first polygon")
    row[at] = ids["pad"]
    out = api.decode_segmentation(row, width, height)
    assert len(out["polygons"]) == 3  # (three polygons: two separators, not the one-separator crash case)
    first = np.asarray(out["polygons"][0], np.float64).reshape(-1, 2)
    spoiled = (at - 6) // 2
    np.testing.assert_allclose(first, np.delete(polys[0], spoiled, axis=0), atol=1e-6)
    for got, want in zip(out["polygons"][1:], polys[1:]):
        np.testing.assert_allclose(np.asarray(got, np.float64).reshape(-1, 2), want, atol=1e-6)


@pytest.mark.case(stands_for="polygons_to_rle gives pycocotools' mask of the polygons' union", stage="polygons_to_rle")
@given(data=st.data())
@settings(max_examples=25)
def test_mask_equals_pycocotools(api, ids, data):
    width, height, _, polys = data.draw(instance(ids, max_polygons=3), label="instance")
    flat = [p.reshape(-1).tolist() for p in polys]
    got = api.polygons_to_rle(flat, width, height)
    assert list(got["size"]) == [height, width]
    want = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, height, width)))
    assert np.array_equal(mask_utils.decode(dict(got)), want)


@pytest.mark.case(stands_for="no polygon gives the empty mask", stage="polygons_to_rle")
def test_no_polygon_gives_an_empty_mask(api):
    mask = mask_utils.decode(dict(api.polygons_to_rle([], 40, 30)))
    assert mask.shape == (30, 40) and mask.sum() == 0


@pytest.mark.case(stands_for="decode_segmentation never raises on what a model emits; polygons have >= 3 "
                  "points inside the image", stage="decode_segmentation")
@given(data=st.data())
def test_garbage_rows_never_raise(api, ids, data):
    row = data.draw(garbage_row(ids, "segmentation", max_len=80), label="row")
    width, height = data.draw(image_size(ids["num_bins"]), label="size")
    out = api.decode_segmentation(row, width, height)
    for poly in out["polygons"]:
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        assert len(xy) >= 3
        assert np.all((xy >= -1e-6) & (xy <= np.array([width, height]) + 1e-6))
