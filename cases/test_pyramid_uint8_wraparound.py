"""Published bug: P2 - P1 subtracted in uint8. Negative differences wrap to 256 - |d|, so the norm
is dominated by 255 * sqrt(#negative pixels); the residual curve is distorted and its argmin moves
(measured: camera S=3 picks s2=1 instead of 2, gravel S=5 picks 1 instead of 3)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from cases.photos import photo

pytestmark = pytest.mark.pyramid


@given(a=arrays(np.uint8, (7, 9)), b=arrays(np.uint8, (7, 9)))
def test_difference_of_uint8_arrays_is_signed(part, a, b):
    d = np.asarray(part("difference")(a, b))
    np.testing.assert_array_equal(d, a.astype(np.int64) - b.astype(np.int64))


@pytest.mark.parametrize("name", ["camera", "moon", "coins"])
def test_difference_of_uint8_pipelines_is_signed(part, name):
    img = photo(name)
    a, b = part("p2")(img, 1), part("p1")(img, 2)
    assert a.dtype == b.dtype == np.uint8
    d = np.asarray(part("difference")(a, b))
    np.testing.assert_array_equal(d, a.astype(np.int64) - b.astype(np.int64))
    assert (d < 0).any()  # a photo does give negative differences


@pytest.mark.parametrize("name,S", [("camera", 3), ("gravel", 5), ("chelsea", 3), ("moon", 7)])
def test_uint8_search_keeps_the_argmin_of_the_signed_difference(part, name, S):
    """The published integer search on the uint8 photo: same argmin as with a signed difference."""
    img = photo(name)
    ref = part("p1")(img, S)
    outs = [part("p2")(img, s2) for s2 in range(1, S + 1)]
    curve = [np.linalg.norm(part("difference")(o, ref)) for o in outs]
    signed = [np.linalg.norm(o.astype(np.float64) - ref.astype(np.float64)) for o in outs]
    np.testing.assert_allclose(curve, signed, rtol=1e-12)
    assert int(np.argmin(curve)) == int(np.argmin(signed))
