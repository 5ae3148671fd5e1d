"""The backward of the fused op, shared by every backend.

``out = irfft2(g * rfft2(x) + R * Dir(g * rfft2(x)))`` is linear in ``x``
without NFD: power suppression is ``F^-1 diag(g) F`` with a real gain ``g``
that is even in frequency, a symmetric operator, so its vector-Jacobian
product is the same suppression applied to the incoming gradient (one call of
the same fused op). With NFD, ``Dir`` makes it non-linear; the backward
recomputes the forward with the eager torch backend for the SAME noise (the
Philox ``seed`` or the ``noise`` tensor the forward used) and takes its
vector-Jacobian product. Gradients flow to ``x`` only: band, alpha, alpha_r,
noise and seed are sampled parameters.
"""
from __future__ import annotations

import torch

from ._contract import edges_to_bands


def nfd_vjp(grad, x, band, alpha, alpha_r, noise, seed, nfd_bands, sigma, radius_scale):
    """``d out / d x`` applied to ``grad`` by recomputing with the torch backend."""
    from . import torch_fft

    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.enable_grad():
        xr = x.detach().to(compute).requires_grad_(True)
        out = torch_fft.spectral_augment(xr, band, alpha, alpha_r, noise, sigma, radius_scale,
                                         nfd_bands, None, seed=seed)
        (gx,) = torch.autograd.grad(out, xr, grad.to(compute))
    return gx.to(x.dtype)


def register(op_name: str, ps_only_call, n_extra: int = 0):
    """Register the backward of the op ``op_name``, whose first nine arguments
    are the C++ schema's ``(x, band, alpha, alpha_r, noise, seed, nfd_edges,
    sigma, radius_scale)``; ``ps_only_call(grad, band, alpha, ctx)`` applies the forward's
    suppression to ``grad``. ``n_extra`` more non-tensor arguments follow."""

    def setup_context(ctx, inputs, output):
        x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale = inputs[:9]
        ctx.nfd_edges, ctx.sigma, ctx.radius_scale = list(nfd_edges), sigma, radius_scale
        ctx.extra = tuple(inputs[9:])
        ctx.has_ps, ctx.has_nfd = band is not None, alpha_r is not None
        ctx.has_noise, ctx.has_seed = noise is not None, seed is not None
        saved = [t for t in (band, alpha, alpha_r, noise, seed) if t is not None]
        # x is needed only to recompute NFD's Dir(Y)
        ctx.save_for_backward(x if ctx.has_nfd else None, *saved)

    def unpack(ctx):
        x, *rest = ctx.saved_tensors
        it = iter(rest)
        band = next(it) if ctx.has_ps else None
        alpha = next(it) if ctx.has_ps else None
        alpha_r = next(it) if ctx.has_nfd else None
        noise = next(it) if ctx.has_noise else None
        seed = next(it) if ctx.has_seed else None
        return x, band, alpha, alpha_r, noise, seed

    def backward(ctx, grad):
        x, band, alpha, alpha_r, noise, seed = unpack(ctx)
        if not ctx.has_nfd:
            gx = ps_only_call(grad, band, alpha, ctx)
        else:
            gx = nfd_vjp(grad, x, band, alpha, alpha_r, noise, seed, edges_to_bands(ctx.nfd_edges),
                         ctx.sigma, ctx.radius_scale)
        return (gx,) + (None,) * (8 + n_extra)

    torch.library.register_autograd(op_name, backward, setup_context=setup_context)


class NumpyFn(torch.autograd.Function):
    """The numpy reference behind autograd (its own result is detached
    NumPy); the backward is the shared one above, run with the reference for
    the suppression-only case."""

    @staticmethod
    def forward(ctx, x, band, alpha, alpha_r, noise, seed, nfd_bands, sigma, radius_scale):
        from . import numpy_ref

        ctx.save_for_backward(x, band, alpha, alpha_r, noise, seed)
        ctx.nfd_bands, ctx.sigma, ctx.radius_scale = nfd_bands, sigma, radius_scale
        return numpy_ref.spectral_augment(x, band, alpha, alpha_r, noise, sigma, radius_scale,
                                          nfd_bands, None, seed=seed)

    @staticmethod
    def backward(ctx, grad):
        from . import numpy_ref

        x, band, alpha, alpha_r, noise, seed = ctx.saved_tensors
        if alpha_r is None:
            gx = numpy_ref.spectral_augment(grad, band, alpha, None, None, ctx.sigma,
                                            ctx.radius_scale, ctx.nfd_bands, None)
        else:
            gx = nfd_vjp(grad, x, band, alpha, alpha_r, noise, seed, ctx.nfd_bands, ctx.sigma,
                         ctx.radius_scale)
        return (gx,) + (None,) * 8
