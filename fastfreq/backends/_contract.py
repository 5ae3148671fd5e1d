"""What every backend shares besides its signature.

Every backend module under ``fastfreq.backends`` exposes

    spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale,
                     nfd_bands, generator, seed=None, precision=None) -> Tensor

taking the arguments that ``fastfreq.functional`` validated. Parameters out of
range (which only ``check_values=False`` lets through): band ids outside
{0, 1, 2}, ``alpha`` or ``alpha_r`` outside [0, 1] or NaN give an all-NaN
output for that image on every backend, without a host sync and without
reading anything with the bad value.
"""
from __future__ import annotations

import torch


def valid_stand_ins(bad, band, alpha, alpha_r):
    """band / alpha / alpha_r with the bad images' values replaced by valid
    ones (band 0, alpha 0, alpha_r 0), so that no lookup is out of range; the
    caller makes those images NaN afterwards."""
    if bad is None:
        return band, alpha, alpha_r
    if band is not None:
        band, alpha = torch.where(bad, 0, band), torch.where(bad, 0, alpha)
    if alpha_r is not None:
        alpha_r = torch.where(bad[:, None], 0, alpha_r)
    return band, alpha, alpha_r


def bad_images(band, alpha, alpha_r):
    """Boolean (B,) mask of images with out-of-range parameters, or None."""
    bad = None
    if band is not None:
        a = alpha.to(torch.float64) if alpha.dtype != torch.float64 else alpha
        bad = (band < 0) | (band > 2) | ~((a >= 0) & (a <= 1))
    if alpha_r is not None:
        ar_bad = ~((alpha_r >= 0) & (alpha_r <= 1)).all(dim=1)
        bad = ar_bad if bad is None else bad | ar_bad
    return bad
