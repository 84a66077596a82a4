"""A re-creation, in our own code and from the published description (docs/design.md §6), of the blog
experiment behind the sigma-halving claim, to show that the `pyramid` cases catch its flaws.

`BlogPyramid(bugs)` switches each published behaviour on separately (off = the reference's):
- "wrap":     P2 - P1 subtracted in uint8: negative differences wrap modulo 256;
- "even":     the half-resolution kernel size int(sigma * 6 + 1) is EVEN when sigma = S / 2 for odd S
              (OpenCV raises);
- "float":    the full-resolution kernel size sigma * 6 + 1 is a float for a float sigma (OpenCV raises);
- "integer":  the best fit is searched over the integers 1..S only;
- "absolute": the residual is the absolute norm ||P2 - P1||, which grows with the image size;
- "border":   the comparison runs on the full frame of even-sized images, where pyrDown's REFLECT_101
              mirror axis and the half-resolution blur's differ by half an output pixel.
`BLOG_PYRAMID` has all of them.
"""

from __future__ import annotations

import cv2
import numpy as np

from reference.pyramid import PyramidReference
from reference.pyramid.core import prepare

ALL_BUGS = frozenset({"wrap", "even", "float", "integer", "absolute", "border"})


class BlogPyramid(PyramidReference):
    def __init__(self, name: str, bugs) -> None:
        unknown = set(bugs) - ALL_BUGS
        if unknown:
            raise ValueError(f"unknown bugs {sorted(unknown)}; known: {sorted(ALL_BUGS)}")
        self.name = name
        self.bugs = frozenset(bugs)
        self.region = "full" if "border" in self.bugs else "odd"

    def kernel_size(self, sigma):
        if "even" in self.bugs:
            return int(sigma * 6 + 1)  # published rule for the halved sigma: 3S + 1 for sigma = S / 2
        return super().kernel_size(sigma)

    def blur(self, image, sigma):
        if "even" in self.bugs:
            k = self.kernel_size(sigma)
            return cv2.GaussianBlur(image, (k, k), sigma)  # OpenCV raises on an even k
        return super().blur(image, sigma)

    def p1(self, image, S):
        if "float" in self.bugs:
            k = S * 6 + 1  # a float for a float S: OpenCV cannot parse the size
            return cv2.pyrDown(cv2.GaussianBlur(image, (k, k), S))
        return super().p1(image, S)

    def p2(self, image, s2):
        return self.blur(self.pyr_down(image), s2)

    def difference(self, a, b):
        if "wrap" in self.bugs:
            return (np.asarray(a) - np.asarray(b)).astype(np.float64)  # uint8 - uint8 wraps
        return super().difference(a, b)

    def residual(self, a, b):
        norm = float(np.linalg.norm(self.difference(a, b)))
        return norm if "absolute" in self.bugs else norm / float(np.linalg.norm(np.asarray(b, np.float64)))

    def residual_curve(self, image, S, s2_values):
        x = prepare(image, self.region)
        ref = self.p1(x, S)
        return np.array([self.residual(self.p2(x, s2), ref) for s2 in s2_values])

    def best_fit(self, image, S):
        if "integer" in self.bugs:
            grid = np.arange(1, int(S) + 1)
            return float(grid[int(np.argmin(self.residual_curve(image, S, grid)))])
        return super().best_fit(image, S)


BLOG_PYRAMID = BlogPyramid("blog-pyramid", ALL_BUGS)
# one published behaviour each, on top of the reference (to check that each case names its bug)
BLOG_WRAP = BlogPyramid("blog-wrap", {"wrap"})
BLOG_EVEN = BlogPyramid("blog-even", {"even"})
BLOG_FLOAT = BlogPyramid("blog-float", {"float"})
BLOG_INTEGER = BlogPyramid("blog-integer", {"integer"})
BLOG_ABSOLUTE = BlogPyramid("blog-absolute", {"absolute"})
BLOG_BORDER = BlogPyramid("blog-border", {"border"})
