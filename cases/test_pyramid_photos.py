"""The photographs the pyramid cases run on: scikit-image's bundled data (real photographs that load
offline), as 2-D grey uint8 the way the published experiment read them. `photo(name)` is shared by
the other test_pyramid_* modules."""

from functools import lru_cache

import numpy as np
import pytest

pytestmark = pytest.mark.pyramid

PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "moon", "brick", "gravel", "grass", "coins")


@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """(H, W) uint8 grey photograph (colour ones through skimage.color.rgb2gray)."""
    from skimage import color, data

    img = getattr(data, name)()
    if img.ndim == 3:
        img = np.rint(color.rgb2gray(img[..., :3]) * 255).astype(np.uint8)
    img.setflags(write=False)
    return img


@pytest.mark.parametrize("name", PHOTOS)
def test_photo_is_a_grey_uint8_image(name, part):
    img = photo(name)
    assert img.ndim == 2 and img.dtype == np.uint8 and min(img.shape) >= 256
    assert img.std() > 10  # a photograph, not a flat field
    out = part("pyr_down")(img)  # every implementation must at least take the photo as it is
    assert out.shape == ((img.shape[0] + 1) // 2, (img.shape[1] + 1) // 2)
