"""Fully fused Triton backend: the whole spectral augmentation in one launch.

One program per (image, channel) plane: load the plane (any strides), DFT it
as matrix products with cached twiddle matrices (``tl.dot``; tiles padded to
powers of two >= 16, masked), scale by the suppression gain and add
``R * Dir(Y)``, inverse-DFT the same way and write the real plane. The image is
read once and written once. The per-frequency curves (the three suppression
masks and the NFD hills) depend only on the radius, so they are tabulated once
per image size on the device; each program mixes them with its image's
``alpha`` / ``alpha_r``. The in-kernel noise draws four normals per Philox call
(one row-aligned group of four bins, see ``fastfreq.philox``) and keeps all
four.

Out-of-range parameters (possible with ``check_values=False``) never reach an
address: the image's output is NaN, as on every backend.

Without a GPU the same kernel source runs under Triton's interpreter
(``TRITON_INTERPRET=1``) on CPU tensors; that is how CI tests it.
"""
from __future__ import annotations

import math
import os
import re

import torch

from .. import masks
from ..constants import DIR_EPS_REL, MAX_NFD_BANDS
from ..philox import groups_per_row
from . import _autograd
from ._contract import bands_to_edges, edges_to_bands, kernel_seed

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
#: Default matrix-product precision: TF32 with round-to-nearest operands. Its
#: error budget (docs/kernels.md): at most half an 8-bit quantisation step
#: (0.5/255 of the output's value range); "tf32x3" and "ieee" are for
#: equivalence checks against the reference.
DEFAULT_PRECISION = "tf32"
#: Warps per program: 4 up to 40x40 tiles (no spills and the fewest
#: instructions issued per plane, see ``python -m bench aot``), 8 from a
#: 64-wide half-spectrum tile on, and 8 for "ieee" from 64-row tiles on (on an
#: H200 with Triton 3.6 the 4-warp "ieee" kernel at 40x40, which spills about
#: 100 KB per thread, returned results off by 3e-3 of the range; 8 warps gave
#: 5e-7).
DEFAULT_WARPS = 4


def default_warps(H: int, W: int, precision: str = DEFAULT_PRECISION) -> int:
    HP, _, WHP = tiles(H, W)
    if WHP >= 64 or (precision == "ieee" and HP >= 64):
        return 2 * DEFAULT_WARPS
    return DEFAULT_WARPS


#: Oldest Triton the kernel runs with: before 3.4, int64 offsets to
#: ``tl.randn4x`` select another generator than the Philox stream of
#: ``fastfreq.philox`` (and the C++/CUDA kernels), so seed replay across
#: backends and the NFD backward (which recomputes the noise) would be
#: silently wrong. pyproject.toml pins the same bound.
MIN_TRITON = (3, 4)


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def version_problem() -> str | None:
    """Why the installed Triton cannot run the kernel; None when it can. Read
    at each call (cheap), so that a test can stand in an older version."""
    if triton is None:
        return f"Triton is not importable ({IMPORT_ERROR}); `pip install 'triton>=3.4'`"
    m = re.match(r"(\d+)\.(\d+)", str(getattr(triton, "__version__", "")))
    if m is None or (int(m.group(1)), int(m.group(2))) < MIN_TRITON:
        return (f"Triton {getattr(triton, '__version__', '(no version)')} is older than "
                f"{MIN_TRITON[0]}.{MIN_TRITON[1]}, whose tl.randn4x draws another noise stream "
                "than the other backends for the same seed; `pip install 'triton>=3.4'`")
    return None


def available() -> bool:
    return version_problem() is None


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel takes images like ``x`` (Triton >= 3.4 importable, side
    <= 64, float16/bfloat16/float32, on a CUDA device or under the interpreter
    on CPU)."""
    if not available() or max(x.shape[-2:]) > MAX_SIDE or x.dtype == torch.float64:
        return False
    return x.device.type == "cuda" or (interpreted() and x.device.type == "cpu")


def require(x: torch.Tensor) -> None:
    """Raise, saying why, unless the kernel takes images like ``x`` (what
    ``supports`` answers with a bool)."""
    problem = version_problem()
    if problem is not None:
        raise RuntimeError(f"backend='triton': {problem}")
    if max(x.shape[-2:]) > MAX_SIDE:
        raise ValueError(f"backend='triton': images up to {MAX_SIDE}x{MAX_SIDE}, got "
                         f"{x.shape[-2]}x{x.shape[-1]}; use backend='cuda' or 'auto'")
    if x.dtype == torch.float64:
        raise TypeError("backend='triton': float64 images are not supported (the kernel "
                        "computes in float32); use backend='cuda', 'torch' or 'auto'")
    if not supports(x):
        raise ValueError(f"backend='triton' runs on CUDA tensors (or on CPU tensors under "
                         f"TRITON_INTERPRET=1), x is on {x.device}")


def preferred_on_gpu(x: torch.Tensor) -> bool:
    """Whether ``backend="auto"`` picks this kernel over the CUDA extension for
    images like ``x``. Decided by measurement (bench/results/NVIDIA-H200-gpu-check.md,
    H200, float32 and bfloat16, batches 1024 and 8192, 32/40/64 px): the CUDA
    path was faster or equal everywhere (1024x3x40x40 float32 PS+NFD: 4.08M
    against 2.57M images/s; 8192: 7.67M against 6.43M; a tie only at 32x32
    batch 8192), so auto uses it wherever the extension has its CUDA part."""
    return False


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _pad(n: int) -> int:
    """A tile side: the next power of two, at least 16 (tl.dot's minimum)."""
    return max(16, _pow2(n))


def noise_groups(H: int, W: int) -> int:
    """Philox groups the kernel draws per plane: H rows of ceil((W/2+1)/4)
    groups, padded to a power of two."""
    return _pow2(H * groups_per_row(W // 2 + 1))


def tiles(H: int, W: int) -> tuple[int, int, int]:
    """Padded tile sides (HP, WP, WHP) for an H x W image."""
    return _pad(H), _pad(W), _pad(W // 2 + 1)


def _round_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 -> nearest TF32 value (ties away from zero, as ``cvt.rna.tf32``)."""
    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def _padded(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``t`` zero-padded at the end of its last two dimensions to rows x cols."""
    return torch.nn.functional.pad(t, (0, cols - t.shape[-1], 0, rows - t.shape[-2]))


def _build_twiddles(H: int, W: int, device, round_tf32: bool):
    """Twiddle matrices built in float64 on the device (no host copy, no sync)
    and rounded once, zero-padded to the kernel's tiles."""
    HP, WP, WhP = tiles(H, W)
    Wh = W // 2 + 1
    f64 = dict(dtype=torch.float64, device=device)
    y, w, k = torch.arange(H, **f64), torch.arange(W, **f64), torch.arange(Wh, **f64)
    ang_h = 2 * math.pi * torch.outer(y, y).remainder(H) / H
    ang_w = 2 * math.pi * torch.outer(w, k).remainder(W) / W   # (W, Wh)
    ch, sh = _padded(torch.cos(ang_h), HP, HP), _padded(torch.sin(ang_h), HP, HP)
    cw, sw = _padded(torch.cos(ang_w), WP, WhP), _padded(torch.sin(ang_w), WP, WhP)
    # inverse real transform along W: weight 1 for the self-conjugate columns
    # (k = 0 and k = W/2), 2 for the others; 1/(H W) folded in
    # (built with where, not item assignment: a Python scalar written into a
    # CUDA tensor is a host sync)
    weight = torch.where((k == 0) | (2 * k == W), 1.0, 2.0).to(torch.float64)
    icw = _padded(weight[:, None] * torch.cos(ang_w.T) / (H * W), WhP, WP)
    isw = _padded(weight[:, None] * torch.sin(ang_w.T) / (H * W), WhP, WP)
    out = [t.to(torch.float32).contiguous() for t in (ch, sh, cw, sw, icw, isw)]
    return tuple(_round_tf32(t) if round_tf32 else t for t in out)


def _build_curves(H: int, W: int, radius_scale: float, nfd_bands, device):
    """(3, HP, WHP) suppression masks and (n, HP, WHP) NFD hills of the half
    spectrum, zero in the padding (built on the device from fastfreq.masks)."""
    HP, _, WhP = tiles(H, W)
    m = masks.band_masks(H, W, radius_scale=radius_scale, half=True, device=device,
                         dtype=torch.float64)
    h = masks.nfd_band_masks(H, W, nfd_bands=nfd_bands, half=True, device=device,
                             dtype=torch.float64)
    return tuple(_padded(t, HP, WhP).to(torch.float32).contiguous() for t in (m, h))


_CACHE: dict = {}
_CACHE_MAX = 64


def _cached(key, build):
    """Per-device constants. Built on the device (no host copy); never cached
    while tracing with fake tensors."""
    if key in _CACHE:
        return _CACHE[key]
    value = build()
    if not any(_is_fake(t) for t in value):
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = value
    return value


def _is_fake(t) -> bool:
    try:
        from torch._subclasses.fake_tensor import is_fake
    except ImportError:  # pragma: no cover
        return False
    return is_fake(t)


if triton is not None:

    @triton.jit
    def _to_tf32(v, ROUND: tl.constexpr):
        """Round float32 operands to the nearest TF32 value (the tensor cores
        truncate the 13 low mantissa bits otherwise)."""
        if ROUND:
            return tl.inline_asm_elementwise("cvt.rna.tf32.f32 $0, $1;", "=r,r", [v],
                                             dtype=tl.float32, is_pure=True, pack=1)
        else:
            return v

    @triton.jit
    def _canonical_row(r, k, H, W):
        """The Hermitian rule: in the self-conjugate columns (k = 0, and W/2
        for even W) a row r > H/2 uses the draw of row H - r."""
        return tl.where(((k == 0) | (2 * k == W)) & (2 * r > H), H - r, r)

    @triton.jit
    def _gain_from_mask(alpha, m):
        """Eq. 5's gain 1 - alpha (1 - M), as (1 - alpha) + alpha M."""
        return (1.0 - alpha) + alpha * m

    @triton.jit
    def _std_from_control(sigma, M):
        """Eq. 11's standard deviation sqrt(sigma (1 - M)), 1 - M clipped at 0."""
        return tl.sqrt(tl.maximum(sigma - sigma * M, 0.0))

    @triton.jit
    def _add_along_dir(yr, yi, n, eps):
        """Z = Y + n Dir(Y), Dir(Y) = Y / |Y| where |Y| > eps, else 1 (one rsqrt)."""
        m2 = yr * yr + yi * yi
        defined = m2 > eps * eps
        inv = tl.math.rsqrt(tl.where(defined, m2, 1.0))
        return yr + n * tl.where(defined, yr * inv, 1.0), yi + n * tl.where(defined, yi * inv, 0.0)

    @triton.jit
    def _noise_tile(seed, plane, H, W, G, HP: tl.constexpr, WHP: tl.constexpr,
                    NG: tl.constexpr):
        """Standard normal draws of one plane's (HP, WHP) half-spectrum tile.

        Bin (r, k) is lane k % 4 of Philox group (plane * H + r) * G + k // 4
        (G = ceil((W/2+1) / 4) groups per row; fastfreq.philox). The plane's
        H * G groups are drawn as one vector of NG >= H * G groups (four
        normals per tl.randn4x call, all kept), then gathered into the tile;
        the gather index also applies the Hermitian rule (rows r > H/2 of the
        columns k = 0 and k = W/2 take row H - r)."""
        n0, n1, n2, n3 = tl.randn4x(seed, plane * H * G + tl.arange(0, NG))
        # join(join(a, b), join(c, d)) lays out [a, c, b, d] along the new dims
        flat = tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), (4 * NG,))
        r = tl.arange(0, HP)[:, None]
        k = tl.arange(0, WHP)[None, :]
        rc = _canonical_row(r, k, H, W)
        idx = tl.where((r < H) & (k < 4 * G), rc * (4 * G) + k, 0)
        g = tl.gather(flat, tl.reshape(idx, (HP * WHP,)), 0)
        return tl.reshape(g, (HP, WHP))

    @triton.jit
    def _spectral_augment_kernel(
        x_ptr, out_ptr, band_ptr, alpha_ptr, ar_ptr, noise_ptr, seed_ptr, masks_ptr, hills_ptr,
        ch_ptr, sh_ptr, cw_ptr, sw_ptr, icw_ptr, isw_ptr, rows_ptr,
        sxb, sxc, sxh, sxw, sob, soc, soh, sow,
        C, H, W, Wh, G, sigma, row_len,
        HP: tl.constexpr, WP: tl.constexpr, WHP: tl.constexpr, N_BANDS: tl.constexpr,
        HAS_PS: tl.constexpr, HAS_NFD: tl.constexpr, NOISE_IN_KERNEL: tl.constexpr,
        PRECISION: tl.constexpr, ROUND_TF32: tl.constexpr, EPS_REL: tl.constexpr,
        NG: tl.constexpr, FROM_ROWS: tl.constexpr = False,
    ):
        """FROM_ROWS: the parameters are read from the plane's draw_params row
        (rows_ptr, row_len floats each; csrc/param_draw.h) instead of
        band/alpha/alpha_r: no noise where the row has no NFD drawn, and an
        image that the row leaves unchanged is copied from its input with no
        transform work (its program loads and stores the plane, then returns)."""
        plane = tl.program_id(0).to(tl.int64)
        b = plane // C
        c = plane % C
        rows = tl.arange(0, HP)
        cols_w = tl.arange(0, WP)
        cols_k = tl.arange(0, WHP)
        in_img = (rows[:, None] < H) & (cols_w[None, :] < W)
        if FROM_ROWS:
            # an image that its row leaves unchanged (row_is_identity in
            # csrc/param_draw.h: no NFD drawn, gain 1 with a valid band) is
            # copied, bit for bit, before any transform work
            row = rows_ptr + b * row_len
            ident = plane >= 0
            if HAS_NFD:
                nfd_f = tl.load(row + 3)
                ident = ident & (nfd_f == 0.0)
            if HAS_PS:
                band_f = tl.load(row + 1)
                alpha_f = tl.load(row + 2)
                ident = ident & (band_f >= 0.0) & (band_f <= 2.0) & (alpha_f == 0.0)
            if ident:
                x_id = tl.load(x_ptr + b * sxb + c * sxc + rows[:, None] * sxh + cols_w[None, :] * sxw,
                               mask=in_img, other=0.0)
                tl.store(out_ptr + b * sob + c * soc + rows[:, None] * soh + cols_w[None, :] * sow,
                         x_id.to(out_ptr.dtype.element_ty), mask=in_img)
                return
        x = tl.load(x_ptr + b * sxb + c * sxc + rows[:, None] * sxh + cols_w[None, :] * sxw,
                    mask=in_img, other=0.0).to(tl.float32)
        eps = tl.sum(tl.sum(tl.abs(x), axis=1), axis=0) * EPS_REL

        # forward DFT: rows to the half spectrum, then the columns (complex)
        wk = cols_w[:, None] * WHP + cols_k[None, :]
        xa = _to_tf32(x, ROUND_TF32)
        xr = _to_tf32(tl.dot(xa, tl.load(cw_ptr + wk), input_precision=PRECISION), ROUND_TF32)
        xi = _to_tf32(-tl.dot(xa, tl.load(sw_ptr + wk), input_precision=PRECISION), ROUND_TF32)
        hh = rows[:, None] * HP + rows[None, :]
        ch = tl.load(ch_ptr + hh)
        sh = tl.load(sh_ptr + hh)
        yr = tl.dot(ch, xr, input_precision=PRECISION)
        yr = tl.dot(sh, xi, yr, input_precision=PRECISION)
        yi = tl.dot(ch, xi, input_precision=PRECISION)
        yi = yi - tl.dot(sh, xr, input_precision=PRECISION)

        # per-frequency math on the (HP, WHP) half-spectrum tile
        r = rows[:, None]
        k = cols_k[None, :]
        valid = (r < H) & (k < Wh)
        tab = r * WHP + k
        bad = plane < 0  # a False scalar of the kernel's type
        nfd_on = plane >= 0  # NFD on this image (True unless its row says not)
        alpha = 0.0
        if FROM_ROWS:
            ar_base = row + 4  # PARAM_HEAD
            if HAS_NFD:
                nfd_on = nfd_f != 0.0
            else:
                nfd_on = bad
        else:
            ar_base = ar_ptr + b * N_BANDS
        if HAS_PS:
            if FROM_ROWS:
                # a row's band is a float: outside [0, 2] (NaN included) it reads as -1
                band = tl.where((band_f >= 0.0) & (band_f <= 2.0), band_f, -1.0).to(tl.int32)
                alpha = alpha_f
            else:
                band = tl.load(band_ptr + b)
                alpha = tl.load(alpha_ptr + b).to(tl.float32)
            bad = bad | (band < 0) | (band > 2) | ~((alpha >= 0.0) & (alpha <= 1.0))
            m = tl.load(masks_ptr + tl.where(bad, 0, band) * (HP * WHP) + tab)
            gain = _gain_from_mask(alpha, m)
            yr = yr * gain
            yi = yi * gain
        if HAS_NFD:
            M = tl.zeros((HP, WHP), dtype=tl.float32)
            for i in tl.static_range(N_BANDS):
                w_i = tl.load(ar_base + i).to(tl.float32)
                bad = bad | (nfd_on & ~((w_i >= 0.0) & (w_i <= 1.0)))
                M += w_i * tl.load(hills_ptr + i * (HP * WHP) + tab)
            std = tl.where(valid, _std_from_control(sigma, M), 0.0)
            if FROM_ROWS:
                std = tl.where(nfd_on, std, 0.0)
            if NOISE_IN_KERNEL:
                g = _noise_tile(tl.load(seed_ptr), plane, H, W, G, HP, WHP, NG)
            else:
                rc = _canonical_row(r, k, H, W)
                g = tl.load(noise_ptr + plane * H * Wh + rc * Wh + k, mask=valid, other=0.0)
                g = g.to(tl.float32)
            yr, yi = _add_along_dir(yr, yi, std * g, eps)
        # the padding of the tile is already zero: the zero-padded twiddles give
        # Y = 0 there and the noise is masked by std = 0
        zr = _to_tf32(yr, ROUND_TF32)
        zi = _to_tf32(yi, ROUND_TF32)

        # inverse DFT: columns (complex), then rows back to real values
        ur = tl.dot(ch, zr, input_precision=PRECISION)
        ur = ur - tl.dot(sh, zi, input_precision=PRECISION)
        ui = tl.dot(ch, zi, input_precision=PRECISION)
        ui = tl.dot(sh, zr, ui, input_precision=PRECISION)
        kw = cols_k[:, None] * WP + cols_w[None, :]
        out = tl.dot(_to_tf32(ur, ROUND_TF32), tl.load(icw_ptr + kw), input_precision=PRECISION)
        out = out - tl.dot(_to_tf32(ui, ROUND_TF32), tl.load(isw_ptr + kw), input_precision=PRECISION)
        out = tl.where(bad, float("nan"), out)
        tl.store(out_ptr + b * sob + c * soc + rows[:, None] * soh + cols_w[None, :] * sow,
                 out.to(out_ptr.dtype.element_ty), mask=in_img)

    # Opt-in (FASTFREQ_TRITON_AUTOTUNE=1): warps tuned per image size and
    # variant (Triton adds the dtypes of the tensor arguments to every key). No
    # num_stages: the kernel has no loop to pipeline. By default the kernel
    # runs at default_warps(), the configuration the GPU measurements used;
    # "ieee" is never tuned (see default_warps).
    _autotuned_kernel = triton.autotune(
        configs=[triton.Config({}, num_warps=w, num_stages=1) for w in (4, 8)],
        key=["C", "H", "W", "HAS_PS", "HAS_NFD", "NOISE_IN_KERNEL", "PRECISION"],
    )(_spectral_augment_kernel)


def _autotune_enabled() -> bool:
    return os.environ.get("FASTFREQ_TRITON_AUTOTUNE", "0") == "1"


def _resolve_precision(precision: str | None) -> str:
    precision = DEFAULT_PRECISION if precision is None else precision
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    return "ieee" if interpreted() else precision  # the interpreter computes in IEEE


def check_op_args(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale):
    """The structural checks of the C++ op (csrc/spectral_checks.h), for callers
    of torch.ops.fastfreq.spectral_augment_triton: no pointer the kernel reads
    can run past its tensor. Values are the caller's (out of range -> NaN)."""
    def fail(msg):
        raise RuntimeError(f"fastfreq: {msg}")

    if x.dim() != 4 or not x.is_floating_point():
        fail(f"x must be a floating (B, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    B, C, H, W = x.shape
    if min(H, W) < 2 or max(H, W) > MAX_SIDE:
        fail(f"H and W must be in [2, {MAX_SIDE}] for the Triton kernel, got {H}x{W}")
    for name, t in (("band", band), ("alpha", alpha), ("alpha_r", alpha_r), ("noise", noise),
                    ("seed", seed)):
        if t is not None and t.device != x.device:
            fail(f"{name} is on {t.device} but x is on {x.device}")
    if (band is None) != (alpha is None):
        fail("band and alpha must be given together")
    if band is not None:
        if band.dtype != torch.int64 or tuple(band.shape) != (B,):
            fail(f"band must be int64 of shape ({B},), got {band.dtype} {tuple(band.shape)}")
        if not alpha.is_floating_point() or tuple(alpha.shape) != (B,):
            fail(f"alpha must be floating of shape ({B},), got {alpha.dtype} {tuple(alpha.shape)}")
    if not (math.isfinite(radius_scale) and radius_scale > 0):
        fail(f"radius_scale must be finite and > 0, got {radius_scale}")
    if alpha_r is not None:
        n = len(nfd_edges) // 2
        if len(nfd_edges) % 2 or n == 0 or n > MAX_NFD_BANDS:
            fail(f"nfd_edges must hold 1 to {MAX_NFD_BANDS} (a, b) pairs, got {len(nfd_edges)} values")
        if not alpha_r.is_floating_point() or tuple(alpha_r.shape) != (B, n):
            fail(f"alpha_r must be floating of shape ({B}, {n}), got {alpha_r.dtype} "
                 f"{tuple(alpha_r.shape)}")
        if not (math.isfinite(sigma) and sigma >= 0):
            fail(f"sigma must be finite and >= 0, got {sigma}")
        if (noise is None) == (seed is None):
            fail("NFD needs exactly one of noise and seed")
        if noise is not None and (not noise.is_floating_point()
                                  or tuple(noise.shape) != (B, C, H, W // 2 + 1)):
            fail(f"noise must be floating of shape ({B}, {C}, {H}, {W // 2 + 1}), got "
                 f"{noise.dtype} {tuple(noise.shape)}")
        if seed is not None and (seed.dtype != torch.int64 or seed.numel() != 1):
            fail(f"seed must be an int64 tensor with one element, got {seed.dtype} {tuple(seed.shape)}")
        for a, b in edges_to_bands(nfd_edges):
            if not (math.isfinite(a) and math.isfinite(b) and a < b):
                fail(f"NFD bands need finite edges a < b, got ({a}, {b})")


def kernel_meta(H: int, W: int, n_bands: int, has_ps: bool, has_nfd: bool,
                noise_in_kernel: bool, precision: str, from_rows: bool = False) -> dict:
    """The kernel's compile-time arguments for one launch (``precision`` as
    resolved: "ieee" under the interpreter); ``bench/aot.py`` compiles the
    same ones without a GPU."""
    HP, WP, WHP = tiles(H, W)
    return dict(HP=HP, WP=WP, WHP=WHP, N_BANDS=n_bands, HAS_PS=has_ps, HAS_NFD=has_nfd,
                NOISE_IN_KERNEL=noise_in_kernel, PRECISION=precision,
                ROUND_TF32=precision == "tf32", EPS_REL=DIR_EPS_REL, NG=noise_groups(H, W),
                FROM_ROWS=from_rows)


def check_rows_args(x, rows, seed, has_nfd, nfd_edges, sigma, radius_scale):
    """The structural checks of the rows op (those of the C++ rows ops,
    csrc/spectral_checks.h check_rows_and_pack)."""
    n = len(nfd_edges) // 2
    if x.dim() != 4:
        check_op_args(x, None, None, None, None, None, nfd_edges, sigma, radius_scale)  # raises
    if len(nfd_edges) % 2:
        raise RuntimeError(f"fastfreq: nfd_edges must hold (a, b) pairs, got {len(nfd_edges)} values")
    if (rows.device != x.device or rows.dtype != torch.float32
            or tuple(rows.shape) != (x.shape[0], 4 + n)):
        raise RuntimeError(f"fastfreq: rows must be float32 of shape ({x.shape[0]}, {4 + n}) "
                           f"(fastfreq::draw_params) on {x.device}, got {rows.dtype} "
                           f"{tuple(rows.shape)} on {rows.device}")
    # the rest as for explicit parameters: alpha_r stands for the weight columns
    check_op_args(x, None, None, rows[:, 4:] if has_nfd else None, None,
                  seed if has_nfd else None, nfd_edges, sigma, radius_scale)


def launch(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale, precision,
           rows=None, has_ps=False):
    """Run the kernel (the body of the registered ops); checks the structure of
    its arguments first. With ``rows`` (draw_params rows; band, alpha,
    alpha_r None; alpha_r's place taken by ``has_nfd = seed is not None``) the
    kernel reads each image's parameters from its row."""
    from_rows = rows is not None
    if from_rows:
        check_rows_args(x, rows, seed, seed is not None, nfd_edges, sigma, radius_scale)
    else:
        check_op_args(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale)
    B, C, H, W = x.shape
    out = torch.empty_like(x)
    if x.numel() == 0:
        return out
    dev = x.device
    bands = edges_to_bands(nfd_edges) or ((0.0, 1.0),)
    use_ps = has_ps if from_rows else band is not None
    use_nfd = seed is not None if from_rows else alpha_r is not None
    meta = kernel_meta(H, W, len(bands), use_ps, use_nfd, use_nfd and noise is None, precision,
                       from_rows)
    round_tf32 = meta["ROUND_TF32"]
    tw = _cached(("tw", H, W, str(dev), round_tf32), lambda: _build_twiddles(H, W, dev, round_tf32))
    curves = _cached(("curves", H, W, float(radius_scale), bands, str(dev)),
                     lambda: _build_curves(H, W, radius_scale, bands, dev))
    dummy_f = torch.empty(1, device=dev, dtype=torch.float32)
    dummy_i = torch.zeros(1, device=dev, dtype=torch.int64)
    args = (x, out,
            band.contiguous() if band is not None else dummy_i,
            alpha.contiguous() if alpha is not None else dummy_f,
            alpha_r.contiguous() if alpha_r is not None else dummy_f,
            noise.contiguous() if noise is not None else dummy_f,
            seed.contiguous() if seed is not None else dummy_i,
            *curves, *tw, rows.contiguous() if from_rows else dummy_f, *x.stride(), *out.stride(),
            C, H, W, W // 2 + 1, groups_per_row(W // 2 + 1), float(sigma),
            rows.shape[1] if from_rows else 0)
    if interpreted() or not _autotune_enabled() or precision == "ieee":
        _spectral_augment_kernel[(B * C,)](*args, **meta, num_warps=default_warps(H, W, precision),
                                            num_stages=1)
    else:
        _autotuned_kernel[(B * C,)](*args, **meta)
    return out


if triton is not None:
    @torch.library.custom_op("fastfreq::spectral_augment_triton", mutates_args=())
    def _op(x: torch.Tensor, band: torch.Tensor | None, alpha: torch.Tensor | None,
            alpha_r: torch.Tensor | None, noise: torch.Tensor | None, seed: torch.Tensor | None,
            nfd_edges: list[float], sigma: float, radius_scale: float,
            precision: str = DEFAULT_PRECISION) -> torch.Tensor:
        """The C++ op's schema plus ``precision``; one launch."""
        return launch(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale,
                      _resolve_precision(precision))

    @_op.register_fake
    def _(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale,
          precision=DEFAULT_PRECISION):
        torch._check(x.dim() == 4, lambda: f"x must have 4 dims, got {x.dim()}")
        return torch.empty_like(x)

    def _suppress_grad(grad, band, alpha, ctx):
        return _op(grad, band, alpha, None, None, None, ctx.nfd_edges, ctx.sigma,
                   ctx.radius_scale, *ctx.extra)

    _autograd.register("fastfreq::spectral_augment_triton", _suppress_grad, n_extra=1)

    @torch.library.custom_op("fastfreq::spectral_augment_triton_rows", mutates_args=())
    def _rows_op(x: torch.Tensor, rows: torch.Tensor, seed: torch.Tensor, has_ps: bool,
                 has_nfd: bool, nfd_edges: list[float], sigma: float, radius_scale: float,
                 precision: str = DEFAULT_PRECISION) -> torch.Tensor:
        """The C++ rows ops' schema plus ``precision``: one launch that reads
        each image's parameters from its draw_params row. No autograd formula
        (spectral_augment_sampled takes it only where no gradient is wanted)."""
        return launch(x, None, None, None, None, seed if has_nfd else None, nfd_edges, sigma,
                      radius_scale, _resolve_precision(precision), rows=rows, has_ps=has_ps)

    @_rows_op.register_fake
    def _(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma, radius_scale,
          precision=DEFAULT_PRECISION):
        torch._check(x.dim() == 4, lambda: f"x must have 4 dims, got {x.dim()}")
        return torch.empty_like(x)


def spectral_augment_rows(x, rows, seed, has_ps, has_nfd, nfd_bands, sigma, radius_scale,
                          precision=None):
    """The in-op draw's augmentation on the Triton backend: one launch reading
    the draw_params ``rows`` (fastfreq.spectral_augment_sampled)."""
    return _rows_op(x, rows, seed, bool(has_ps), bool(has_nfd), bands_to_edges(nfd_bands),
                    float(sigma), float(radius_scale), _resolve_precision(precision))


def spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands, generator,
                     seed=None, precision=None):
    """The Triton backend (arguments validated by fastfreq.functional, which
    also ran ``require(x)``)."""
    precision = _resolve_precision(precision)
    seed = kernel_seed(x, alpha_r, noise, seed, generator)
    return _op(x, band, alpha, alpha_r, noise, seed, bands_to_edges(nfd_bands), float(sigma),
               float(radius_scale), precision)
