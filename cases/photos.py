"""The photographs the pyramid cases run on: scikit-image's bundled data (real photographs that load
offline), as 2-D grey uint8 the way the published experiment read them."""

from functools import lru_cache

import numpy as np

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
