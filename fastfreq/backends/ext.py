"""The compiled ops of ``fastfreq._C`` (CPU and CUDA) and their fake kernels."""
from __future__ import annotations

import torch

from . import _autograd
from ._contract import bands_to_edges, kernel_seed

BUILD_HINT = ("build it with `pip install --no-build-isolation -e .` from the fastfreq "
              "checkout (set CUDA_HOME for the CUDA part), or use backend='torch'")

try:
    from .. import _C  # noqa: F401  (registers torch.ops.fastfreq.*)
    LOAD_ERROR: str | None = None
except ImportError as exc:  # the package works without its extension
    _C = None
    LOAD_ERROR = f"{type(exc).__name__}: {exc}"


def available() -> bool:
    return _C is not None


def has_cuda() -> bool:
    return _C is not None and _C.built_with_cuda()


def cuda_archs() -> tuple[str, ...]:
    """The CUDA architectures this build holds code for, as TORCH_CUDA_ARCH_LIST
    names them ("8.0", "9.0+PTX"); empty without the CUDA part."""
    if not has_cuda():
        return ()
    token = _C.cuda_archs()  # "targets_80_90ptx" (setup.py targets_macro)
    out = []
    for part in token.removeprefix("targets_").split("_"):
        ptx = part.endswith("ptx")
        num = part.removesuffix("ptx")
        if num.isdigit() and len(num) >= 2:
            out.append(f"{num[:-1]}.{num[-1]}" + ("+PTX" if ptx else ""))
    return tuple(out)


_IMAGE_OK: dict[int, bool] = {}


def kernel_image_ok(device) -> bool:
    """Whether the CUDA part has a kernel image that ``device`` can run (SASS
    for its architecture or PTX it can JIT): an A100 with a Hopper-only build
    has none, and would fail with "no kernel image is available". Asked of the
    CUDA runtime once per device."""
    if not has_cuda():
        return False
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    if index not in _IMAGE_OK:
        _IMAGE_OK[index] = bool(_C.cuda_kernel_image_ok(index))
    return _IMAGE_OK[index]


def require_image(x: torch.Tensor) -> None:
    """Raise a RuntimeError naming the architectures when the CUDA part has no
    kernel for x's GPU."""
    if x.device.type == "cuda" and not kernel_image_ok(x.device):
        major, minor = torch.cuda.get_device_capability(x.device)
        raise RuntimeError(
            f"backend='cuda': fastfreq._C was built for CUDA architectures "
            f"{';'.join(cuda_archs()) or '(none)'}, which {torch.cuda.get_device_name(x.device)} "
            f"(sm_{major}{minor}) cannot run; rebuild with TORCH_CUDA_ARCH_LIST=\"{major}.{minor}\" "
            f"(or unset it for the default list), or use backend='triton' or 'torch'")


def require(device_type: str) -> None:
    """Raise a RuntimeError that says how to build the missing extension."""
    if _C is None:
        raise RuntimeError(f"backend: the fastfreq._C extension is not available "
                           f"({LOAD_ERROR}); {BUILD_HINT}")
    if device_type == "cuda" and not _C.built_with_cuda():
        raise RuntimeError("backend='cuda': fastfreq._C was built without its CUDA part; "
                           "rebuild on a machine with nvcc and a CUDA build of PyTorch "
                           "(FASTFREQ_CUDA=1 forces it)")


if _C is not None:
    @torch.library.register_fake("fastfreq::spectral_augment")
    def _spectral_augment_fake(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma,
                               radius_scale):
        torch._check(x.dim() == 4, lambda: f"x must have 4 dims, got {x.dim()}")
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    @torch.library.register_fake("fastfreq::philox_normal")
    def _philox_normal_fake(seed, shape):
        return torch.empty(shape, dtype=torch.float32, device=seed.device)

    def _suppress_grad(grad, band, alpha, ctx):
        return torch.ops.fastfreq.spectral_augment(grad, band, alpha, None, None, None,
                                                   ctx.nfd_edges, ctx.sigma, ctx.radius_scale)

    _autograd.register("fastfreq::spectral_augment", _suppress_grad)

    @torch.library.register_fake("fastfreq::spectral_augment_fused")
    def _spectral_augment_fused_fake(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma,
                                     radius_scale):
        torch._check(x.dim() == 4, lambda: f"x must have 4 dims, got {x.dim()}")
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    def _suppress_grad_fused(grad, band, alpha, ctx):
        return torch.ops.fastfreq.spectral_augment_fused(grad, band, alpha, None, None, None,
                                                         ctx.nfd_edges, ctx.sigma,
                                                         ctx.radius_scale)

    _autograd.register("fastfreq::spectral_augment_fused", _suppress_grad_fused)

    def _rows_op_fake(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma, radius_scale):
        torch._check(x.dim() == 4, lambda: f"x must have 4 dims, got {x.dim()}")
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    # the ops that read draw_params rows (the single-pass kernel; the cpp/cuda path)
    torch.library.register_fake("fastfreq::spectral_augment_fused_rows")(_rows_op_fake)
    torch.library.register_fake("fastfreq::spectral_augment_rows")(_rows_op_fake)

    @torch.library.register_fake("fastfreq::draw_params")
    def _draw_params_fake(seed, batch, ps_p, ps_bands, alpha_lo, alpha_hi, nfd_p, n_bands,
                          same_on_batch):
        return torch.empty((batch, 4 + n_bands), dtype=torch.float32, device=seed.device)


def spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands, generator,
                     seed=None, precision=None):
    """The compiled op; without ``noise`` the kernel draws Philox noise for
    ``seed`` (an int64 tensor on x's device), itself drawn from ``generator``
    when None."""
    seed = kernel_seed(x, alpha_r, noise, seed, generator)
    return torch.ops.fastfreq.spectral_augment(x, band, alpha, alpha_r, noise, seed,
                                               bands_to_edges(nfd_bands), float(sigma),
                                               float(radius_scale))


def spectral_augment_single_pass(x, band, alpha, alpha_r, noise, sigma, radius_scale, nfd_bands,
                                 generator, seed=None, precision=None):
    """The single-pass op (sides up to SINGLE_PASS_MAX_SIDE): each plane is read
    once, transformed, augmented and transformed back on chip, written once.
    Same arguments and noise as :func:`spectral_augment`."""
    seed = kernel_seed(x, alpha_r, noise, seed, generator)
    return torch.ops.fastfreq.spectral_augment_fused(x, band, alpha, alpha_r, noise, seed,
                                                     bands_to_edges(nfd_bands), float(sigma),
                                                     float(radius_scale))


def philox_normal(seed: torch.Tensor, shape) -> torch.Tensor:
    """The standard normal draws that the kernels use for a seed, laid out as
    ``shape`` (element i is draw i): pass the result as ``noise`` to reproduce
    an in-kernel draw exactly."""
    return torch.ops.fastfreq.philox_normal(seed, list(shape))


def draw_params(seed: torch.Tensor, batch: int, settings) -> torch.Tensor:
    """The per-image parameter rows for ``seed`` (csrc/param_draw.h), drawn by
    the compiled op on seed's device: one kernel on a GPU, no host sync."""
    return torch.ops.fastfreq.draw_params(seed, int(batch), *settings.op_args())


def spectral_augment_sampled(x, seed, settings, sigma, radius_scale, nfd_bands, single_pass=False):
    """The draw, the augmentation and the per-image selection in one op call
    (``fastfreq::spectral_augment_sampled``): ``(output, rows)``."""
    s = settings
    return torch.ops.fastfreq.spectral_augment_sampled(
        x, seed, float(s.ps_p), [int(b) for b in s.ps_bands], float(s.alpha[0]),
        float(s.alpha[1]), float(s.nfd_p), bands_to_edges(nfd_bands), float(sigma),
        float(radius_scale), bool(s.same_on_batch), bool(single_pass))
