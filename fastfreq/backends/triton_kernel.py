"""Fully fused Triton backend: the whole spectral augmentation in one launch.

One program per (image, channel) plane: load the plane, DFT it as matrix
products with precomputed twiddle matrices (``tl.dot``; tiles padded to powers
of two >= 16, masked), build the gain and the NFD control from band id,
alpha, alpha_r and the band edges on the fly from the radius, add
``R * Dir(Y)`` with Philox noise generated in the kernel (or read from an
explicit tensor), inverse-DFT the same way and write the real plane. The image
is read once and written once.

Without a GPU the same kernel source runs under Triton's interpreter
(``TRITON_INTERPRET=1``) on CPU tensors; that is how CI tests it.
"""
from __future__ import annotations

import functools
import math
import os

import torch

try:
    import triton
    import triton.language as tl

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # the package works without Triton
    triton = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

#: Largest image side the kernel takes (tiles are padded to powers of two).
MAX_SIDE = 64
PRECISIONS = ("ieee", "tf32x3", "tf32")
#: Default matrix-product precision: TF32 with error compensation; see
#: docs/kernels.md for the error measurements behind the choice.
DEFAULT_PRECISION = "tf32x3"


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    return triton is not None


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel takes images like ``x`` (Triton importable, side <= 64,
    on a CUDA device or under the interpreter on CPU)."""
    if triton is None or max(x.shape[-2:]) > MAX_SIDE:
        return False
    return x.device.type == "cuda" or (interpreted() and x.device.type == "cpu")


def _pad(n: int) -> int:
    return max(16, 1 << (n - 1).bit_length())


@functools.lru_cache(maxsize=64)
def _twiddles_cpu(H: int, W: int, dtype: torch.dtype):
    """Twiddle matrices, built in float64 and rounded once (no float32 sin/cos of
    large arguments), zero-padded to the kernel's tiles."""
    HP, WP, Wh = _pad(H), _pad(W), W // 2 + 1
    WhP = _pad(Wh)
    y = torch.arange(H, dtype=torch.float64)
    w = torch.arange(W, dtype=torch.float64)
    k = torch.arange(Wh, dtype=torch.float64)
    ang_h = 2 * math.pi * torch.outer(y, y) / H
    ang_w = 2 * math.pi * torch.outer(w, k) / W           # (W, Wh)
    ch = torch.zeros(HP, HP, dtype=torch.float64)
    sh = torch.zeros(HP, HP, dtype=torch.float64)
    ch[:H, :H], sh[:H, :H] = torch.cos(ang_h), torch.sin(ang_h)
    cw = torch.zeros(WP, WhP, dtype=torch.float64)
    sw = torch.zeros(WP, WhP, dtype=torch.float64)
    cw[:W, :Wh], sw[:W, :Wh] = torch.cos(ang_w), torch.sin(ang_w)
    # inverse real transform along W: weight 1 for the self-conjugate columns
    # (k = 0 and k = W/2), 2 for the others; 1/(H W) folded in
    weight = torch.full((Wh,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if W % 2 == 0:
        weight[W // 2] = 1.0
    icw = torch.zeros(WhP, WP, dtype=torch.float64)
    isw = torch.zeros(WhP, WP, dtype=torch.float64)
    icw[:Wh, :W] = (weight[:, None] * torch.cos(ang_w.T)) / (H * W)
    isw[:Wh, :W] = (weight[:, None] * torch.sin(ang_w.T)) / (H * W)
    return tuple(t.to(dtype).contiguous() for t in (ch, sh, cw, sw, icw, isw))


_TWIDDLE_CACHE: dict = {}


def twiddles(H: int, W: int, device: torch.device, dtype: torch.dtype):
    key = (H, W, str(device), dtype)
    if key not in _TWIDDLE_CACHE:
        _TWIDDLE_CACHE[key] = tuple(t.to(device) for t in _twiddles_cpu(H, W, dtype))
    return _TWIDDLE_CACHE[key]


if triton is not None:

    @triton.jit
    def _curve_step(s):
        return tl.where(s <= 0.0, 1.0, tl.where(s <= 3.0, 1.0 - s / 3.0, 0.0))

    @triton.jit
    def _curve_hill(s):
        return tl.where(s <= 0.0, 0.0,
                        tl.where(s <= 3.0, s / 3.0,
                                 tl.where(s <= 8.0, 1.0,
                                          tl.where(s <= 11.0, 1.0 - (s - 8.0) / 3.0, 0.0))))

    @triton.jit
    def _spectral_augment_kernel(
        x_ptr, out_ptr, band_ptr, alpha_ptr, ar_ptr, noise_ptr, seed_ptr, edges_ptr,
        ch_ptr, sh_ptr, cw_ptr, sw_ptr, icw_ptr, isw_ptr,
        C, H, W, Wh, sigma, inv_radius_scale,
        HP: tl.constexpr, WP: tl.constexpr, WHP: tl.constexpr, N_BANDS: tl.constexpr,
        HAS_PS: tl.constexpr, HAS_NFD: tl.constexpr, NOISE_IN_KERNEL: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        plane = tl.program_id(0).to(tl.int64)
        b = plane // C
        rows = tl.arange(0, HP)
        cols_w = tl.arange(0, WP)
        cols_k = tl.arange(0, WHP)
        in_img = (rows[:, None] < H) & (cols_w[None, :] < W)
        x = tl.load(x_ptr + plane * H * W + rows[:, None] * W + cols_w[None, :], mask=in_img, other=0.0)
        x = x.to(ch_ptr.dtype.element_ty)
        eps = tl.sum(tl.sum(tl.abs(x), axis=1), axis=0) * 1e-6

        hh = rows[:, None] * HP + rows[None, :]
        ch = tl.load(ch_ptr + hh)
        sh = tl.load(sh_ptr + hh)
        wk = cols_w[:, None] * WHP + cols_k[None, :]
        cw = tl.load(cw_ptr + wk)
        sw = tl.load(sw_ptr + wk)

        # forward DFT: rows to the half spectrum, then the columns (complex)
        xr = tl.dot(x, cw, input_precision=PRECISION)
        xi = -tl.dot(x, sw, input_precision=PRECISION)
        yr = tl.dot(ch, xr, input_precision=PRECISION) + tl.dot(sh, xi, input_precision=PRECISION)
        yi = tl.dot(ch, xi, input_precision=PRECISION) - tl.dot(sh, xr, input_precision=PRECISION)

        # per-frequency math on the (HP, WHP) half-spectrum tile
        r = rows[:, None]
        k = cols_k[None, :]
        ky = tl.where(2 * r < H, r, r - H).to(tl.float32)
        s = tl.sqrt(ky * ky + (k * k).to(tl.float32))
        valid = (r < H) & (k < Wh)
        if HAS_PS:
            band = tl.load(band_ptr + b)
            alpha = tl.load(alpha_ptr + b).to(tl.float32)
            sp = s * inv_radius_scale
            keep_dc = _curve_step(sp - 1.0)
            mask = tl.where(band == 0, keep_dc + _curve_hill(sp - 1.0),
                            tl.where(band == 1, keep_dc + _curve_hill(sp - 7.0),
                                     keep_dc + 1.0 - _curve_step(sp - 13.0)))
            gain = 1.0 - alpha * (1.0 - mask)
            yr = yr * gain
            yi = yi * gain
        if HAS_NFD:
            M = tl.zeros((HP, WHP), dtype=tl.float32)
            for i in tl.static_range(N_BANDS):
                a = tl.load(edges_ptr + 2 * i)
                e = tl.load(edges_ptr + 2 * i + 1)
                w_i = tl.load(ar_ptr + b * N_BANDS + i).to(tl.float32)
                hill = tl.where((s >= a - 1.0) & (s < a), s - a + 1.0,
                                tl.where((s >= a) & (s < e), 1.0,
                                         tl.where((s >= e) & (s < e + 1.0), e - s + 1.0, 0.0)))
                M += w_i * hill
            std = tl.sqrt(tl.maximum(sigma * (1.0 - M), 0.0))
            # Hermitian rule: self-conjugate columns, rows r > H/2 use row H - r
            self_conj = (k == 0) | (2 * k == W)
            rc = tl.where(self_conj & (2 * r > H), H - r, r)
            idx = plane * H * Wh + rc * Wh + k
            if NOISE_IN_KERNEL:
                seed = tl.load(seed_ptr)
                n0, n1, n2, n3 = tl.randn4x(seed, idx >> 2)
                lane = idx & 3
                g = tl.where(lane == 0, n0, tl.where(lane == 1, n1, tl.where(lane == 2, n2, n3)))
            else:
                g = tl.load(noise_ptr + idx, mask=valid, other=0.0).to(tl.float32)
            n = std * g
            mag = tl.sqrt(yr * yr + yi * yi)
            defined = mag > eps
            inv = 1.0 / tl.where(defined, mag, 1.0)
            yr = yr + n * tl.where(defined, yr * inv, 1.0)
            yi = yi + n * tl.where(defined, yi * inv, 0.0)
        zr = tl.where(valid, yr, 0.0).to(ch.dtype)
        zi = tl.where(valid, yi, 0.0).to(ch.dtype)

        # inverse DFT: columns (complex), then rows back to real values
        ur = tl.dot(ch, zr, input_precision=PRECISION) - tl.dot(sh, zi, input_precision=PRECISION)
        ui = tl.dot(ch, zi, input_precision=PRECISION) + tl.dot(sh, zr, input_precision=PRECISION)
        kw = cols_k[:, None] * WP + cols_w[None, :]
        icw = tl.load(icw_ptr + kw)
        isw = tl.load(isw_ptr + kw)
        out = tl.dot(ur.to(ch.dtype), icw, input_precision=PRECISION) - \
            tl.dot(ui.to(ch.dtype), isw, input_precision=PRECISION)
        tl.store(out_ptr + plane * H * W + rows[:, None] * W + cols_w[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=in_img)


if triton is not None:
    # Warps tuned per image size and variant (Triton adds the dtypes of the
    # tensor arguments to every key). No num_stages: the kernel has no loop to
    # pipeline. FASTFREQ_TRITON_AUTOTUNE=0 launches 4 warps without tuning
    # (tests, where each tuning compiles every config). The interpreter runs
    # the plain kernel.
    _autotuned_kernel = triton.autotune(
        configs=[triton.Config({}, num_warps=w, num_stages=1) for w in (4, 8)],
        key=["C", "H", "W", "HAS_PS", "HAS_NFD", "NOISE_IN_KERNEL", "PRECISION"],
    )(_spectral_augment_kernel)


def _autotune_enabled() -> bool:
    return os.environ.get("FASTFREQ_TRITON_AUTOTUNE", "1") != "0"


def _launch(x: torch.Tensor, band: torch.Tensor | None, alpha: torch.Tensor | None,
            alpha_r: torch.Tensor | None, noise: torch.Tensor | None, seed: torch.Tensor | None,
            edges: torch.Tensor, ch: torch.Tensor, sh: torch.Tensor, cw: torch.Tensor,
            sw: torch.Tensor, icw: torch.Tensor, isw: torch.Tensor, sigma: float,
            radius_scale: float, precision: str) -> torch.Tensor:
    B, C, H, W = x.shape
    xc = x.contiguous()
    out = torch.empty_like(xc)
    if xc.numel() == 0:
        return out
    dummy = torch.empty(1, device=x.device, dtype=ch.dtype)
    if interpreted() or not _autotune_enabled():
        kernel, launch_opts = _spectral_augment_kernel, {"num_warps": 4}
        if not interpreted() and hasattr(torch.library, "wrap_triton"):
            kernel = torch.library.wrap_triton(kernel)
    else:
        kernel, launch_opts = _autotuned_kernel, {}
        if hasattr(torch.library, "wrap_triton"):
            kernel = torch.library.wrap_triton(kernel)
    kernel[(B * C,)](
        xc, out,
        band.contiguous() if band is not None else torch.zeros(1, dtype=torch.int64, device=x.device),
        alpha.contiguous() if alpha is not None else dummy,
        alpha_r.contiguous() if alpha_r is not None else dummy,
        noise.contiguous() if noise is not None else dummy,
        seed.contiguous() if seed is not None else torch.zeros(1, dtype=torch.int64, device=x.device),
        edges, ch, sh, cw, sw, icw, isw,
        C, H, W, W // 2 + 1, float(sigma), 1.0 / float(radius_scale),
        HP=_pad(H), WP=_pad(W), WHP=_pad(W // 2 + 1), N_BANDS=edges.numel() // 2,
        HAS_PS=band is not None, HAS_NFD=alpha_r is not None,
        NOISE_IN_KERNEL=alpha_r is not None and noise is None, PRECISION=precision,
        **launch_opts,
    )
    return out


_op = _launch
if triton is not None and hasattr(torch.library, "triton_op"):
    # visible to torch.compile as one op whose body launches the kernel
    _op = torch.library.triton_op("fastfreq::spectral_augment_triton", _launch, mutates_args=())


_EDGES_CACHE: dict = {}


def _edges(nfd_bands, device) -> torch.Tensor:
    key = (tuple(nfd_bands), str(device))
    if key not in _EDGES_CACHE:
        _EDGES_CACHE[key] = torch.tensor([v for pair in nfd_bands for v in pair],
                                         dtype=torch.float32, device=device)
    return _EDGES_CACHE[key]


def spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands, generator,
                     seed=None, precision=None):
    """The Triton backend (arguments validated by fastfreq.functional)."""
    if triton is None:
        raise RuntimeError(f"backend='triton': Triton is not importable ({IMPORT_ERROR}); "
                           "`pip install triton`")
    precision = DEFAULT_PRECISION if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if interpreted() or x.dtype == torch.float64:
        precision = "ieee"  # the interpreter computes in IEEE; float64 has no TF32 path
    if max(x.shape[-2:]) > MAX_SIDE:
        raise ValueError(f"backend='triton': images up to {MAX_SIDE}x{MAX_SIDE}, got "
                         f"{x.shape[-2]}x{x.shape[-1]}; use backend='cuda' or 'auto'")
    if alpha_r is not None and noise is None and seed is None:
        from .ext import draw_seed

        seed = draw_seed(x.device, generator)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    H, W = x.shape[-2:]

    def cast(t):
        return None if t is None else t.to(compute)

    return _op(x, band, cast(alpha), cast(alpha_r), cast(noise), seed, _edges(nfd_bands, x.device),
               *twiddles(H, W, x.device, compute), float(sigma), float(radius_scale), precision)
