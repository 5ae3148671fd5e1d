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

import math

import numpy as np

from . import _checks as chk
from .constants import PAPER_BANDS
from .equations import nfd_hill


def _information_increments(H: int, W: int) -> np.ndarray:
    """Eqs. 15-17 on the ``H x W`` grid: ``dH[i]``, the share of the 1/f
    model's information (``V(s) = log2(pi f(s)^2)``, ``f(s) = H W / (1 + s)``)
    at radii in ``(i - 1, i]`` (``dH[0]``: radius 0), ``i = 0 .. ceil(r_max)``.
    (The runtime's copy: ``fastfreq.reference`` is the test oracle and has its own.)"""
    ky = np.rint(np.fft.fftfreq(H) * H)
    kx = np.rint(np.fft.fftfreq(W) * W)
    r = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).ravel()
    V = np.log2(math.pi * (H * W / (1.0 + r)) ** 2)
    cumulative = np.array([V[r <= s].sum() for s in range(int(math.ceil(r.max())) + 1)]) / V.sum()
    return np.diff(cumulative, prepend=0.0)


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
    dH = _information_increments(H, W)
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
    """Coverage degree (eq. 18) of each band on the ``H x W`` grid (amplitude ``H*W``)."""
    dH = _information_increments(H, W)
    s = np.arange(len(dH), dtype=np.float64)
    return np.array([float(np.sum(nfd_hill(s, a, b) * dH)) for a, b in chk.nfd_bands(bands)])


def paper_band_coverage_table(sizes=((32, 32), (40, 40), (64, 64))) -> dict:
    """Coverage of the paper's bands and of the equal-coverage bands per size."""
    return {f"{H}x{W}": {"paper": band_coverage(PAPER_BANDS, H, W).round(4).tolist(),
                         "equal": band_coverage(equal_coverage_bands(H, W), H, W).round(4).tolist()}
            for H, W in sizes}


__all__ = ["equal_coverage_bands", "band_coverage", "paper_band_coverage_table"]
