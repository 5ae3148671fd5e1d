"""Eager ``torch.fft`` backend: the readable baseline every benchmark compares to.

Runs on any device. Arguments arrive validated by ``fastfreq.functional``.
"""
from __future__ import annotations

import torch

from .. import masks
from ..constants import DIR_EPS_REL
from ..equations import direction
from ..philox import philox_normal
from ._contract import bad_images, kernel_seed, valid_stand_ins


def spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands,
                     generator, seed=None, precision=None):
    """``X = rfft2(x); Y = g X; Z = Y + R Dir(Y); out = irfft2(Z)``.

    Without ``noise``: the kernels' Philox draw for ``seed``, a key drawn
    from ``generator`` when None (as every backend does, so the same
    generator state adds the same noise everywhere)."""
    if x.numel() == 0:  # torch.fft refuses empty batches on CPU (MKL/pocketfft)
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(compute)
    H, W = x.shape[-2:]
    bad = bad_images(band, alpha, alpha_r)
    band, alpha, alpha_r = valid_stand_ins(bad, band, alpha, alpha_r)  # NaN below
    X = torch.fft.rfft2(xf)
    if band is not None:
        X = X * masks.suppression_gain(band, alpha.to(compute), H, W,
                                       radius_scale=radius_scale)[:, None]
    if alpha_r is not None:
        if noise is None:
            noise = philox_normal(kernel_seed(x, alpha_r, noise, seed, generator), X.shape,
                                  device=x.device)
        G = masks.hermitian_half(noise.to(compute), W)
        std = masks.noise_std(alpha_r.to(compute), H, W, sigma, nfd_bands=nfd_bands)
        eps = DIR_EPS_REL * xf.abs().sum(dim=(-2, -1), keepdim=True)
        X = X + (std[:, None] * G) * direction(X, eps)
    out = torch.fft.irfft2(X, s=(H, W))
    if bad is not None:
        out = torch.where(bad[:, None, None, None], float("nan"), out)
    return out.to(x.dtype)
