"""torch.func (grad, jacrev, vmap) through the functional API on every CPU
backend, compared with torch.autograd on the same backend (the registered
backward) and with a Python loop for vmap."""
import pytest
import torch
from torch.func import grad, jacrev, vmap

import fastfreq
from fastfreq.backends import ext

BACKENDS = ["torch", "numpy"] + (["cpp"] if ext.available() else [])
CASES = {
    "ps": dict(band=torch.tensor([0, 2]), alpha=torch.tensor([0.3, 0.8], dtype=torch.float64)),
    "both": dict(band=torch.tensor([1, 2]), alpha=torch.tensor([0.6, 0.2], dtype=torch.float64),
                 alpha_r=torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3)),
                 seed=7),
}


def _f(backend, kw):
    return lambda t: fastfreq.spectral_augment(t, backend=backend, radius_scale=0.2,
                                               nfd_bands=((0, 1), (2, 2.5), (3, 3.5), (4, 4.5), (5, 6)),
                                               **kw)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_grad_and_jacrev_match_autograd(backend, case):
    f = _f(backend, CASES[case])
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    xr = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad((f(xr) * w).sum(), xr)
    torch.testing.assert_close(grad(lambda t: (f(t) * w).sum())(x), want, rtol=1e-10, atol=1e-10)
    jac = jacrev(f)(x[:1].expand(2, -1, -1, -1).contiguous())
    assert jac.shape == (2, 3, 8, 8) * 2 and torch.isfinite(jac).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_vmap_matches_a_loop(backend):
    f = _f(backend, CASES["both"])
    xs = torch.rand(3, 2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    # cpp draws its normals in the kernel: equal to the eager Philox to float32 rounding
    tol = 1e-5 if backend == "cpp" else 1e-10
    torch.testing.assert_close(vmap(f)(xs), torch.stack([f(x) for x in xs]), rtol=tol, atol=tol)


def test_a_parameter_that_requires_grad_is_told_it_gets_none():
    """d out / d alpha is not implemented: say so instead of a silent None."""
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    alpha = torch.tensor([0.5], requires_grad=True)
    with pytest.warns(UserWarning, match="alpha: requires grad, but gradients flow to x only"):
        out = fastfreq.power_suppress(x, torch.tensor([1]), alpha)
    gx, ga = torch.autograd.grad(out.sum(), (x, alpha), allow_unused=True)
    assert ga is None and gx is not None
