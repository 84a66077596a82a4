"""The two pipelines of the sigma-halving claim, with every choice written down (docs/design.md §6).

P1 = pyrDown(GaussianBlur(image, S))   blur at full resolution, then one pyramid step
P2 = GaussianBlur(pyrDown(image), s2)  one pyramid step, then blur at half resolution

Claim: P2 matches P1 for s2 = S / 2 (variances S^2/4 + 1/4 output px^2 on both sides, in the
continuous limit). Choices made explicit here:
- kernel size: always odd, 2 * ceil(truncate * sigma) + 1; truncate = 3 (the "6 sigma + 1" rule) by
  default, a wider radius on request (truncate = 8 is "untruncated" in float64: tail < 1e-14);
- border: cv2.BORDER_REFLECT_101 in both the blur and pyrDown (OpenCV's default, used explicitly);
- dtype: float64 is computed in float64; uint8 goes through OpenCV's own uint8 paths (each stage
  rounds to uint8), as the published experiment did;
- comparison region: "full" (whole frame), "odd" (input cropped to odd height and width first, so
  that the right/bottom mirror axes of the two pipelines coincide), "interior" (odd crop, then a
  margin of output pixels dropped on every side).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

BORDER = cv2.BORDER_REFLECT_101
DEFAULT_TRUNCATE = 3.0  # kernel radius in sigmas: ksize = 6 sigma + 1 for integer sigma
REGIONS = ("full", "odd", "interior")
DEFAULT_MARGIN = 8  # output pixels dropped on every side by region="interior"
_DTYPES = (np.dtype(np.uint8), np.dtype(np.float64))


def _check_sigma(sigma, what: str = "sigma") -> float:
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number, got {sigma!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive finite number, got {sigma!r}")
    return value


def check_image(image, what: str = "image") -> np.ndarray:
    """A 2-D uint8 or float64 array of at least 2x2 pixels (else ValueError naming the problem)."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D grey image, got shape {arr.shape}")
    if arr.dtype not in _DTYPES:
        raise ValueError(f"{what} must be uint8 or float64, got {arr.dtype}")
    if min(arr.shape) < 2:
        raise ValueError(f"{what} must be at least 2x2 pixels, got shape {arr.shape}")
    return arr


def kernel_size(sigma, truncate: float = DEFAULT_TRUNCATE) -> int:
    """Odd kernel size 2 * ceil(truncate * sigma) + 1 (6 sigma + 1 for integer sigma by default)."""
    sigma = _check_sigma(sigma)
    truncate = _check_sigma(truncate, "truncate")
    radius = max(1, math.ceil(round(truncate * sigma, 9)))  # round: 3 * 0.1 * 10 is not above 3
    return 2 * radius + 1


def gaussian_kernel(sigma, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
    """The sampled, truncated, normalised 1-D Gaussian (ksize,) float64 used by `blur`."""
    sigma = _check_sigma(sigma)
    radius = kernel_size(sigma, truncate) // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(image, sigma, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
    """Gaussian blur (H, W) -> (H, W), same dtype, odd kernel, REFLECT_101 border."""
    image = check_image(image)
    k = kernel_size(sigma, truncate)
    return cv2.GaussianBlur(image, (k, k), sigmaX=float(sigma), sigmaY=float(sigma), borderType=BORDER)


def pyr_down(image) -> np.ndarray:
    """cv2.pyrDown: 5x5 binomial [1,4,6,4,1]/16 then even rows/cols; (H, W) -> ((H+1)//2, (W+1)//2)."""
    image = check_image(image)
    return cv2.pyrDown(image, borderType=BORDER)


def p1(image, S, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
    """pyrDown(blur(image, S)): (H, W) -> ((H+1)//2, (W+1)//2)."""
    return pyr_down(blur(image, S, truncate))


def p2(image, s2, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
    """blur(pyrDown(image), s2): (H, W) -> ((H+1)//2, (W+1)//2)."""
    return blur(pyr_down(image), s2, truncate)


def difference(a, b) -> np.ndarray:
    """Signed a - b in float64 whatever the input dtype (uint8 never wraps)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"difference: shapes differ, {a.shape} vs {b.shape}")
    return a.astype(np.float64) - b.astype(np.float64)


def residual(a, b) -> float:
    """Relative residual ||a - b|| / ||b|| (Frobenius): independent of image size and scale."""
    den = float(np.linalg.norm(np.asarray(b, dtype=np.float64)))
    if den == 0.0:
        raise ValueError("residual: the reference image b is all zeros (relative residual undefined)")
    return float(np.linalg.norm(difference(a, b))) / den


def crop_odd(image) -> np.ndarray:
    """Drop the last row / column where needed so that height and width are odd."""
    image = check_image(image)
    h, w = image.shape
    return image[: h - (1 - h % 2), : w - (1 - w % 2)]


def prepare(image, region: str) -> np.ndarray:
    """The input the pipelines see for a comparison region (odd-cropped unless region == 'full')."""
    if region not in REGIONS:
        raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
    return check_image(image) if region == "full" else crop_odd(image)


def compared(a: np.ndarray, region: str, margin: int = DEFAULT_MARGIN) -> np.ndarray:
    """The part of an output image that a comparison over `region` looks at."""
    if region != "interior":
        return a
    if margin < 0 or 2 * margin >= min(a.shape):
        raise ValueError(f"margin {margin} leaves nothing of an output image of shape {a.shape}")
    return a[margin:a.shape[0] - margin, margin:a.shape[1] - margin] if margin else a


# OpenCV's uint8 RGB -> grey: fixed point with 15 fraction bits (0.299, 0.587, 0.114 scaled, rounded to
# sum 2**15), rounding half up; reproduced here so that cv2.cvtColor can serve as the independent check.
_GREY_WEIGHTS = np.array([9798, 19235, 3735], dtype=np.int64)
_GREY_SHIFT = 15


def to_gray(image) -> np.ndarray:
    """A photograph (H, W) or (H, W, 3|4) RGB(A) -> (H, W) uint8 grey (ITU-R 601 luma). uint8 colour is
    converted bit for bit as cv2.cvtColor(COLOR_RGB2GRAY); other dtypes in float64, rounded."""
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3:
        if arr.shape[2] not in (3, 4):
            raise ValueError(f"colour image must have 3 or 4 channels, got shape {arr.shape}")
        if arr.dtype == np.uint8:
            weighted = arr[..., :3].astype(np.int64) @ _GREY_WEIGHTS  # (H, W)
            return ((weighted + (1 << (_GREY_SHIFT - 1))) >> _GREY_SHIFT).astype(np.uint8)
        arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    elif arr.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr
