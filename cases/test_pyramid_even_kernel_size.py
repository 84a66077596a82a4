"""Published bug: the half-resolution kernel size int(sigma * 6 + 1), with sigma = S / 2, is 3S + 1:
EVEN for every odd S, and OpenCV's GaussianBlur raises on an even size. The experiment could not run
the half of an odd sigma at all."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from cases.photos import photo

pytestmark = pytest.mark.pyramid


@given(S=st.integers(1, 60))
def test_kernel_size_at_half_a_sigma_is_odd_and_covers_three_sigma(part, S):
    k = part("kernel_size")(S / 2)
    assert isinstance(k, (int, np.integer)) and k % 2 == 1
    assert (k - 1) / 2 >= 3 * S / 2 - 1e-9


@pytest.mark.parametrize("name,S", [("camera", 3), ("coffee", 5), ("coins", 7), ("brick", 9)])
def test_half_of_an_odd_sigma_runs_and_matches_p1(part, name, S):
    img = photo(name).astype(np.float64)
    out, ref = part("p2")(img, S / 2), part("p1")(img, S)
    assert out.shape == ref.shape == ((img.shape[0] + 1) // 2, (img.shape[1] + 1) // 2)
    rel = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert rel < 0.01  # measured <= 2e-3 on these photos: the claim holds at S / 2
