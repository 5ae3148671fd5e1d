"""Batched augmentation modules: sample parameters per sample, then apply them
with one call of the fused op.

Each module has ``sample_params(batch, device)`` and ``forward(x, params=None)``
returning ``(images, params)``; passing ``params`` back replays the exact same
augmentation. ``p`` is applied per sample with ``torch.where`` (no Python
branch, no host sync), ``same_on_batch`` draws one set for the whole batch,
and a ``torch.Generator`` makes the draws reproducible. Inputs are
``(B, C, H, W)`` batches or single ``(C, H, W)`` images (DataLoader workers).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import _checks as chk
from . import functional as F
from .backends.ext import draw_seed
from .reference import PAPER_BANDS


def sample_control_weights(batch: int, n_bands: int = 5, *, generator=None, device=None,
                           dtype=torch.float32) -> torch.Tensor:
    """NFD control weights ``alpha_r`` ``(batch, n_bands)`` (Section 3.3): one
    entry per row, chosen uniformly, is ``U(0, 1)``; the others are 0 or 1 with
    probability 1/2."""
    if not isinstance(n_bands, int) or n_bands < 1:
        raise ValueError(f"n_bands: expected a positive int, got {n_bands!r}")
    dev = generator.device if generator is not None else device
    w = torch.randint(0, 2, (batch, n_bands), generator=generator, device=dev).to(dtype)
    pick = torch.randint(0, n_bands, (batch,), generator=generator, device=dev)
    u = torch.rand(batch, generator=generator, device=dev, dtype=dtype)
    w.scatter_(1, pick[:, None], u[:, None])
    return w.to(device) if device is not None else w


def _batched(x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4:
        raise ValueError(f"x: expected (B, C, H, W) or (C, H, W), got {tuple(x.shape)}")
    return x, False


class _Augment(nn.Module):
    def __init__(self, p: float, same_on_batch: bool, generator, backend: str):
        super().__init__()
        self.p = chk.probability(p, "p")
        self.same_on_batch = bool(same_on_batch)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self.backend = backend

    def _gen_device(self, device):
        return self.generator.device if self.generator is not None else torch.device(device)

    def _rand(self, n, device, **kw):
        return torch.rand(n, generator=self.generator, device=self._gen_device(device), **kw)

    def _applied(self, batch, device):
        n = 1 if self.same_on_batch else batch
        applied = self._rand(n, device) < self.p
        return applied.expand(batch).to(device)

    def forward(self, x, params=None):
        x4, single = _batched(x)
        if params is None:
            params = self.sample_params(x4.shape[0], x4.device, tuple(x4.shape[-2:]))
        out = self.apply_params(x4, params)
        return (out[0] if single else out), params


class PowerSuppression(_Augment):
    """Power suppression (eq. 5) with probability ``p`` per sample; the band is
    uniform over ``bands`` and ``alpha ~ U(alpha[0], alpha[1])``.

    ``params``: ``applied`` (bool), ``band`` (int64 id in {0, 1, 2}) and
    ``alpha`` (float; 0 where not applied), each ``(B,)``: what the APS labels
    are built from.
    """

    def __init__(self, p: float = 1 / 3, bands: Sequence[str] = ("L", "M", "H"),
                 alpha: tuple[float, float] = (0.0, 1.0), radius_scale: float = 1.0, *,
                 same_on_batch: bool = False, generator=None, backend: str = "auto"):
        super().__init__(p, same_on_batch, generator, backend)
        if isinstance(bands, str) or not len(bands):
            raise ValueError(f"bands: expected a non-empty sequence of 'L', 'M', 'H', got {bands!r}")
        self.band_ids = [chk.band_id(b) for b in bands]
        lo, hi = (chk.finite_float(a, "alpha") for a in alpha)
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"alpha: expected a range (lo, hi) with 0 <= lo <= hi <= 1, got {alpha}")
        self.alpha_range = (lo, hi)
        self.radius_scale = chk.positive_float(radius_scale, "radius_scale")

    def sample_params(self, batch: int, device="cpu", size=None) -> dict:
        """``size`` (the image size) is accepted for a uniform interface; unused."""
        n = 1 if self.same_on_batch else batch
        gdev = self._gen_device(device)
        applied = self._applied(batch, device)
        pick = torch.randint(0, len(self.band_ids), (n,), generator=self.generator, device=gdev)
        # map the pick to band ids with scalars: no host-to-device copy (no sync)
        band = torch.full_like(pick, self.band_ids[0])
        for j, bid in enumerate(self.band_ids[1:], 1):
            band = torch.where(pick == j, bid, band)
        band = band.expand(batch).to(device)
        lo, hi = self.alpha_range
        alpha = (lo + (hi - lo) * self._rand(n, device)).expand(batch).to(device)
        alpha = torch.where(applied, alpha, torch.zeros_like(alpha))
        return {"applied": applied, "band": band, "alpha": alpha}

    def apply_params(self, x, params):
        out = F.power_suppress(x, params["band"], params["alpha"], radius_scale=self.radius_scale,
                               backend=self.backend, check_values=False)
        return torch.where(params["applied"][:, None, None, None], out, x)


def resolve_nfd_bands(bands, H: int, W: int):
    """``"paper"`` -> the paper's five 40x40 bands; ``"equal-coverage"`` ->
    five bands of equal information coverage for this size; else explicit
    ``(a, b)`` edges."""
    if isinstance(bands, str):
        if bands == "paper":
            return PAPER_BANDS
        if bands == "equal-coverage":
            from .bands import equal_coverage_bands

            return equal_coverage_bands(H, W, 5)
        raise ValueError(f"bands: expected 'paper', 'equal-coverage' or (a, b) pairs, got {bands!r}")
    return chk.nfd_bands(bands)


class NFD(_Augment):
    """Noise in Frequency Domain (eq. 12) with probability ``p`` per sample.

    ``params``: ``applied`` (bool ``(B,)``), ``alpha_r`` (``(B, n)`` control
    weights) and ``seed`` (the Philox key of the noise draw, so a replay adds
    the same noise on every backend).
    """

    def __init__(self, sigma: float = 1.0, p: float = 1.0, bands="paper", *,
                 same_on_batch: bool = False, generator=None, backend: str = "auto"):
        super().__init__(p, same_on_batch, generator, backend)
        self.sigma = chk.nonneg_float(sigma, "sigma")
        if not isinstance(bands, str):
            bands = chk.nfd_bands(bands)
        else:
            resolve_nfd_bands(bands, 40, 40)  # validate the name now
        self.bands = bands

    def sample_params(self, batch: int, device="cpu", size: tuple[int, int] = (40, 40)) -> dict:
        n_bands = len(resolve_nfd_bands(self.bands, *size))
        n = 1 if self.same_on_batch else batch
        applied = self._applied(batch, device)
        w = sample_control_weights(n, n_bands, generator=self.generator,
                                   device=torch.device(device)).expand(batch, n_bands)
        return {"applied": applied, "alpha_r": w, "seed": draw_seed(torch.device(device), self.generator)}

    def apply_params(self, x, params):
        bands = resolve_nfd_bands(self.bands, *x.shape[-2:])
        out = F.nfd(x, params["alpha_r"], sigma=self.sigma, nfd_bands=bands, seed=params["seed"],
                    backend=self.backend, check_values=False)
        return torch.where(params["applied"][:, None, None, None], out, x)


class SpectralAugment(nn.Module):
    """Power suppression then NFD (Section 4.2) in ONE call of the fused op.

    Samples where NFD is not applied (``0 < nfd_p < 1``) need a second,
    suppression-only call; with the paper's ``nfd_p = 1`` there is one call.
    ``ps_p = 0`` or ``nfd_p = 0`` (or ``sigma = 0``) leaves that half out.
    ``params`` = ``{"ps": ..., "nfd": ...}``.
    """

    def __init__(self, ps_p: float = 1 / 3, bands: Sequence[str] = ("L", "M", "H"),
                 alpha: tuple[float, float] = (0.0, 1.0), radius_scale: float = 1.0,
                 sigma: float = 1.0, nfd_p: float = 1.0, nfd_bands="paper", *,
                 same_on_batch: bool = False, generator=None, backend: str = "auto"):
        super().__init__()
        self.ps = PowerSuppression(ps_p, bands, alpha, radius_scale, same_on_batch=same_on_batch,
                                   generator=generator, backend=backend)
        self.nfd = NFD(sigma, nfd_p, nfd_bands, same_on_batch=same_on_batch, generator=generator,
                       backend=backend)
        self.backend = backend

    def sample_params(self, batch: int, device="cpu", size: tuple[int, int] = (40, 40)) -> dict:
        return {"ps": self.ps.sample_params(batch, device),
                "nfd": self.nfd.sample_params(batch, device, size)}

    def forward(self, x, params=None):
        x4, single = _batched(x)
        if params is None:
            params = self.sample_params(x4.shape[0], x4.device, tuple(x4.shape[-2:]))
        ps, nf = params["ps"], params["nfd"]
        use_ps = self.ps.p > 0
        use_nfd = self.nfd.p > 0 and self.nfd.sigma > 0
        if not use_nfd:
            out = self.ps.apply_params(x4, ps)
        elif not use_ps:
            out = self.nfd.apply_params(x4, nf)
        else:
            bands = resolve_nfd_bands(self.nfd.bands, *x4.shape[-2:])
            # alpha is 0 where suppression is not applied: the gain is then exactly 1
            out = F.spectral_augment(x4, ps["band"], ps["alpha"], nf["alpha_r"], sigma=self.nfd.sigma,
                                     radius_scale=self.ps.radius_scale, nfd_bands=bands,
                                     seed=nf["seed"], backend=self.backend, check_values=False)
            if self.nfd.p < 1:
                ps_only = self.ps.apply_params(x4, ps)
                out = torch.where(nf["applied"][:, None, None, None], out, ps_only)
        return (out[0] if single else out), params
