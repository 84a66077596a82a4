"""Published bug: the comparison ran on the full frame of even-sized photos. With REFLECT_101,
pyrDown mirrors an even-sized image about input pixel N-1 (output N/2 - 1/2) while the blur at half
resolution mirrors about output pixel N/2 - 1: the axes differ by half an output pixel, and the best
s2 is pulled off S/2 by the border (measured full frame: up to 0.0027 S at S = 40..60; odd-cropped:
<= 0.0001 S). The residual curve of an implementation must have its minimum at S/2."""

import numpy as np
import pytest

from cases.photos import photo

pytestmark = pytest.mark.pyramid
TOL = 0.001  # |argmin/S - 1/2|; measured odd-cropped <= 1e-4 at these S, full frame 2.1e-3..2.7e-3
STEPS = np.linspace(-0.01, 0.01, 9)  # s2 = S/2 (1 + step)


@pytest.mark.parametrize("name,S", [("coins", 40), ("gravel", 60), ("grass", 60)])
def test_residual_curve_minimum_is_at_half_sigma_on_even_sized_photos(part, name, S):
    img = photo(name).astype(np.float64)
    assert img.shape[1] % 2 == 0  # the published setting: an even-sized photo
    s2 = S / 2 * (1 + STEPS)
    curve = np.asarray(part("residual_curve")(img, S, s2), dtype=np.float64)
    a, b, _ = np.polyfit(s2, curve ** 2, 2)  # the squared residual is a parabola near its minimum
    best = -b / (2 * a)
    assert a > 0 and abs(best / S - 0.5) <= TOL, f"curve minimum at s2 = {best:.4f} for S = {S}"
