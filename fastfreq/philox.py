"""Philox4x32-10 normal draws in plain torch, bit-compatible with the kernels.

The compiled kernels (csrc/spectral_common.h, the Triton kernel) draw the
noise of a half-spectrum array row by row in row-aligned groups of four: bin
``k`` of row ``r`` (rows counted over all leading dimensions, ``G =
ceil(n / 4)`` groups per row of ``n`` bins) is lane ``k % 4`` of Philox group
``r * G + k // 4``, with the Box-Muller mapping of Triton's ``tl.randn4x``.
(Equivalently: element ``r * 4G + k`` of a flat stream whose element ``i`` is
lane ``i % 4`` of group ``i // 4``.) Row alignment lets a kernel draw a tile
of a plane with one Philox call per four bins. This module computes the same
draws with tensor ops (on any device, the seed may be a device tensor, so
there is no host sync), so that the eager backend can replay an in-kernel
draw. The uniforms are identical; the normals agree to float32 rounding
(the kernels use their own polynomial log/sin/cos).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .constants import PHILOX_LANES

_M32 = 0xFFFFFFFF


def _umul32(a: int, b: torch.Tensor):
    """(hi, lo) of the 64-bit product a * b for uint32 values held in int64.
    b is split into 16-bit halves, so each partial product stays below 2**48
    (no int64 overflow)."""
    p_lo = (b & 0xFFFF) * a
    p_hi = (b >> 16) * a
    t = p_lo + ((p_hi & 0xFFFF) << 16)
    return (p_hi >> 16) + (t >> 32), t & _M32


def philox4x32_10(counter: torch.Tensor, seed: torch.Tensor, stream=0):
    """Four uint32 outputs (as int64 tensors) for counters ``(counter, stream, 0)``
    (the 64-bit counter in the first two words; stream 0 is the noise, 1 and 2
    the parameter draws: an int, or an int64 tensor of counter's shape) and
    key ``seed`` (int64 tensor with one element)."""
    seed = seed.reshape(()).to(torch.int64)
    k0 = seed & _M32
    k1 = (seed >> 32) & _M32
    x = counter & _M32
    y = (counter >> 32) & _M32
    if isinstance(stream, torch.Tensor):
        z = (stream.to(torch.int64) & _M32).expand_as(x)
    else:
        z = torch.full_like(x, int(stream) & _M32)
    w = torch.zeros_like(x)
    for _ in range(10):
        hi_a, lo_a = _umul32(0xD2511F53, x)
        hi_b, lo_b = _umul32(0xCD9E8D57, z)
        x, y, z, w = hi_b ^ y ^ k0, lo_b, hi_a ^ w ^ k1, lo_a
        k0 = (k0 + 0x9E3779B9) & _M32
        k1 = (k1 + 0xBB67AE85) & _M32
    return x, y, z, w


def _unit(u: torch.Tensor) -> torch.Tensor:
    v = torch.where(u >= 2 ** 31, u - 2 ** 32, u)  # as int32
    v = torch.where(v < 0, -v - 1, v)
    return v.to(torch.float32) * 4.6566127342e-10


def groups_per_row(n: int) -> int:
    """Philox groups G = ceil(n / 4) of a row of n bins."""
    return -(-n // PHILOX_LANES)


def padded_index(shape, device=None) -> torch.Tensor:
    """Stream index ``r * 4G + k`` of every element of ``shape`` (see above)."""
    shape = tuple(int(v) for v in shape)
    n = shape[-1] if shape else 1
    rows = math.prod(shape[:-1]) if shape else 1
    row_len = PHILOX_LANES * groups_per_row(n)
    r = torch.arange(rows, device=device, dtype=torch.int64)[:, None]
    k = torch.arange(n, device=device, dtype=torch.int64)[None, :]
    return (r * row_len + k).reshape(shape)


def philox_normal(seed: torch.Tensor, shape, device=None) -> torch.Tensor:
    """Standard normal float32 draws laid out as ``shape``: the kernels' draws
    for ``seed`` (row-aligned groups along the last dimension). One Philox
    call per group of four bins, as the kernels make it (computing it per bin
    did the same work four times over)."""
    device = seed.device if device is None else device
    shape = tuple(int(v) for v in shape)
    n = shape[-1] if shape else 1
    rows = math.prod(shape[:-1]) if shape else 1
    G = groups_per_row(n)
    x, y, z, w = philox4x32_10(torch.arange(rows * G, device=device, dtype=torch.int64),
                               seed.to(device))

    def pair(a, b):  # Box-Muller of tl.randn4x on one pair of words
        r = torch.sqrt(-2.0 * torch.log(_unit(a).clamp_min(1e-7)))
        theta = 6.283185307179586 * _unit(b)
        return r * torch.cos(theta), r * torch.sin(theta)

    lanes = torch.stack(pair(x, y) + pair(z, w), dim=-1)  # (rows * G, 4): lanes 0..3
    return lanes.reshape(rows, G * PHILOX_LANES)[:, :n].reshape(shape)


# ------------------------------------------------------- per-image parameters
#: float32 columns before the NFD control weights in a row of drawn parameters
PARAM_HEAD = 4
#: most band ids a suppression draw picks among (``kMaxPsBands``)
MAX_PS_BANDS = 8
_STREAM_PS, _STREAM_NFD = 1, 2
_U24 = 5.9604644775390625e-08  # 2 ** -24


@dataclass(frozen=True)
class DrawSettings:
    """The sampling rules of the modules, as the in-op draws take them
    (csrc/param_draw.h describes the draw):

    ps_p: probability of power suppression; ps_bands: the band ids drawn
    from, uniformly; alpha: ``(lo, hi)`` of ``alpha ~ U(lo, hi)``; nfd_p:
    probability of NFD; n_bands: NFD bands (columns of alpha_r, 0 for none);
    same_on_batch: one draw (image 0's) for every image."""
    ps_p: float = 1 / 3
    ps_bands: tuple = (0, 1, 2)
    alpha: tuple = (0.0, 1.0)
    nfd_p: float = 1.0
    n_bands: int = 5
    same_on_batch: bool = False

    def thresholds(self) -> tuple[int, int]:
        """``round(p * 2^24)`` of PS and NFD: applied when ``u24 < thr``."""
        return int(self.ps_p * 16777216.0 + 0.5), int(self.nfd_p * 16777216.0 + 0.5)

    def alpha_lo_span(self) -> tuple[float, float]:
        """``lo`` and ``hi - lo`` rounded to float32 as the kernels hold them."""
        lo, hi = (float(np.float32(v)) for v in self.alpha)
        return lo, float(np.float32(hi) - np.float32(lo))

    def op_args(self) -> tuple:
        """The trailing arguments of ``torch.ops.fastfreq.draw_params``."""
        return (float(self.ps_p), [int(b) for b in self.ps_bands], float(self.alpha[0]),
                float(self.alpha[1]), float(self.nfd_p), int(self.n_bands),
                bool(self.same_on_batch))


def draw_params(seed: torch.Tensor, batch: int, settings: DrawSettings, device=None) -> torch.Tensor:
    """The ``(batch, PARAM_HEAD + n_bands)`` float32 rows
    ``[ps_applied, band, alpha, nfd_applied, alpha_r...]`` that
    ``torch.ops.fastfreq.draw_params`` computes for ``seed``, with tensor ops
    (on seed's device, no host sync): the same bits."""
    device = seed.device if device is None else torch.device(device)
    seed = seed.to(device)
    s = settings
    idx = torch.arange(batch, device=device, dtype=torch.int64)
    if s.same_on_batch:
        idx = torch.zeros_like(idx)
    ps_thr, nfd_thr = s.thresholds()
    lo, span = s.alpha_lo_span()
    # both streams in one Philox pass: counters (i, PS) then (i, NFD)
    streams = torch.cat([torch.full_like(idx, _STREAM_PS), torch.full_like(idx, _STREAM_NFD)])
    words = philox4x32_10(torch.cat([idx, idx]), seed, streams)
    a = [w[:batch] for w in words]
    b = [w[batch:] for w in words]
    ps_on = (a[0] >> 8) < ps_thr
    pick = ((a[1] >> 8) * len(s.ps_bands)) >> 24  # in [0, len): no index leaves the table
    # the pick mapped to band ids with scalars (no host-to-device copy)
    band = torch.full(pick.shape, float(s.ps_bands[0]), device=device)
    for j, bid in enumerate(s.ps_bands[1:], 1):
        band = torch.where(pick == j, float(bid), band)
    u_ps = (a[2] >> 8).to(torch.float32) * _U24
    alpha = torch.where(ps_on, lo + span * u_ps, 0.0)
    nfd_on = (b[0] >> 8) < nfd_thr
    cols = [ps_on.to(torch.float32), band, alpha, nfd_on.to(torch.float32)]
    if s.n_bands:
        j = ((b[1] >> 8) * s.n_bands) >> 24
        u = (b[2] >> 8).to(torch.float32) * _U24
        k = torch.arange(s.n_bands, device=device, dtype=torch.int64)
        bits = ((b[3][:, None] >> k) & 1).to(torch.float32)
        cols.append(torch.where(k == j[:, None], u[:, None], bits))
    return torch.cat([c.reshape(batch, -1) for c in cols], dim=1)


def identity_rows(rows: torch.Tensor, has_ps: bool, has_nfd: bool) -> torch.Tensor:
    """Boolean ``(B,)``: the images that their draw_params row leaves
    unchanged, as the C++/CUDA ops decide it (``row_is_identity`` in
    csrc/param_draw.h): no NFD drawn (or none in the call), and gain 1
    (suppression not drawn or ``alpha == 0``, with a band in [0, 2])."""
    keep = torch.ones(rows.shape[0], dtype=torch.bool, device=rows.device)
    if has_nfd:
        keep = keep & (rows[:, 3] == 0)
    if has_ps:
        keep = keep & (rows[:, 1] >= 0) & (rows[:, 1] <= 2) & (rows[:, 2] == 0)
    return keep
