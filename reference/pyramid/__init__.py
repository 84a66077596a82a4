"""The sigma-halving claim (docs/design.md §6): pipelines (core), measurements (analysis), and `PYRAMID`,
the reference object of the `pyramid` case family (cases/interface/pyramid.py)."""

from __future__ import annotations

import numpy as np

from reference.pyramid import analysis, core
from reference.pyramid.analysis import (PHOTOS, Fit, best_fit, impulse_variances, integer_search,  # noqa: F401
                                        kernel_variance, load_photo, predicted_variances, residual_curve)
from reference.pyramid.core import (BORDER, DEFAULT_TRUNCATE, blur, crop_odd, difference, gaussian_kernel,  # noqa: F401
                                    kernel_size, p1, p2, pyr_down, residual)


class PyramidReference:
    """The reference experiment, part by part (contracts in cases/interface/pyramid.py).

    Comparisons (residual_curve, best_fit) run on the odd-cropped input, so that both pipelines
    mirror the right/bottom border about the same axis.
    """

    name = "reference"
    region = "odd"

    kernel_size = staticmethod(core.kernel_size)
    blur = staticmethod(core.blur)
    pyr_down = staticmethod(core.pyr_down)
    p1 = staticmethod(core.p1)
    p2 = staticmethod(core.p2)
    difference = staticmethod(core.difference)
    residual = staticmethod(core.residual)

    def residual_curve(self, image, S, s2_values) -> np.ndarray:
        return analysis.residual_curve(image, S, s2_values, region=self.region)

    def best_fit(self, image, S) -> float:
        return analysis.best_fit(image, S, region=self.region).s2


PYRAMID = PyramidReference()
