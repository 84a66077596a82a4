"""Family `pyramid`: an implementation of the sigma-halving experiment (docs/design.md §6).

The claim: P1 = pyrDown(GaussianBlur(image, S)) equals P2 = GaussianBlur(pyrDown(image), s2) for
s2 = S / 2. Conventions shared by every part:
- an image is a 2-D grey ndarray, uint8 (as loaded from disk) or float64; outputs keep the dtype;
- pyrDown is OpenCV's (5-tap binomial, even samples kept, output ((H+1)//2, (W+1)//2));
- sigmas are positive floats, not only integers; S is the full-resolution sigma, s2 the half-resolution one;
- a residual is relative, ||a - b|| / ||b||, so that numbers compare across images and sizes.
"""

from cases.interface import Family

FAMILY = Family(
    name="pyramid",
    reference_spec="reference.pyramid:PYRAMID",
    parts={
        "kernel_size": "kernel_size(sigma) -> int: the odd Gaussian kernel size used for sigma (covers >= 3 sigma)",
        "blur": "blur(image, sigma) -> ndarray: Gaussian blur, same shape and dtype",
        "pyr_down": "pyr_down(image) -> ndarray: one pyramid step, ((H+1)//2, (W+1)//2)",
        "p1": "p1(image, S) -> ndarray: pyr_down(blur(image, S))",
        "p2": "p2(image, s2) -> ndarray: blur(pyr_down(image), s2)",
        "difference": "difference(a, b) -> float ndarray: signed a - b, for uint8 inputs too",
        "residual": "residual(a, b) -> float: relative residual ||a - b|| / ||b||",
        "residual_curve": "residual_curve(image, S, s2_values) -> (len(s2_values),) float: residual of "
                          "P2(s2) against P1(S) for each s2, over the implementation's comparison region",
        "best_fit": "best_fit(image, S) -> float: the s2 minimising the residual against P1(S) (not "
                    "restricted to a grid)",
    },
)
