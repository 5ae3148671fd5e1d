"""The fused Triton kernel against the reference: under Triton's interpreter on
CPU here (TRITON_INTERPRET=1, set by conftest without a GPU), compiled on a GPU."""
import math

import numpy as np
import pytest
import torch

import fastfreq
from fastfreq import reference as ref
from fastfreq.backends import ext, triton_kernel

from .test_backends import assert_close

pytestmark = pytest.mark.skipif(not triton_kernel.available(),
                                reason=f"Triton not importable: {triton_kernel.IMPORT_ERROR}")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = [(1, 1, 2, 2), (2, 3, 8, 6), (2, 3, 32, 32), (1, 3, 40, 40), (1, 1, 37, 29)]


def inputs(shape, seed=0):
    g = np.random.default_rng(seed)
    B, C, H, W = shape
    return (g.random(shape), np.arange(B) % 3, g.uniform(0.2, 1.0, B), g.random((B, 5)),
            g.standard_normal((B, C, H, W // 2 + 1)))


def t(a, dtype=None):
    return torch.as_tensor(a, device=DEVICE, dtype=dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_explicit_noise_matches_reference(shape, dtype):
    x, band, alpha, ar, noise = inputs(shape)
    xt = t(x, dtype)
    out = fastfreq.spectral_augment(xt, t(band), t(alpha), t(ar), t(noise), 2.0, backend="triton",
                                    precision="ieee")
    want = ref.spectral_augment(xt.double().cpu().numpy(), band, alpha, ar, noise, 2.0)
    assert_close(out, want, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_in_kernel_noise_reproduces_the_explicit_draw(shape):
    """The in-kernel Philox draw equals the same seed's draw passed as a tensor."""
    x, band, alpha, ar, _ = inputs(shape, 1)
    B, C, H, W = shape
    seed = t([987654321], torch.int64)
    xt = t(x, torch.float32)
    inkernel = fastfreq.spectral_augment(xt, t(band), t(alpha), t(ar), sigma=1.5, seed=seed,
                                         backend="triton", precision="ieee")
    draw = fastfreq.philox.philox_normal(seed, (B, C, H, W // 2 + 1))
    explicit = fastfreq.spectral_augment(xt, t(band), t(alpha), t(ar), draw, 1.5, backend="triton",
                                         precision="ieee")
    torch.testing.assert_close(inkernel, explicit, rtol=0, atol=1e-5)
    want = ref.spectral_augment(x, band, alpha, ar, draw.double().cpu().numpy(), 1.5)
    assert_close(inkernel, want, torch.float32)


@pytest.mark.parametrize("band", [0, 1, 2])
def test_power_suppression_alone_each_band(band):
    x = np.random.default_rng(2).random((1, 2, 12, 10))
    out = fastfreq.power_suppress(t(x, torch.float32), band, 1.0, radius_scale=0.8, backend="triton")
    want = ref.power_suppress(x, band, 1.0, radius_scale=0.8)
    assert_close(out, want, torch.float32)


def test_generator_reproducibility_and_custom_bands():
    x = t(np.random.default_rng(3).random((2, 2, 10, 10)), torch.float32)
    ar = t(np.random.default_rng(3).random((2, 3)), torch.float32)
    bands = ((0, 2.5), (3.5, 5), (6, 9))

    def run(s):
        g = torch.Generator(device=DEVICE).manual_seed(s)
        return fastfreq.nfd(x, ar, nfd_bands=bands, generator=g, backend="triton")

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cpu_kernel_and_triton_draw_the_same_noise():
    if not ext.available():
        pytest.skip("fastfreq._C not built")
    x = torch.rand(2, 3, 16, 12)
    ar = torch.rand(2, 5)
    a = fastfreq.nfd(x, ar, seed=42, backend="cpp")
    b = fastfreq.nfd(x.to(DEVICE), ar.to(DEVICE), seed=42, backend="triton", precision="ieee")
    torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-5)


def test_in_kernel_noise_statistics_small():
    """Zero images: F(out) = R. Few planes here (the interpreter is slow); the
    large-sample version runs on GPUs below."""
    B, H, W, sigma = 48, 4, 4, 2.0
    ar = torch.zeros(B, 5)
    out = fastfreq.nfd(torch.zeros(B, 1, H, W, device=DEVICE), ar.to(DEVICE), sigma=sigma, seed=3,
                       backend="triton", precision="ieee")
    R = torch.fft.fft2(out.double().cpu())[:, 0]
    assert R.imag.abs().max() < 1e-4
    v = R.real.flatten()
    assert abs(v.mean()) < 5 * math.sqrt(sigma / len(v))
    assert abs(v.var() / sigma - 1) < 5 * math.sqrt(2 / len(v))


def test_errors():
    with pytest.raises(ValueError, match="images up to 64x64"):
        fastfreq.power_suppress(torch.rand(1, 1, 65, 8, device=DEVICE), 0, 0.5, backend="triton")
    with pytest.raises(ValueError, match="precision"):
        triton_kernel.spectral_augment(torch.rand(1, 1, 8, 8), None, None, None, None, 1.0, 1.0,
                                       ref.PAPER_BANDS, None, precision="fp8")


def test_auto_prefers_triton_on_gpu_only():
    x = torch.zeros(1, 1, 8, 8)
    assert fastfreq.resolve_backend("auto", x) in ("cpp", "torch")


@pytest.mark.gpu
def test_gpu_auto_picks_triton_then_cuda():
    assert fastfreq.resolve_backend("auto", torch.zeros(1, 1, 40, 40, device="cuda")) == "triton"
    big = torch.zeros(1, 1, 80, 80, device="cuda")
    assert fastfreq.resolve_backend("auto", big) == ("cuda" if ext.has_cuda() else "torch")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["ieee", "tf32x3", "tf32"])
def test_gpu_precisions_error(precision):
    """Error against the reference per precision, relative to the value range."""
    x, band, alpha, ar, noise = inputs((64, 3, 40, 40), 7)
    out = fastfreq.spectral_augment(t(x, torch.float32), t(band), t(alpha), t(ar), t(noise),
                                    backend="triton", precision=precision)
    want = ref.spectral_augment(x, band, alpha, ar, noise)
    err = np.abs(out.double().cpu().numpy() - want).max() / np.ptp(want)
    assert err < {"ieee": 2e-5, "tf32x3": 2e-5, "tf32": 1e-2}[precision]


@pytest.mark.gpu
def test_gpu_in_kernel_noise_statistics():
    B, C, H, W, sigma = 4000, 2, 8, 8, 2.0
    bands = ((0, 2), (2, 4), (4, 6))
    ar = torch.tensor([[1.0, 0.3, 0.0]], device="cuda").repeat(B, 1)
    out = fastfreq.nfd(torch.zeros(B, C, H, W, device="cuda"), ar, sigma=sigma, nfd_bands=bands,
                       seed=11, backend="triton", precision="ieee")
    R = torch.fft.fft2(out.double()).real.cpu().numpy()
    want = sigma * np.clip(1 - ref.control_matrix(ar[:1].cpu().numpy(), H, W, nfd_bands=bands)[0], 0, None)
    pos = want > 0
    assert np.abs(R.var(axis=0)[:, pos] / want[pos] - 1).max() < 5 * math.sqrt(2 / B)
    assert np.abs(R.mean(axis=0)).max() < 5 * math.sqrt(sigma / B)
    c = np.corrcoef(R[:, 0, 2, 3], R[:, 1, 2, 3])[0, 1]
    assert abs(c) < 5 / math.sqrt(B)


@pytest.mark.gpu
def test_gpu_compile_sees_the_triton_op():
    x = torch.rand(4, 3, 40, 40, device="cuda")
    band = torch.tensor([0, 1, 2, 0], device="cuda")
    alpha = torch.rand(4, device="cuda")

    def f(x):
        return fastfreq.power_suppress(x, band, alpha, backend="triton", check_values=False) * 2

    torch.testing.assert_close(torch.compile(f, fullgraph=True)(x), f(x))


def test_auto_falls_back_when_the_triton_kernel_fails(monkeypatch):
    """Under backend='auto' a Triton failure on a GPU warns once and falls back;
    an explicit backend='triton' raises."""
    import fastfreq.functional as F

    monkeypatch.setattr(F, "_TRITON_BROKEN", [])
    monkeypatch.setattr(F, "resolve_backend",
                        lambda backend, x: "triton" if not F._TRITON_BROKEN else "torch")

    def boom(*a, **k):
        raise RuntimeError("PTX compile failed")

    monkeypatch.setattr(F.triton_kernel, "spectral_augment", boom)
    x = torch.rand(2, 3, 8, 8)
    with pytest.warns(RuntimeWarning, match="Triton kernel failed.*PTX compile failed"):
        out = F.power_suppress(x, 0, 0.5)
    torch.testing.assert_close(out, F.power_suppress(x, 0, 0.5, backend="torch"))
    monkeypatch.setattr(F, "resolve_backend", lambda backend, x: "triton")
    with pytest.raises(RuntimeError, match="PTX"):
        F.power_suppress(x, 0, 0.5, backend="triton")
