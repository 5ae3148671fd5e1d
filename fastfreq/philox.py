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

import torch

from .constants import PHILOX_LANES

_M32 = 0xFFFFFFFF


def _umul32(a: int, b: torch.Tensor):
    """(hi, lo) of the 64-bit product a * b for uint32 values held in int64."""
    b_lo, b_hi = b & 0xFFFF, b >> 16
    a_lo, a_hi = a & 0xFFFF, a >> 16
    ll = b_lo * a_lo
    lh = b_lo * a_hi
    hl = b_hi * a_lo
    hh = b_hi * a_hi
    mid = (ll >> 16) + (lh & 0xFFFF) + (hl & 0xFFFF)
    lo = (ll & 0xFFFF) | ((mid & 0xFFFF) << 16)
    hi = hh + (lh >> 16) + (hl >> 16) + (mid >> 16)
    return hi & _M32, lo & _M32


def philox4x32_10(counter: torch.Tensor, seed: torch.Tensor):
    """Four uint32 outputs (as int64 tensors) for counters ``(counter, 0, 0, 0)``
    and key ``seed`` (int64 tensor with one element)."""
    seed = seed.reshape(()).to(torch.int64)
    k0 = seed & _M32
    k1 = (seed >> 32) & _M32
    x = counter & _M32
    y = (counter >> 32) & _M32
    z = torch.zeros_like(x)
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
