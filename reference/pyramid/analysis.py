"""Measurements of the sigma-halving claim: impulse-response moments vs closed forms, the continuous
best-fit s2, and the published integer search (reproduced with its flaws switchable)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from reference.pyramid.spectral import Spectrum
from reference.pyramid.core import (DEFAULT_MARGIN, DEFAULT_TRUNCATE, compared, difference, gaussian_kernel,
                                    p1, p2, prepare, residual)

BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # pyrDown's 1-D kernel, variance 1 px^2
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "moon", "brick", "gravel", "grass", "coins")


# -- impulse responses -------------------------------------------------------------------------------
def kernel_variance(sigma, truncate: float = DEFAULT_TRUNCATE) -> float:
    """Variance (px^2) of the sampled truncated Gaussian that `blur` uses."""
    k = gaussian_kernel(sigma, truncate)
    x = np.arange(k.size) - k.size // 2
    return float((k * x * x).sum())


def _decimated_variance(h: np.ndarray) -> float:
    """Variance, in output pixels^2, of a centred odd-length 1-D response kept at even offsets."""
    c = h.size // 2
    keep = h[c % 2::2]  # the samples at even offsets from the centre
    n = (np.arange(keep.size) - keep.size // 2).astype(np.float64)
    return float((keep * n * n).sum() / keep.sum())


def predicted_variances(S, s2, truncate: float = DEFAULT_TRUNCATE) -> dict[str, float]:
    """Per-axis variances in output px^2: continuous S^2/4 + 1/4 and s2^2 + 1/4, and the discrete-kernel
    predictions (1-D numpy convolution of the very kernels, decimation included for P1)."""
    h1 = np.convolve(gaussian_kernel(S, truncate), BINOMIAL)  # full-resolution response of P1
    return {
        "p1_continuous": float(S) ** 2 / 4 + 0.25,
        "p2_continuous": float(s2) ** 2 + 0.25,
        "p1_discrete": _decimated_variance(h1),
        "p2_discrete": _decimated_variance(BINOMIAL) + kernel_variance(s2, truncate),
    }


def impulse_variances(S, s2, truncate: float = DEFAULT_TRUNCATE, dtype=np.float64) -> tuple[float, float]:
    """Measured per-axis (row) variance, output px^2, of the 2-D impulse responses of P1(S) and P2(s2)."""
    radius = int(3 * truncate * max(float(S), 2 * float(s2))) + 8
    n = 4 * (radius // 2 + 1) + 1  # odd size, centre 2 * (radius // 2 + 1) is even: on the output grid
    image = np.zeros((n, n), dtype=dtype)
    image[n // 2, n // 2] = 255 if dtype == np.uint8 else 1.0
    out = []
    for response in (p1(image, S, truncate), p2(image, s2, truncate)):
        w = response.astype(np.float64).sum(axis=1)  # marginal along rows
        y = np.arange(w.size, dtype=np.float64)
        mean = (w * y).sum() / w.sum()
        out.append(float((w * (y - mean) ** 2).sum() / w.sum()))
    return out[0], out[1]


# -- best fit ----------------------------------------------------------------------------------------
def residual_curve(image, S, s2_values, region: str = "odd", truncate: float = DEFAULT_TRUNCATE,
                   margin: int = DEFAULT_MARGIN) -> np.ndarray:
    """||P2(s2) - P1(S)|| / ||P1(S)|| over `region`, for each s2: (len(s2_values),) float64."""
    x = prepare(image, region)
    ref = compared(p1(x, S, truncate), region, margin)
    return np.array([residual(compared(p2(x, s2, truncate), region, margin), ref) for s2 in s2_values])


@dataclass(frozen=True)
class Fit:
    s2: float  # best-fit sigma at half resolution
    ratio: float  # s2 / S
    residual: float  # relative residual at s2


def kernel_radius_intervals(low: float, high: float, truncate: float = DEFAULT_TRUNCATE) -> list[tuple[float, float]]:
    """[low, high] cut where the kernel radius ceil(truncate * s) changes: pieces (a, b] of constant radius
    (the first one closed at low). The radius of s = b is the piece's own (kernel_size rounds truncate * s
    to 9 decimals first, so r / truncate has radius r)."""
    pieces, a = [], low
    r = int(np.ceil(round(truncate * low, 9)))
    while a < high:
        b = min(high, r / truncate)
        if b > a:
            pieces.append((a, b))
        a, r = max(a, b), r + 1
    return pieces


def best_fit(image, S, region: str = "odd", truncate: float = DEFAULT_TRUNCATE,
             margin: int = DEFAULT_MARGIN, bounds=(0.4, 0.6), xatol: float = 1e-5,
             spectrum: Spectrum | None = None) -> Fit:
    """The s2 in bounds * S with the lowest relative residual ||P2(s2) - P1(S)|| / ||P1(S)||.

    The kernel radius ceil(truncate * s2) jumps where truncate * s2 crosses an integer, and so does the
    residual: a single bounded search misses a minimum that sits at a jump (e.g. s2 = S/2 = 10 with
    radius 30, the residual just above it being that of radius 31). So every piece of constant radius
    is searched on its own and the lowest of all wins. Within a piece the residual is smooth and has one
    minimum (checked against a dense grid in tests/test_pyramid.py): one-sided slopes at its two ends say
    whether that minimum is the closed end, the open end (to xatol * S) or inside (bounded Brent, to
    xatol * S). Computed in float64 (uint8 input is converted first) in the DCT-I domain
    (reference.pyramid.spectral), which agrees with the OpenCV pipelines to ~1e-15 relative.
    `spectrum` reuses a prepared image.
    """
    S = float(S)
    if not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be 0 < low < high (fractions of S), got {bounds!r}")
    sp = spectrum if spectrum is not None else Spectrum(prepare(image, region))
    ref = compared(sp.p1(S, truncate), region, margin)

    def cost(s2: float) -> float:
        return residual(compared(sp.p2(s2, truncate), region, margin), ref)

    low, high = bounds[0] * S, bounds[1] * S
    h = 0.5 * xatol * S  # step of the one-sided slope tests
    candidates = [(cost(low), low)]
    for a, b in kernel_radius_intervals(low, high, truncate):
        top = cost(b)
        candidates.append((top, b))
        if b - a <= 4 * h or cost(b - h) > top:  # still falling at the closed end: the piece's minimum is b
            continue
        start, after = cost(a + h), cost(a + 2 * h)
        candidates.append((start, a + h))
        if start <= after:  # rising from the open end: the minimum is there (a + h, within xatol)
            continue
        res = minimize_scalar(cost, bounds=(a + h, b - h), method="bounded", options={"xatol": xatol * S})
        candidates.append((float(res.fun), float(res.x)))
    value, s2 = min(candidates)
    return Fit(float(s2), float(s2) / S, float(value))


def integer_search(image, S: int, wrap: bool = False, absolute: bool = False, region: str = "full",
                   truncate: float = DEFAULT_TRUNCATE) -> tuple[int, np.ndarray]:
    """The published search: s2 over the integers 1..S, argmin of ||P2 - P1||.

    As published: wrap=True (uint8 P2 - P1 wraps modulo 256), absolute=True, region='full'.
    Returns (argmin s2, norms for s2 = 1..S). Only integer s2 exist, so S/2 is out of reach for odd S.
    """
    x = prepare(image, region)
    ref = p1(x, S, truncate)
    den = 1.0 if absolute else float(np.linalg.norm(ref.astype(np.float64)))
    norms = []
    for s2 in range(1, int(S) + 1):
        out = p2(x, s2, truncate)
        diff = (out - ref).astype(np.float64) if wrap else difference(out, ref)  # uint8 - uint8 wraps
        norms.append(float(np.linalg.norm(diff)) / den)
    norms = np.array(norms)
    return int(np.argmin(norms)) + 1, norms


# -- photographs -------------------------------------------------------------------------------------
def load_photo(name: str) -> np.ndarray:
    """A scikit-image bundled photograph (offline) as (H, W) uint8 grey."""
    from skimage import data

    from reference.pyramid.core import to_gray

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; bundled photographs used here: {', '.join(PHOTOS)}")
    return to_gray(getattr(data, name)())
