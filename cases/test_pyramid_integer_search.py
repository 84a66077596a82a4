"""Published bug: s2 was searched over the integers 1..S only, so for odd S the answer S / 2 is not
on the grid and the "best" s2 is S/2 -+ 1/2: a ratio s2/S off by 1/(2S) (0.17 at S = 3), read as
evidence against the claim. The best fit must be a continuous minimisation."""

import pytest

from cases.photos import photo

pytestmark = pytest.mark.pyramid
TOL = 0.0025  # |s2/S - 1/2| on real photos (measured <= 0.0018 for S in 3..9, odd-cropped frame)


@pytest.mark.parametrize("name,S", [("camera", 3), ("astronaut", 5), ("gravel", 7), ("coins", 9)])
def test_best_fit_resolves_half_of_an_odd_sigma(part, name, S):
    s2 = float(part("best_fit")(photo(name), S))
    assert abs(s2 / S - 0.5) <= TOL, f"best s2 = {s2} for S = {S}"
