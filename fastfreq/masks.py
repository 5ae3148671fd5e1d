"""Mask matrices in torch (eqs. 1, 5, 11, 14) on any device/dtype, built from
the curves of ``fastfreq.equations``.

Shared by the eager backend, the modules, the Triton kernel's tables and the PDM tools;
``tests/test_masks.py`` checks every function against ``fastfreq.reference``.
"""
from __future__ import annotations

import torch

from . import _checks as chk
from .constants import PAPER_BANDS
# the curves (eqs. 2-4, 13), eq. 5's gain, eq. 11's std and the Hermitian rule
from .equations import (BAND_CURVES, gain_from_mask, hermitian_rule, m_H, m_hill,  # noqa: F401
                        m_L, m_M, m_step, nfd_hill, noise_std_from_control)


def frequency_indices(H: int, W: int, *, device=None, dtype=torch.float32):
    """Integer frequency indices ``(ky, kx)`` (``fftfreq * n``), DC first."""
    chk.image_size(H, W)
    ky = torch.fft.fftfreq(H, d=1.0 / H, device=device, dtype=torch.float64).round()
    kx = torch.fft.fftfreq(W, d=1.0 / W, device=device, dtype=torch.float64).round()
    return ky.to(dtype), kx.to(dtype)


def radius(H: int, W: int, *, half: bool = False, device=None, dtype=torch.float32):
    """Radius ``r(i, j)`` of every frequency, full ``(H, W)`` or ``rfft2``
    half ``(H, W//2 + 1)``."""
    ky, kx = frequency_indices(H, W, device=device, dtype=torch.float64)
    if half:
        kx = torch.arange(W // 2 + 1, device=device, dtype=torch.float64)
    return torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2).to(dtype)


def band_masks(H: int, W: int, *, radius_scale: float = 1.0, half: bool = False,
               device=None, dtype=torch.float32) -> torch.Tensor:
    """The three mask matrices ``M_L, M_M, M_H`` (eq. 1) stacked: ``(3, H, W')``."""
    radius_scale = chk.radius_scale(radius_scale)
    s = radius(H, W, half=half, device=device, dtype=dtype) / radius_scale
    return torch.stack([curve(s) for curve in BAND_CURVES])


def suppression_gain(band: torch.Tensor, alpha: torch.Tensor, H: int, W: int, *,
                     radius_scale: float = 1.0, half: bool = True) -> torch.Tensor:
    """Eq. 5 gain per image, ``1 - alpha (1 - M_band)``: ``(B, H, W')``."""
    masks = band_masks(H, W, radius_scale=radius_scale, half=half,
                       device=alpha.device, dtype=alpha.dtype)
    return gain_from_mask(alpha[:, None, None], masks[band])


def nfd_band_masks(H: int, W: int, *, nfd_bands=PAPER_BANDS, half: bool = True,
                   device=None, dtype=torch.float32) -> torch.Tensor:
    """The NFD band matrices ``M_0 .. M_{n-1}`` stacked: ``(n, H, W')``."""
    s = radius(H, W, half=half, device=device, dtype=dtype)
    return torch.stack([nfd_hill(s, a, b) for a, b in chk.nfd_bands(nfd_bands)])


def control_matrix(alpha_r: torch.Tensor, H: int, W: int, *, nfd_bands=PAPER_BANDS,
                   half: bool = True) -> torch.Tensor:
    """Eq. 14: ``M = sum_i alpha_r[i] M_i`` per image: ``(B, H, W')``."""
    hills = nfd_band_masks(H, W, nfd_bands=nfd_bands, half=half,
                           device=alpha_r.device, dtype=alpha_r.dtype)
    return torch.einsum("bn,nhw->bhw", alpha_r, hills)


def noise_std(alpha_r: torch.Tensor, H: int, W: int, sigma: float, *,
              nfd_bands=PAPER_BANDS, half: bool = True) -> torch.Tensor:
    """Eq. 11 standard deviation ``sqrt(sigma (1 - M))`` (``1 - M`` clipped at 0)."""
    return noise_std_from_control(sigma, control_matrix(alpha_r, H, W, nfd_bands=nfd_bands, half=half))


def hermitian_half(noise: torch.Tensor, W: int) -> torch.Tensor:
    """Apply the Hermitian rule to a half-spectrum draw ``(..., H, W//2+1)``:
    in the self-conjugate columns row ``r > H/2`` takes row ``H - r``."""
    return hermitian_rule(noise, W)
