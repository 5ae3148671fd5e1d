"""The paper's per-frequency equations, each written once for Python.

Every function takes NumPy arrays (computed in float64) or torch tensors (in
their own dtype and device) and returns the same kind, so the NumPy reference
(``fastfreq.reference``), the torch code (``fastfreq.masks``, the eager
backend, the Triton kernel's curve tables) and the figures all evaluate the
same definitions. The C++/CUDA kernels have their own single copy in
``csrc/spectral_common.h``; ``tests/test_masks.py`` and the backend matrix
check that the two languages agree.

The piecewise-linear curves are written as products of clipped ramps: a
ramp up ``clip(u, 0, 1)`` times a ramp down ``clip(v, 0, 1)`` is the printed
piecewise curve because the two ramps are never below 1 at the same radius.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_array(s):
    return s if isinstance(s, torch.Tensor) else np.asarray(s, dtype=np.float64)


def _ns(a):
    return torch if isinstance(a, torch.Tensor) else np


# ------------------------------------------------------------------ eqs. 2-4
def m_step(s):
    """Eq. 2: 1 for s <= 0, the ramp 1 - s/3 on (0, 3], 0 beyond."""
    s = _as_array(s)
    return (1 - s / 3).clip(0, 1)


def m_hill(s):
    """Eq. 3: ramp up on (0, 3], 1 on (3, 8], ramp down on (8, 11], else 0."""
    s = _as_array(s)
    return (s / 3).clip(0, 1) * ((11 - s) / 3).clip(0, 1)


def m_L(s):
    """Eq. 4, low-pass curve "L" (band id 0)."""
    s = _as_array(s)
    return m_step(s - 1) + m_hill(s - 1)


def m_M(s):
    """Eq. 4, band-pass curve "M" (band id 1)."""
    s = _as_array(s)
    return m_step(s - 1) + m_hill(s - 7)


def m_H(s):
    """Eq. 4, high-pass curve "H" (band id 2), read as ``m_step(s-1) + 1 -
    m_step(s-13)`` (the printed ``+ m_step(s-13)`` is low-pass; see
    docs/paper-notes.md)."""
    s = _as_array(s)
    return m_step(s - 1) + 1 - m_step(s - 13)


#: Band selection: the curve of band id 0, 1, 2.
BAND_CURVES = (m_L, m_M, m_H)


# ------------------------------------------------------------------ eq. 5
def gain_from_mask(alpha, mask):
    """Eq. 5's gain ``1 - alpha (1 - M)`` (alpha broadcasts against M)."""
    return 1 - alpha * (1 - mask)


# ------------------------------------------------------------------ eqs. 11, 13, 14
def nfd_hill(s, a: float, b: float):
    """Eq. 13: 0 below a - 1, a unit ramp up to a, 1 on [a, b), a unit ramp
    down to b + 1, 0 beyond."""
    s = _as_array(s)
    return (s - a + 1).clip(0, 1) * (b - s + 1).clip(0, 1)


def noise_std_from_control(sigma: float, control):
    """Eq. 11's standard deviation ``sqrt(sigma (1 - M))`` from the control
    value M of eq. 14 (``1 - M`` clipped at 0: overlapping bands or weights
    could make it negative)."""
    return _ns(control).sqrt(sigma * (1 - control).clip(0, None))


# ------------------------------------------------------------------ Dir
def direction(Y, eps):
    """``Dir c = c / |c|`` where ``|c| > eps``, else 1 (Section 3.1)."""
    xp = _ns(Y)
    mag = abs(Y)
    defined = mag > eps
    return xp.where(defined, Y / xp.where(defined, mag, 1), 1)


# ------------------------------------------------------------------ Hermitian rule
def canonical_rows(H: int) -> np.ndarray:
    """Row whose draw each row of a self-conjugate column uses: row ``r >
    H/2`` takes row ``H - r`` (the real noise must satisfy G[-k] = G[k])."""
    rows = np.arange(H)
    return np.minimum(rows, (H - rows) % H)


def self_conjugate_columns(W: int) -> list[int]:
    """Half-spectrum columns equal to their own mirror: kx = 0, and W/2 for even W."""
    return [0] + ([W // 2] if W % 2 == 0 else [])


def hermitian_rule(noise_half, W: int):
    """A copy of a half-spectrum draw ``(..., H, W//2+1)`` with the Hermitian
    rule applied in the self-conjugate columns."""
    H = noise_half.shape[-2]
    canon = canonical_rows(H)
    if isinstance(noise_half, torch.Tensor):
        out, canon = noise_half.clone(), torch.as_tensor(canon, device=noise_half.device)
    else:
        out = np.array(noise_half, dtype=np.float64, copy=True)
    for k in self_conjugate_columns(W):
        out[..., :, k] = noise_half[..., canon, k]
    return out
