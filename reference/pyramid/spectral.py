"""The float64 pipelines in the DCT-I domain, for fast best-fit sweeps.

A REFLECT_101 border is the even periodic extension of period 2 (n - 1); a symmetric kernel
convolved with it is diagonal in the type-I DCT, with gains g0 + 2 sum_m g_m cos(pi k m / (n - 1)).
So a blur (or pyrDown's binomial) on an (H, W) image is one product in the DCT-I domain, and a
best-fit search costs one inverse DCT per s2. Agrees with core.p1 / core.p2 (OpenCV) to ~1e-13.
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dctn, idctn

from reference.pyramid.core import DEFAULT_TRUNCATE, check_image, gaussian_kernel

BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # pyrDown's 1-D kernel


def gains(kernel: np.ndarray, n: int) -> np.ndarray:
    """(n,) DCT-I gains of the centred symmetric odd `kernel` on n samples with a REFLECT_101 border."""
    if n < 2:
        raise ValueError(f"need at least 2 samples along an axis, got {n}")
    r = kernel.size // 2
    half = kernel[r:]  # g_0 .. g_r
    k = np.arange(n)[:, None]  # (n, 1)
    m = np.arange(1, r + 1)[None, :]  # (1, r)
    return half[0] + 2.0 * (np.cos(np.pi * k * m / (n - 1)) @ half[1:])


def _gauss(n: int, sigma: float, truncate: float) -> np.ndarray:
    return gains(gaussian_kernel(sigma, truncate), n)


class Spectrum:
    """One image prepared for many P1(S) / P2(s2) evaluations (float64, uint8 is converted)."""

    def __init__(self, image) -> None:
        x = check_image(image).astype(np.float64)
        self.shape = x.shape
        self.full = dctn(x, type=1)  # (H, W) DCT-I of the input
        h, w = x.shape
        self._bin = (gains(BINOMIAL, h), gains(BINOMIAL, w))
        y = idctn(self.full * np.outer(*self._bin), type=1)[::2, ::2]  # pyrDown(image)
        self.half = dctn(y, type=1)  # DCT-I of pyrDown(image)

    def p1(self, S, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
        """pyrDown(blur(image, S)): ((H+1)//2, (W+1)//2)."""
        (h, w), S = self.shape, float(S)
        gr = self._bin[0] * _gauss(h, S, truncate)
        gc = self._bin[1] * _gauss(w, S, truncate)
        return idctn(self.full * np.outer(gr, gc), type=1)[::2, ::2]

    def p2(self, s2, truncate: float = DEFAULT_TRUNCATE) -> np.ndarray:
        """blur(pyrDown(image), s2): ((H+1)//2, (W+1)//2)."""
        h, w = self.half.shape
        return idctn(self.half * np.outer(_gauss(h, float(s2), truncate), _gauss(w, float(s2), truncate)), type=1)
