"""Published bug: the residual was the absolute norm ||P2 - P1||, which grows as sqrt(#pixels) and
with the intensity scale, so curves of different images (or sizes) cannot be compared. A residual
must be relative: ||P2 - P1|| / ||P1||."""

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from cases.photos import photo

pytestmark = pytest.mark.pyramid


@pytest.mark.parametrize("name", ["camera", "coffee", "coins"])
def test_residual_does_not_depend_on_image_size(part, name):
    """The same photo tiled 2 x 2 (four times the pixels, same content): the same residual."""
    img = photo(name).astype(np.float64)
    a, b = part("p2")(img, 2), part("p1")(img, 4)
    r1 = part("residual")(a, b)
    r4 = part("residual")(np.tile(a, (2, 2)), np.tile(b, (2, 2)))
    assert r1 > 0
    assert r4 == pytest.approx(r1, rel=1e-9)


@given(a=arrays(np.float64, (6, 5), elements=st.floats(0, 255)),
       b=arrays(np.float64, (6, 5), elements=st.floats(1, 255)), c=st.floats(0.01, 100))
def test_residual_does_not_depend_on_intensity_scale(part, a, b, c):
    assert part("residual")(c * a, c * b) == pytest.approx(part("residual")(a, b), rel=1e-9, abs=1e-12)


def test_residual_is_the_relative_norm(part):
    b = np.full((4, 4), 2.0)
    a = b + np.eye(4)  # ||a - b|| = 2, ||b|| = 8
    assert part("residual")(a, b) == pytest.approx(0.25)
