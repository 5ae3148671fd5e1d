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


def draw_seed(device, generator=None) -> torch.Tensor:
    """A 64-bit Philox key on ``device``, drawn from ``generator`` (or the
    default generator of ``device``); no host sync on CUDA."""
    gen_device = generator.device if generator is not None else device
    seed = torch.randint(-2 ** 63, 2 ** 63 - 1, (1,), dtype=torch.int64, device=gen_device,
                         generator=generator)
    # no .to() when it is already there: one op less on every module forward
    return seed if seed.device == torch.device(device) else seed.to(device, non_blocking=True)


def kernel_seed(x, alpha_r, noise, seed, generator):
    """The Philox key of an in-kernel noise draw: ``seed`` when given, else one
    drawn from ``generator``; None when no noise is drawn (no NFD, or an
    explicit ``noise``)."""
    if alpha_r is not None and noise is None and seed is None:
        return draw_seed(x.device, generator)
    return seed


def bands_to_edges(nfd_bands) -> list[float]:
    """``((a, b), ...)`` -> the ops' flat ``[a0, b0, a1, b1, ...]``."""
    return [float(v) for pair in nfd_bands for v in pair]


def edges_to_bands(nfd_edges) -> tuple:
    """The ops' flat edge list -> ``((a, b), ...)``."""
    return tuple(zip(nfd_edges[0::2], nfd_edges[1::2]))


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
