"""Published bug: the kernel size sigma * 6 + 1 is a float for a float sigma, and OpenCV cannot parse
a float size: the experiment ran integer sigmas only (no S = 2.5, no s2 = 1.25)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from cases.photos import photo

pytestmark = pytest.mark.pyramid


@given(sigma=st.floats(0.3, 20.0))
def test_kernel_size_of_a_float_sigma_is_an_odd_int(part, sigma):
    k = part("kernel_size")(sigma)
    assert isinstance(k, (int, np.integer)) and k % 2 == 1 and k >= 3


@pytest.mark.parametrize("name", ["camera", "astronaut", "rocket"])
@pytest.mark.parametrize("S", [2.5, 4.2])
def test_p1_at_a_float_sigma_runs_and_sits_between_its_integer_neighbours(part, name, S):
    img = photo(name).astype(np.float64)
    lo, mid, hi = (part("p1")(img, s) for s in (np.floor(S), S, np.ceil(S)))
    assert mid.shape == lo.shape
    # more blur, less contrast: the detail energy decreases monotonically with sigma
    energy = [np.abs(np.diff(x, axis=1)).mean() for x in (lo, mid, hi)]
    assert energy[0] > energy[1] > energy[2]
    rel = np.linalg.norm(part("p2")(img, S / 2) - mid) / np.linalg.norm(mid)
    assert rel < 0.01
