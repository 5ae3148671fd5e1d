"""channels_last in, channels_last out: the functional API and the modules
return the input's memory format (as torch's own elementwise ops and
convolutions do), with the values of the contiguous input, on every backend,
and gradients still flow."""
import pytest
import torch

import fastfreq
from fastfreq.transforms import NFD, PowerSuppression, SpectralAugment

from .conftest import backend_params

CL = torch.channels_last


def _is_cl(t):
    """channels_last and not also plain contiguous (C = 1 or H = W = 1 would be both)."""
    return t.is_contiguous(memory_format=CL) and not t.is_contiguous()


def _images(device, dtype=torch.float32, shape=(2, 3, 40, 40), seed=0):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.to(device=device, dtype=dtype)


def _params(B, device, n_bands=5):
    g = torch.Generator().manual_seed(1)
    return dict(band=(torch.arange(B) % 3).to(device),
                alpha=torch.rand(B, generator=g, dtype=torch.float64).to(device, torch.float32),
                alpha_r=torch.rand(B, n_bands, generator=g, dtype=torch.float64).to(device,
                                                                                  torch.float32),
                seed=torch.tensor([12345], device=device))


def _calls(kw):
    return {
        "spectral_augment": lambda x, b: fastfreq.spectral_augment(x, **kw, backend=b),
        "power_suppress": lambda x, b: fastfreq.power_suppress(x, kw["band"], kw["alpha"], backend=b),
        "nfd": lambda x, b: fastfreq.nfd(x, kw["alpha_r"], sigma=1.5, seed=kw["seed"], backend=b),
    }


@pytest.mark.parametrize("bd", backend_params())
@pytest.mark.parametrize("op", ["spectral_augment", "power_suppress", "nfd"])
def test_functional_keeps_channels_last(bd, op):
    backend, device = bd
    x = _images(device)
    xl = x.contiguous(memory_format=CL)
    assert _is_cl(xl)
    call = _calls(_params(x.shape[0], device))[op]
    want, got = call(x, backend), call(xl, backend)
    assert _is_cl(got), f"{op}/{backend}: strides {got.stride()}, channels_last input"
    assert want.is_contiguous()
    # the same computation on the same values: the layout changes nothing
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("bd", backend_params())
def test_channels_last_gradients(bd):
    """autograd through the layout change: the input gradient equals the
    contiguous input's (and is the gradient of a channels_last leaf)."""
    backend, device = bd
    x = _images(device)
    kw = _params(x.shape[0], device)
    w = _images(device, seed=7)  # a weighting that makes every output element matter
    grads = []
    for leaf in (x.clone(), x.contiguous(memory_format=CL)):
        leaf.requires_grad_(True)
        out = fastfreq.spectral_augment(leaf, **kw, backend=backend)
        (out * w).sum().backward()
        grads.append(leaf.grad)
    assert _is_cl(out)
    assert grads[1].shape == x.shape and torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bd", backend_params(numpy=False))
@pytest.mark.parametrize("make", [
    lambda b: PowerSuppression(p=0.5, backend=b),
    lambda b: NFD(sigma=1.0, p=0.5, backend=b),
    lambda b: SpectralAugment(ps_p=0.5, nfd_p=0.5, backend=b),
], ids=["PowerSuppression", "NFD", "SpectralAugment"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_modules_keep_channels_last(bd, make, dtype):
    """p = 0.5: applied and passed-through images in one batch (the
    torch.where that mixes them keeps the format too); uint8 round trip."""
    backend, device = bd
    x = _images(device, shape=(6, 3, 40, 40))
    x = (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x
    xl = x.contiguous(memory_format=CL)
    aug = make(backend)
    torch.manual_seed(0)
    got = aug(xl)
    want = aug(x, params=aug.last_params)
    assert got.dtype == dtype and _is_cl(got), f"strides {got.stride()}"
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # a structure: the image inside keeps its format, the label passes through
    img, label = aug((xl, torch.arange(6)), params=aug.last_params)
    assert _is_cl(img) and torch.equal(img, got) and torch.equal(label, torch.arange(6))


@pytest.mark.parametrize("bd", backend_params(numpy=False)[:2])
def test_other_layouts_come_back_contiguous(bd):
    """Only channels_last is kept: contiguous stays contiguous, and a strided
    view (here a transposed buffer) comes back as a fresh contiguous tensor."""
    backend, device = bd
    x = _images(device)
    kw = _params(x.shape[0], device)
    assert fastfreq.spectral_augment(x, **kw, backend=backend).is_contiguous()
    xt = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert fastfreq.spectral_augment(xt, **kw, backend=backend).is_contiguous()
    one = _images(device, shape=(2, 1, 40, 40))  # C = 1: contiguous and channels_last at once
    assert fastfreq.spectral_augment(one.contiguous(memory_format=CL), **_params(2, device),
                                     backend=backend).is_contiguous()
