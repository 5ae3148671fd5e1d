"""Public functional API: argument checks and backend choice.

    X = F(x);  Y = g * X;  Z = Y + R * Dir(Y);  out = F^-1(Z)

``power_suppress`` is the operation with ``R = 0`` (eq. 5), ``nfd`` the one with
``g = 1`` (eq. 12), and ``spectral_augment`` does both in one FFT round trip.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import warnings

import numpy as np
import torch

from . import _checks as chk
from .backends import NumpyFn, ext, numpy_ref, single_pass, torch_fft, triton_kernel
from .backends import draw_seed, kernel_seed
from .philox import MAX_PS_BANDS, PARAM_HEAD, DrawSettings
from .philox import draw_params as philox_draw_params
from .philox import identity_rows, philox_normal
from .constants import (BACKENDS, FLOAT32_SUM_LIMIT, FLOAT64_SUM_LIMIT, PAPER_BANDS,
                        SINGLE_PASS_MAX_SIDE)

# why the Triton kernel failed under backend="auto" (None: it has not); once
# set, auto stops picking it
_triton_failure: str | None = None
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


@dataclasses.dataclass
class _Args:
    x: torch.Tensor
    band: torch.Tensor | None
    alpha: torch.Tensor | None
    alpha_r: torch.Tensor | None
    noise: torch.Tensor | None
    sigma: float
    radius_scale: float
    nfd_bands: tuple
    generator: torch.Generator | None
    seed: torch.Tensor | None = None


def _tensor_on(v, name: str, device, dtype=None) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        if v.device != device:
            raise ValueError(f"{name}: is on {v.device} but x is on {device}")
        return v if dtype is None else v.to(dtype)
    if isinstance(v, (str, bytes)):
        raise TypeError(f"{name}: expected a number, a sequence of numbers or a tensor, got "
                        f"{type(v).__name__} {v!r}")
    try:
        a = np.asarray(v)
    except ValueError:  # a ragged nested list
        a = None
    if a is None or a.dtype.kind not in "biuf":  # ragged, strings, objects
        raise TypeError(f"{name}: expected a number, a sequence of numbers (nested lists of one "
                        f"shape) or a tensor, got {type(v).__name__} {str(v)[:60]}")
    return torch.as_tensor(a, device=device, dtype=dtype)


def _in_graph_check(ok: torch.Tensor, msg: str) -> None:
    """A value check inside ``torch.compile``, where reading the answer on the
    host is a data-dependent branch (a graph break, an error under
    ``fullgraph=True``): on CPU an in-graph assert (``RuntimeError`` with
    ``msg`` when the call runs); on a GPU none (a device-side assert would
    leave the CUDA context unusable), so bad parameters give the contract's
    NaN images there."""
    if ok.device.type == "cpu":
        torch._assert_async(ok, msg)


def _check_range(t: torch.Tensor, name: str, lo, hi) -> None:
    """The value check of one argument, raising with its message (the
    explanation a failed ``_ValueChecks`` flag gets; inside torch.compile an
    in-graph check)."""
    if torch.compiler.is_compiling():
        if t.numel():  # NaN fails both comparisons
            _in_graph_check(((t >= lo) & (t <= hi)).all(), f"{name}: expected finite values in "
                            f"[{lo}, {hi}]")
        return
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    if t.numel() and not bool(((t >= lo) & (t <= hi)).all()):
        raise ValueError(f"{name}: expected values in [{lo}, {hi}], got min "
                         f"{t.min().item()}, max {t.max().item()}")


def _magnitude_limit(x: torch.Tensor) -> float:
    H, W = x.shape[-2:]
    return (FLOAT64_SUM_LIMIT if x.dtype == torch.float64 else FLOAT32_SUM_LIMIT) / (H * W)


def _check_magnitude(x: torch.Tensor) -> None:
    """Images the FFT can sum without overflow, raising with the message."""
    H, W = x.shape[-2:]
    f64 = x.dtype == torch.float64
    limit = _magnitude_limit(x)
    if torch.compiler.is_compiling():  # NaN and Inf fail the comparison
        _in_graph_check(x.detach().abs().amax() <= limit, f"x: expected finite values with "
                        f"magnitudes up to {limit:.3g} for {H}x{W} images; rescale the images")
        return
    peak = float(x.detach().abs().amax())
    if not math.isfinite(peak):
        raise ValueError("x: expected finite values, got NaN or Inf")
    if peak > limit:
        raise ValueError(f"x: magnitudes up to {limit:.3g} are supported for {H}x{W} images "
                         f"(the FFT sums H*W values in {'float64' if f64 else 'float32'}), "
                         f"got max |x| = {peak:.3g}; rescale the images")


def _read_flags(flags: torch.Tensor) -> list:
    """The one host read of a checked call (a sync on a GPU): every value
    check's flag at once."""
    return flags.tolist()


class _ValueChecks:
    """Value checks of one call, reduced on the device to one flag per check
    and read together (one host sync on a GPU, whatever the number of
    arguments); only when a flag is set does its explanation run (and read
    the values) to raise the error that names the argument. Inside
    ``torch.compile`` each check is an in-graph assert instead."""

    def __init__(self):
        self.items = []  # (bad: 0-dim bool tensor, explain: callable that raises)

    def add(self, bad: torch.Tensor, explain) -> None:
        if torch.compiler.is_compiling():
            explain()  # the in-graph form; nothing is read on the host
            return
        self.items.append((bad, explain))

    def range(self, t: torch.Tensor, name: str, lo, hi) -> None:
        if t.numel() or torch.compiler.is_compiling():
            self.add(~((t >= lo) & (t <= hi)).all(), lambda: _check_range(t, name, lo, hi))

    def magnitude(self, x: torch.Tensor) -> None:
        # NaN fails the comparison, so it is flagged as well
        self.add(~(x.detach().abs().amax() <= _magnitude_limit(x)), lambda: _check_magnitude(x))

    def finite(self, t: torch.Tensor, name: str) -> None:
        def explain():
            if torch.compiler.is_compiling():
                _in_graph_check(torch.isfinite(t).all(), f"{name}: expected finite values")
            elif not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: expected finite values, got NaN or Inf")
        self.add(~torch.isfinite(t).all(), explain)

    def run(self) -> None:
        if not self.items:
            return
        flags = _read_flags(torch.stack([bad.reshape(()) for bad, _ in self.items]))
        for (_, explain), hit in zip(self.items, flags):
            if hit:
                explain()
                raise AssertionError("a value check's flag and its explanation disagree")


class SizeWarning(UserWarning):
    """Settings tuned for the paper's 40x40 images met another image size."""


#: the image size the paper's NFD bands and suppression radii were set for
PAPER_SIZE = (40, 40)
#: sides within this factor of the paper's count as paper-sized for the
#: suppression radii (CIFAR's own 32x32 included)
_RADIUS_SIDE_TOLERANCE = 1.5


@functools.lru_cache(maxsize=32)
def _paper_band_coverage(H: int, W: int) -> str:
    from .bands import band_coverage

    return "/".join(f"{c:.2f}" for c in band_coverage(PAPER_BANDS, H, W))


def _warn_size(H, W, suppress: bool, radius_scale: float, bands) -> None:
    """Warn (once per size and kind) when the paper's 40x40 settings are used
    on images of another size, naming the setting that adapts them."""
    if torch.compiler.is_compiling() or not isinstance(H, int) or not isinstance(W, int):
        return
    side = max(H, W) / max(PAPER_SIZE)
    if suppress and radius_scale == 1.0 and not (1 / _RADIUS_SIDE_TOLERANCE <= side
                                                  <= _RADIUS_SIDE_TOLERANCE):
        warnings.warn(f"power suppression: the L/M/H radii are the paper's, set for 40x40 "
                      f"images; on {H}x{W} images pass radius_scale={side:.3g} to keep the "
                      f"bands at the same fraction of the spectrum", SizeWarning, stacklevel=4)
    if bands is not None and tuple(bands) == PAPER_BANDS and (H, W) != PAPER_SIZE:
        warnings.warn(f"NFD: the paper's bands are set for 40x40 images, where each covers about "
                      f"1/5 of the information; on {H}x{W} images they cover "
                      f"{_paper_band_coverage(H, W)}: use bands='equal-coverage' (modules) or "
                      f"nfd_bands=fastfreq.bands.equal_coverage_bands({H}, {W}) for bands of "
                      f"equal coverage at this size", SizeWarning, stacklevel=4)


def _prepare(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands, generator,
             check_values: bool = True, seed=None) -> _Args:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x: expected float16, bfloat16, float32 or float64 images, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"x: expected shape (B, C, H, W), got {tuple(x.shape)}")
    chk.real_device(x.device, "x")
    B, C, H, W = x.shape
    chk.image_size(H, W)
    sigma = chk.sigma(sigma)
    radius_scale = chk.radius_scale(radius_scale)
    bands = chk.nfd_bands(nfd_bands)
    dev = x.device
    # under torch.func transforms (vmap cannot read values on the host) the
    # value checks are left out, as with check_values=False
    check_values = check_values and not torch._C._are_functorch_transforms_active()
    checks = _ValueChecks()
    if check_values and x.numel():
        checks.magnitude(x)

    if chk.ps_requested(band, alpha):
        if isinstance(band, (str, numbers.Integral)):
            band = torch.full((B,), chk.band_id(band), dtype=torch.int64, device=dev)
        band = _tensor_on(band, "band", dev)
        if band.dtype.is_floating_point or band.dtype == torch.bool or band.is_complex():
            raise TypeError(f"band: expected integer band ids, got {band.dtype}")
        band = band.to(torch.int64)
        if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            alpha = torch.full((B,), chk.finite_float(alpha, "alpha"), device=dev)
        alpha = _tensor_on(alpha, "alpha", dev)
        if not alpha.is_floating_point():
            raise TypeError(f"alpha: expected a float or floating tensor, got {alpha.dtype}")
        for name, t in (("band", band), ("alpha", alpha)):
            if t.shape != (B,):
                raise ValueError(f"{name}: expected shape ({B},), got {tuple(t.shape)}")
        if check_values:
            checks.range(band, "band", 0, 2)
            checks.range(alpha, "alpha", 0.0, 1.0)

    if alpha_r is not None:
        alpha_r = _tensor_on(alpha_r, "alpha_r", dev)
        if not alpha_r.is_floating_point():
            raise TypeError(f"alpha_r: expected a floating tensor, got {alpha_r.dtype}")
        if alpha_r.shape != (B, len(bands)):
            raise ValueError(f"alpha_r: expected shape ({B}, {len(bands)}) for {len(bands)} "
                             f"NFD bands, got {tuple(alpha_r.shape)}")
        if check_values:
            checks.range(alpha_r, "alpha_r", 0.0, 1.0)
        if noise is not None:
            noise = _tensor_on(noise, "noise", dev)
            want = (B, C, H, W // 2 + 1)
            if not noise.is_floating_point():
                raise TypeError(f"noise: expected a floating tensor, got {noise.dtype}")
            if tuple(noise.shape) != want:
                raise ValueError(f"noise: expected the half-spectrum shape {want}, "
                                 f"got {tuple(noise.shape)}")
            if check_values:
                checks.finite(noise, "noise")
    elif noise is not None:
        raise ValueError("noise: given without alpha_r; NFD needs control weights alpha_r")

    if chk.generator(generator) is not None:
        if generator.device.type != dev.type:
            raise ValueError(f"generator: is on {generator.device} but x is on {dev}")
    if seed is not None:
        if noise is not None:
            raise ValueError("seed: give either noise or seed, not both")
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            if not -2 ** 63 <= int(seed) < 2 ** 63:
                raise ValueError(f"seed: expected a 64-bit integer, got {seed}")
            seed = torch.tensor([int(seed)], dtype=torch.int64, device=dev)
        seed = _tensor_on(seed, "seed", dev)
        if seed.dtype != torch.int64 or seed.numel() != 1:
            raise ValueError(f"seed: expected an int or an int64 tensor with one element, got "
                             f"{seed.dtype} of shape {tuple(seed.shape)}")
        if seed.dim() != 1:  # (a reshape is an op of its own on every call)
            seed = seed.reshape(1)
    checks.run()  # every value check above: one host read
    _warn_size(H, W, band is not None, radius_scale, bands if alpha_r is not None else None)
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        wanting = [n for n, t in (("alpha", alpha), ("alpha_r", alpha_r), ("noise", noise))
                   if isinstance(t, torch.Tensor) and t.requires_grad]
        if wanting:
            warnings.warn(f"{', '.join(wanting)}: requires grad, but gradients flow to x only "
                          f"(sampled parameters get none); detach it to silence this",
                          UserWarning, stacklevel=3)
    return _Args(x, band, alpha, alpha_r, noise, sigma, radius_scale, bands, generator, seed)


def _auto_cuda(x: torch.Tensor) -> str:
    """auto on CUDA: the backend measured faster for images like x
    (bench/results, README "Performance"); Triton only where it supports x."""
    triton_ok = triton_kernel.supports(x) and _triton_failure is None
    # an extension built without code for this GPU (an A100 under a
    # Hopper-only build) would fail with "no kernel image is available"
    cuda_ok = ext.has_cuda() and ext.kernel_image_ok(x.device)
    if cuda_ok and not (triton_ok and triton_kernel.preferred_on_gpu(x)):
        return "cuda"
    return "triton" if triton_ok else "torch"


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """The concrete backend that ``backend`` names for images like ``x``."""
    chk.backend_name(backend)
    dev = x.device.type
    if backend == "auto":
        if dev == "cpu":
            return "cpp" if ext.available() else "torch"
        if dev == "cuda":
            return _auto_cuda(x)
        return "torch"
    if backend == "triton":
        triton_kernel.require(x)
    if backend == "cpp":
        ext.require("cpu")
        if dev != "cpu":
            raise ValueError(f"backend='cpp' runs on CPU tensors, x is on {x.device}; "
                             "use backend='cuda' or 'auto'")
    if backend == "cuda":
        ext.require("cuda")
        if dev != "cuda":
            raise ValueError(f"backend='cuda' runs on CUDA tensors, x is on {x.device}")
        ext.require_image(x)
    if backend == "single_pass":
        if dev not in ("cpu", "cuda"):
            raise ValueError(f"backend='single_pass' runs on CPU and CUDA tensors, x is on {x.device}")
        ext.require(dev)
        if dev == "cuda":
            ext.require_image(x)
        if max(x.shape[-2:]) > SINGLE_PASS_MAX_SIDE:
            raise ValueError(f"x: backend='single_pass' takes H, W <= {SINGLE_PASS_MAX_SIDE}, got "
                             f"{tuple(x.shape[-2:])}; use backend='cuda', 'cpp' or 'auto'")
    return backend


def available_backends(device="cpu") -> tuple[str, ...]:
    """The concrete backends that run on images on ``device`` on this machine
    (``"auto"`` excluded): what the demo and the benchmarks iterate over."""
    probe = torch.zeros(1, 1, 8, 8, device=device)
    found = []
    for name in BACKENDS[1:]:
        try:
            resolve_backend(name, probe)
        except (RuntimeError, ValueError, TypeError):
            continue
        found.append(name)
    return tuple(found)


_MODULES = {"numpy": numpy_ref, "torch": torch_fft, "cpp": ext, "cuda": ext, "triton": triton_kernel,
            "single_pass": single_pass}


def _dispatch(a: _Args, backend: str, precision=None) -> torch.Tensor:
    name = resolve_backend(backend, a.x)
    if name != "torch" and torch._C._are_functorch_transforms_active():
        # torch.func (grad, jacrev, vmap): the compiled ops and the NumPy
        # Function have no functorch rules; the eager backend is the same
        # math, and its Philox draw for the kernels' seed is the same noise
        seed = kernel_seed(a.x, a.alpha_r, a.noise, a.seed, a.generator)
        return torch_fft.spectral_augment(a.x, a.band, a.alpha, a.alpha_r, a.noise, a.sigma,
                                          a.radius_scale, a.nfd_bands, None, seed=seed)
    impl = _MODULES[name].spectral_augment
    if name == "numpy" and a.x.requires_grad and torch.is_grad_enabled():
        # the reference computes in NumPy: autograd through a Function whose
        # backward recomputes with torch for the same (Philox) noise
        seed = kernel_seed(a.x, a.alpha_r, a.noise, a.seed, a.generator)
        return NumpyFn.apply(a.x, a.band, a.alpha, a.alpha_r, a.noise, seed,
                             a.nfd_bands, a.sigma, a.radius_scale)
    try:
        return impl(a.x, a.band, a.alpha, a.alpha_r, a.noise, a.sigma, a.radius_scale,
                    a.nfd_bands, a.generator, seed=a.seed, precision=precision)
    except (ValueError, TypeError):
        raise
    except Exception as exc:
        # a Triton compile/launch failure on this GPU: under "auto" warn once
        # and use the compiled CUDA (or eager) backend from then on
        if name != "triton" or backend != "auto":
            raise
        global _triton_failure
        _triton_failure = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"backend='auto': the Triton kernel failed on {a.x.device} "
                      f"({_triton_failure[:300]}); using the "
                      f"{'cuda' if ext.has_cuda() else 'torch'} backend from now on",
                      RuntimeWarning, stacklevel=3)
        return _dispatch(a, backend, precision)


def _batched(x):
    """Accept (C, H, W) in the public wrappers: returns (x4, unbatch)."""
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return x.unsqueeze(0), lambda y: y.squeeze(0)
    return x, lambda y: y


def _in_format_of(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``out`` in ``x``'s memory format: channels_last images come back
    channels_last, as from torch's own convolutions and elementwise ops (the
    backends compute on contiguous planes). Under torch.func transforms the
    layout is left as computed (vmap cannot query a memory format)."""
    if (x.dim() == 4 and not torch._C._are_functorch_transforms_active()
            and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
        return out.contiguous(memory_format=torch.channels_last)
    return out


def spectral_augment(x, band=None, alpha=None, alpha_r=None, noise=None, sigma=1.0, *,
                     radius_scale=1.0, nfd_bands=PAPER_BANDS, generator=None, backend="auto",
                     seed=None, precision=None, check_values=True):
    """Power suppression (eq. 5) then NFD (eq. 12) in one FFT round trip.

    x: ``(B, C, H, W)`` or ``(C, H, W)`` float16/bfloat16/float32/float64 images.
    band, alpha: per-image mask id in {0, 1, 2} (or a letter 'L'/'M'/'H' for
        all) and suppression ratio in [0, 1]; both None skips suppression.
    alpha_r: ``(B, n)`` NFD control weights in [0, 1]; None skips NFD.
    noise: ``(B, C, H, W//2+1)`` standard normal half-spectrum draw, or None:
        every backend then draws a Philox key from ``generator`` and adds the
        Philox normals for it (the same generator state, the same noise on
        every backend).
    seed: instead of ``noise``, the Philox key (int or int64 tensor) of the
        draw: every backend then adds the same noise (replay).
    precision: matrix-product precision of the Triton backend, "ieee",
        "tf32x3" or "tf32" (default: fastfreq.backends.triton_kernel.DEFAULT_PRECISION).
    check_values: validate value ranges (one host sync on GPU); internal
        callers that generate valid parameters turn it off. Inside
        ``torch.compile`` (no host read there) the checks are in-graph
        asserts on CPU tensors (a ``RuntimeError`` naming the argument) and
        are left out on GPU tensors; under ``torch.func`` transforms they are
        left out. Without the
        checks, an image whose band id is outside {0, 1, 2} or whose alpha /
        alpha_r is outside [0, 1] (or NaN) comes back all NaN, on every
        backend (fastfreq/backends/_contract.py).
    backend: "auto" (CPU: cpp; CUDA: cuda, the faster measured; torch
        without the extension), "numpy" (the float64 reference), "torch",
        "cpp", "cuda", "triton" (float16/bfloat16/float32, sides <= 64) or
        "single_pass" (opt-in: the single-pass kernel, CPU and CUDA, sides
        <= 64; not yet measured on a GPU, so "auto" does not pick it).
        Under ``torch.func`` transforms (grad, jacrev, vmap) every backend
        computes with the eager torch one (the same math and Philox noise):
        the compiled ops have no functorch rules.

    Gradients flow to ``x`` only. band, alpha, alpha_r, noise and seed are
    sampled parameters: no gradient reaches them (a warning says so when one
    of them requires grad).

    Shape:
        - x: ``(B, C, H, W)`` or ``(C, H, W)``; band, alpha ``(B,)``;
          alpha_r ``(B, len(nfd_bands))``; noise ``(B, C, H, W // 2 + 1)``.
        - Output: x's shape, dtype, device and memory format (channels_last
          images come back channels_last).

    Example:
        >>> import torch, fastfreq
        >>> x = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
        >>> band, alpha = torch.tensor([0, 1, 2, 0]), torch.full((4,), 0.5)
        >>> alpha_r = torch.rand(4, 5, generator=torch.Generator().manual_seed(1))
        >>> y = fastfreq.spectral_augment(x, band, alpha, alpha_r, seed=7)
        >>> y.shape, y.dtype
        (torch.Size([4, 3, 40, 40]), torch.float32)
        >>> # one round trip = suppression, then NFD with the same noise key
        >>> two = fastfreq.nfd(fastfreq.power_suppress(x, band, alpha), alpha_r, seed=7)
        >>> bool((y - two).abs().amax() < 1e-4)
        True
        >>> ref = fastfreq.spectral_augment(x, band, alpha, alpha_r, seed=7, backend="numpy")
        >>> bool((y - ref).abs().amax() < 1e-5)               # the float64 NumPy reference
        True
    """
    x4, unbatch = _batched(x)
    if noise is not None and isinstance(x, torch.Tensor) and x.dim() == 3 \
            and isinstance(noise, torch.Tensor) and noise.dim() == 3:
        noise = noise.unsqueeze(0)
    a = _prepare(x4, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands, generator,
                 check_values, seed)
    if precision is not None and precision not in triton_kernel.PRECISIONS:
        raise ValueError(f"precision: expected one of {triton_kernel.PRECISIONS} or None, "
                         f"got {precision!r}")
    return unbatch(_in_format_of(_dispatch(a, backend, precision), x4))


def power_suppress(x, band, alpha, *, radius_scale=1.0, backend="auto", precision=None,
                   check_values=True):
    """Eq. 5, ``F^-1(F(x) * (1 - alpha (1 - M_band)))``: the power of band
    ``band`` (0/"L", 1/"M", 2/"H") scaled down by ``alpha`` in [0, 1]. The
    other arguments are ``spectral_augment``'s.

    Shape:
        - x: ``(B, C, H, W)`` or ``(C, H, W)``; band, alpha: ``(B,)`` tensors
          or one value for every image.
        - Output: x's shape, dtype, device and memory format.

    Example:
        >>> import torch, fastfreq
        >>> from fastfreq.masks import suppression_gain
        >>> x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
        >>> y = fastfreq.power_suppress(x, "H", 1.0)      # the high frequencies removed
        >>> g = suppression_gain(torch.tensor([2, 2]), torch.ones(2), 40, 40)
        >>> bool((torch.fft.rfft2(y) - torch.fft.rfft2(x) * g[:, None]).abs().amax() < 1e-3)
        True
        >>> bool((y.mean((2, 3)) - x.mean((2, 3))).abs().amax() < 1e-5)   # DC kept
        True
    """
    if band is None or alpha is None:
        raise ValueError("band, alpha: power_suppress needs both")
    return spectral_augment(x, band, alpha, radius_scale=radius_scale, backend=backend,
                            precision=precision, check_values=check_values)


def nfd(x, alpha_r, noise=None, sigma=1.0, *, nfd_bands=PAPER_BANDS, generator=None,
        backend="auto", seed=None, precision=None, check_values=True):
    """Eq. 12, ``F^-1(F(x) + R_sigma(M) * Dir F(x))``: noise of variance
    ``sigma (1 - M)`` on the spectrum, with the control matrix
    ``M = sum_i alpha_r[i] M_i`` (eq. 14) over ``nfd_bands``. The other
    arguments are ``spectral_augment``'s.

    Shape:
        - x: ``(B, C, H, W)`` or ``(C, H, W)``; alpha_r
          ``(B, len(nfd_bands))``; noise ``(B, C, H, W // 2 + 1)``.
        - Output: x's shape, dtype, device and memory format.

    Example:
        >>> import torch, fastfreq
        >>> from fastfreq.masks import control_matrix
        >>> x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
        >>> w = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0]] * 2)   # noise in the lowest band only
        >>> y = fastfreq.nfd(x, w, seed=7)
        >>> torch.equal(y, fastfreq.nfd(x, w, seed=7))           # a seed replays the draw
        True
        >>> d = (torch.fft.rfft2(y) - torch.fft.rfft2(x)).abs()
        >>> quiet = (control_matrix(w, 40, 40) == 1)[:, None].expand_as(d)   # M = 1: no noise
        >>> bool(d[quiet].amax() < 1e-3), bool(d[~quiet].amax() > 1)
        (True, True)
    """
    if alpha_r is None:
        raise ValueError("alpha_r: nfd needs control weights of shape (B, n_bands)")
    return spectral_augment(x, alpha_r=alpha_r, noise=noise, sigma=sigma, nfd_bands=nfd_bands,
                            generator=generator, backend=backend, seed=seed, precision=precision,
                            check_values=check_values)


def _draw_rows(name: str, seed: torch.Tensor, batch: int, settings) -> torch.Tensor:
    """The parameter rows for ``seed`` as backend ``name`` draws them: the
    NumPy reference's own Philox for numpy, torch ops for torch, the compiled
    op elsewhere (the same bits on every backend; tests/test_draws.py)."""
    if name == "numpy":
        return numpy_ref.draw_params(seed, batch, settings)
    dev = seed.device.type
    compiled = ext.available() and (dev == "cpu" or (dev == "cuda" and ext.has_cuda()
                                                     and ext.kernel_image_ok(seed.device)))
    if name != "torch" and compiled and not torch._C._are_functorch_transforms_active():
        return ext.draw_params(seed, batch, settings)
    return philox_draw_params(seed, batch, settings)


def _sampled_composite(a: _Args, name: str, settings, precision):
    """The in-op draw for the backends without a compiled one-call op (numpy,
    torch, triton; every backend under torch.func): the same rows and the
    same per-image results as ``fastfreq::spectral_augment_sampled``.

    triton without a gradient wanted: one launch that reads the rows. Else
    one call of the backend with band/alpha/alpha_r cut out of the rows and,
    when NFD is drawn for some images only, the Philox noise of the seed
    (``fastfreq.philox``, the draw of the torch and numpy backends) zeroed on
    the others. The images that no transform drew are left out of that call
    on numpy (see _can_compact) and set back to x otherwise."""
    s, x = settings, a.x
    rows = _draw_rows(name, a.seed, x.shape[0], s)
    n = len(a.nfd_bands)
    use_ps = s.ps_p > 0
    use_nfd = s.nfd_p > 0 and a.sigma > 0 and n > 0
    if not (use_ps or use_nfd):
        return x.clone(), rows
    functorch = torch._C._are_functorch_transforms_active()
    if (name == "triton" and not functorch
            and not (torch.is_grad_enabled() and x.requires_grad)):
        return triton_kernel.spectral_augment_rows(x, rows, a.seed, use_ps, use_nfd, a.nfd_bands,
                                                   a.sigma, a.radius_scale, precision), rows
    band = rows[:, 1].to(torch.int64) if use_ps else None
    alpha = rows[:, 2] if use_ps else None  # 0 where not drawn: gain 1
    alpha_r = rows[:, PARAM_HEAD:] if use_nfd else None
    noise, seed = None, (a.seed if use_nfd else None)
    if use_nfd and s.nfd_p < 1:
        B, C, H, W = x.shape
        noise = philox_normal(a.seed, (B, C, H, W // 2 + 1), device=x.device)
        noise = noise * rows[:, 3].view(-1, 1, 1, 1)  # no noise where NFD was not drawn
        seed = None
    # (without NFD the bands are not read; the backends take a valid set)
    args = _Args(x, band, alpha, alpha_r, noise, a.sigma, a.radius_scale,
                 a.nfd_bands or PAPER_BANDS, None, seed)
    if use_nfd and s.nfd_p >= 1:  # NFD on every image: none is left unchanged
        return _dispatch(args, name, precision), rows
    keep = identity_rows(rows, use_ps, use_nfd).to(x.device)
    if _can_compact(x, name, functorch):
        # only the images that a transform drew go through the backend (the
        # parameters here are explicit, so a sub-batch gives the same values)
        todo = (~keep).nonzero().squeeze(1)
        if todo.numel() == 0:
            return x.clone(), rows
        pick = (lambda t: None if t is None else t.index_select(0, todo.to(t.device)))
        part = _dispatch(dataclasses.replace(args, x=pick(x), band=pick(band), alpha=pick(alpha),
                                             alpha_r=pick(alpha_r), noise=pick(noise)),
                         name, precision)
        return x.index_copy(0, todo, part.to(x.dtype)), rows
    return torch.where(keep[:, None, None, None], x, _dispatch(args, name, precision)), rows


def _can_compact(x: torch.Tensor, name: str, functorch: bool) -> bool:
    """Whether the composite may cut the batch down to the drawn images: on
    the numpy backend (which copies to the host anyway, so reading the index
    costs nothing more), eagerly (the index is data-dependent: not under
    torch.func or torch.compile). Not on torch: its values depend on the batch
    size in the last bit (1 ulp between a batch of 1 and of 6 on CPU), and a
    replay of the draw (``aug(x, params=p)``, the whole batch) must give the
    same bits; on a GPU the index would also be a sync."""
    return name == "numpy" and not functorch and not torch.compiler.is_compiling()


def spectral_augment_sampled(x, seed=None, *, ps_p=1 / 3, bands=("L", "M", "H"), alpha=(0.0, 1.0),
                             nfd_p=1.0, sigma=1.0, radius_scale=1.0, nfd_bands=PAPER_BANDS,
                             same_on_batch=False, generator=None, backend="auto", precision=None,
                             check_values=True):
    """Power suppression and NFD with every image's parameters drawn inside
    the op from a Philox key: what the modules run, in one op call on the
    compiled backends (cpp, cuda, single_pass), with no host sync.

    Image i draws from counter i (image 0 for every image with
    ``same_on_batch``) under the key ``seed`` (csrc/param_draw.h): suppression
    with probability ``ps_p``, its band uniform over ``bands`` and ``alpha ~
    U(alpha)``; NFD with probability ``nfd_p``, control weights by Section
    3.3's rule (one entry ``U(0, 1)``, the others 0 or 1 with probability
    1/2); the noise is the Philox draw of the same key. Every backend draws the
    same parameters for a seed (bit for bit) and the same noise (to the
    stated float32 bound, ``fastfreq.constants.NOISE_DRAW_BOUND``). Images a
    transform did not draw come back unchanged by it (exactly ``x`` when
    neither was drawn).

    Returns ``(out, rows)``: rows is a ``(B, 4 + len(nfd_bands))`` float32
    tensor ``[ps_applied, band, alpha, nfd_applied, alpha_r...]`` (alpha 0
    where suppression was not drawn), which ``fastfreq.transforms.split_rows``
    turns into the modules' ``last_params``.

    seed: an int or an int64 tensor with one element on x's device; None
        draws one from ``generator`` (or the device's default generator) on
        the device. The other arguments are ``spectral_augment``'s and the
        modules' (``ps_p``/``nfd_p`` = 0 or ``sigma`` = 0 leave a transform
        out; ``nfd_bands=None`` leaves NFD and its columns out).

    Example:
        >>> import torch, fastfreq
        >>> x = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(0))
        >>> y, rows = fastfreq.spectral_augment_sampled(x, seed=3)
        >>> rows.shape
        torch.Size([6, 9])
        >>> y2, rows2 = fastfreq.spectral_augment_sampled(x, seed=3, backend="numpy")
        >>> torch.equal(rows, rows2), bool((y - y2).abs().amax() < 1e-4)
        (True, True)
    """
    x4, unbatch = _batched(x)
    chk.probability(ps_p, "ps_p")
    chk.probability(nfd_p, "nfd_p")
    if (isinstance(bands, (str, bytes)) or not hasattr(bands, "__len__")
            or not 1 <= len(bands) <= MAX_PS_BANDS):
        raise ValueError(f"bands: expected a sequence of 1 to {MAX_PS_BANDS} of 'L', 'M', 'H' "
                         f"(repeats weight a band), got {bands!r}")
    band_ids = tuple(chk.band_id(b) for b in bands)
    alpha = chk.unit_range(alpha, "alpha")
    if seed is None:
        if not isinstance(x4, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        seed = draw_seed(x4.device, chk.generator(generator))
    a = _prepare(x4, None, None, None, None, sigma, radius_scale,
                 PAPER_BANDS if nfd_bands is None else nfd_bands, None, check_values, seed)
    if nfd_bands is None:  # no NFD: no control-weight columns
        a.nfd_bands = ()
    if precision is not None and precision not in triton_kernel.PRECISIONS:
        raise ValueError(f"precision: expected one of {triton_kernel.PRECISIONS} or None, "
                         f"got {precision!r}")
    settings = DrawSettings(float(ps_p), band_ids, alpha, float(nfd_p), len(a.nfd_bands),
                            bool(same_on_batch))
    H, W = x4.shape[-2:]
    _warn_size(H, W, ps_p > 0, a.radius_scale, a.nfd_bands if nfd_p > 0 and a.nfd_bands else None)
    name = resolve_backend(backend, x4)
    if name in ("cpp", "cuda", "single_pass") and not torch._C._are_functorch_transforms_active():
        out, rows = ext.spectral_augment_sampled(x4, a.seed, settings, a.sigma, a.radius_scale,
                                                 a.nfd_bands, single_pass=name == "single_pass")
    else:
        out, rows = _sampled_composite(a, name, settings, precision)
    return unbatch(_in_format_of(out, x4)), rows
