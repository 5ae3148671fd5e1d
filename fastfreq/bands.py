"""NFD bands of equal information coverage for any image size (beyond the paper).

The paper tuned five bands for 40x40 images so that each covers about 1/5 of
the information of the 1/f model (eqs. 15-18). On other sizes those bands are
far from equal (32x32: 0.28/0.27/0.32/0.11/0.02). Here the bands are derived
for any ``H, W``: consecutive hills of eq. 13 that overlap on one unit ramp
(``a_{i+1} = b_i + 1``, as the paper's bands do, so they sum to 1), with real
edges chosen so that each band's coverage degree is exactly ``1/n``. The
information model's amplitude is ``H * W`` (1600 on 40x40, as in the paper).
"""
from __future__ import annotations


import numpy as np

from . import _checks as chk
from . import reference as ref
from .constants import PAPER_BANDS


def _cumulative_coverage(b: float, dH: np.ndarray) -> float:
    """Coverage of the union of the bands up to the one ending at ``b``: the
    sum of hills is 1 below ``b`` and ramps down to 0 on ``[b, b + 1)``."""
    s = np.arange(len(dH), dtype=np.float64)
    return float(np.sum(np.clip(b + 1.0 - s, 0.0, 1.0) * dH))


def equal_coverage_bands(H: int, W: int, n: int = 5, *, tol: float = 1e-10):
    """``n`` ``(a, b)`` band edges whose coverage degrees (eq. 18 on the
    ``H x W`` grid) are each ``1/n``."""
    chk.image_size(H, W)
    if not isinstance(n, int) or not 1 <= n <= chk.MAX_NFD_BANDS:
        raise ValueError(f"n: expected an int in [1, {chk.MAX_NFD_BANDS}], got {n!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 < tol < 1):
        raise ValueError(f"tol: expected a number in (0, 1), got {tol!r}")
    dH = ref.information_increments(H, W)
    top = float(len(dH) - 1)  # ceil of the largest radius
    cuts = []
    for i in range(1, n):
        target, lo, hi = i / n, -1.0, top
        for _ in range(200):  # bisection; 200 halvings reach any tol in (0, 1)
            if hi - lo <= tol:
                break
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _cumulative_coverage(mid, dH) < target else (lo, mid)
        cuts.append(0.5 * (lo + hi))
    a = [0.0] + [c + 1.0 for c in cuts]
    b = cuts + [max(top, a[-1] + 1e-6)]
    bands = tuple((float(ai), float(bi)) for ai, bi in zip(a, b))
    if any(ai >= bi for ai, bi in bands):
        raise ValueError(f"n: {n} bands of equal coverage do not fit a {H}x{W} grid; use fewer")
    return bands


def band_coverage(bands, H: int, W: int) -> np.ndarray:
    """Coverage degree of each band on the ``H x W`` grid (amplitude ``H*W``)."""
    return ref.nfd_band_coverage(bands, H, W)


def paper_band_coverage_table(sizes=((32, 32), (40, 40), (64, 64))) -> dict:
    """Coverage of the paper's bands and of the equal-coverage bands per size."""
    return {f"{H}x{W}": {"paper": band_coverage(PAPER_BANDS, H, W).round(4).tolist(),
                         "equal": band_coverage(equal_coverage_bands(H, W), H, W).round(4).tolist()}
            for H, W in sizes}


__all__ = ["equal_coverage_bands", "band_coverage", "paper_band_coverage_table"]
