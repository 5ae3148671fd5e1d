"""NumPy backend: ``fastfreq.reference`` (float64) behind the backend contract.

Slow and exact: the ground truth every other backend is tested against, here
callable through ``spectral_augment(..., backend="numpy")``. Arguments arrive
validated by ``fastfreq.functional``; like every backend it gives NaN for an
image whose parameters are out of range (``check_values=False``).
"""
from __future__ import annotations

import numpy as np
import torch

from .. import reference
from ..philox import philox_normal
from ._contract import bad_images, kernel_seed, valid_stand_ins


def spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands, generator,
                     seed=None, precision=None):
    def np_or_none(t, dtype=torch.float64):
        return None if t is None else t.detach().cpu().to(dtype).numpy()

    B, C, H, W = x.shape
    # keyed as on every backend: a Philox key from the generator, its normals
    seed = kernel_seed(x, alpha_r, noise, seed, generator)
    if noise is None and seed is not None:
        noise = philox_normal(seed, (B, C, H, W // 2 + 1))
    bad = bad_images(band, alpha, alpha_r)
    # the reference runs on valid stand-ins; those images are made NaN after
    band, alpha, alpha_r = valid_stand_ins(bad, band, alpha, alpha_r)
    out = reference.spectral_augment(np_or_none(x), np_or_none(band, torch.int64), np_or_none(alpha),
                                     np_or_none(alpha_r), np_or_none(noise), sigma,
                                     radius_scale=radius_scale, nfd_bands=nfd_bands)
    if bad is not None:
        out[bad.cpu().numpy()] = np.nan
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def draw_params(seed: torch.Tensor, batch: int, settings) -> torch.Tensor:
    """The parameter rows of the reference's own Philox (fastfreq.reference),
    on seed's device."""
    s = settings
    rows = reference.draw_params(int(seed.reshape(()).item()), batch, ps_p=s.ps_p,
                                 ps_bands=s.ps_bands, alpha=s.alpha, nfd_p=s.nfd_p,
                                 n_bands=s.n_bands, same_on_batch=s.same_on_batch)
    return torch.from_numpy(rows).to(seed.device)
