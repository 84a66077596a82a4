"""Every implementation takes the photographs the pyramid cases run on (cases/photos.py)."""

import numpy as np
import pytest

from cases.photos import PHOTOS, photo

pytestmark = pytest.mark.pyramid


@pytest.mark.parametrize("name", PHOTOS)
def test_photo_is_a_grey_uint8_image(name, part):
    img = photo(name)
    assert img.ndim == 2 and img.dtype == np.uint8 and min(img.shape) >= 256
    assert img.std() > 10  # a photograph, not a flat field
    out = part("pyr_down")(img)  # every implementation must at least take the photo as it is
    assert out.shape == ((img.shape[0] + 1) // 2, (img.shape[1] + 1) // 2)
