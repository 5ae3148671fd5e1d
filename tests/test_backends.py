"""The functional API and the compiled op: dispatch, opcheck, compile, Philox,
bad input. (The backend-against-reference matrix is tests/test_matrix.py.)"""
import math

import numpy as np
import pytest
import torch

import fastfreq
from fastfreq import reference as ref
from fastfreq.backends import ext
from fastfreq.backends import triton_kernel


def test_three_dim_input_and_letter_band():
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    out = fastfreq.power_suppress(x, "M", 1.0, backend="torch")
    want = ref.power_suppress(x[None].numpy(), 1, 1.0)[0]
    assert out.shape == x.shape
    assert np.allclose(out.numpy(), want)


def test_numpy_backend_is_the_reference():
    g = np.random.default_rng(0)
    x, ar, noise = g.random((2, 3, 8, 8)), g.random((2, 5)), g.standard_normal((2, 3, 8, 5))
    out = fastfreq.spectral_augment(torch.from_numpy(x), torch.tensor([0, 2]), torch.tensor([0.4, 0.9], dtype=torch.float64),
                                    torch.from_numpy(ar), torch.from_numpy(noise), backend="numpy")
    want = ref.spectral_augment(x, np.array([0, 2]), np.array([0.4, 0.9]), ar, noise)
    assert np.array_equal(out.numpy(), want)


def test_auto_resolution():
    x = torch.zeros(1, 1, 4, 4)
    assert fastfreq.resolve_backend("auto", x) == ("cpp" if ext.available() else "torch")


# ------------------------------------------------------------ compiled op
needs_ext = pytest.mark.skipif(not ext.available(), reason="fastfreq._C not built")


@needs_ext
@pytest.mark.parametrize("nfd", [False, True])
def test_cpp_with_grad_over_several_chunks_and_threads(nfd):
    """A batch of several chunks (13 images of 40x40x3 float32 each) on 2
    threads, with x requiring grad: the pool's threads run the FFTs outside
    autograd (they once went through it there and fft_irfft2_out raised), the
    values are those without grad, and the gradient is the torch backend's."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(3)
        x = torch.rand(40, 3, 40, 40, generator=g)
        band = torch.randint(0, 3, (40,), generator=g)
        alpha = torch.rand(40, generator=g)
        kw = dict(alpha_r=torch.rand(40, 5, generator=g), seed=11) if nfd else {}
        want = fastfreq.spectral_augment(x, band, alpha, backend="cpp", **kw)
        grads = []
        for backend in ("cpp", "torch"):
            xg = x.clone().requires_grad_()
            out = fastfreq.spectral_augment(xg, band, alpha, backend=backend, **kw)
            if backend == "cpp":
                assert torch.equal(out.detach(), want)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
            grads.append(xg.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def op_args(B=2, C=3, H=10, W=8, seeded=False):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, C, H, W, generator=g)
    band = torch.tensor([0, 2])[:B]
    alpha = torch.rand(B, generator=g)
    ar = torch.rand(B, 5, generator=g)
    noise = None if seeded else torch.randn(B, C, H, W // 2 + 1, generator=g)
    seed = torch.tensor([42]) if seeded else None
    edges = [float(v) for p in ref.PAPER_BANDS for v in p]
    return (x, band, alpha, ar, noise, seed, edges, 1.0, 1.0)


@needs_ext
@pytest.mark.parametrize("seeded", [False, True])
def test_opcheck(seeded):
    torch.library.opcheck(torch.ops.fastfreq.spectral_augment.default, op_args(seeded=seeded))


@needs_ext
def test_torch_compile_fullgraph():
    args = op_args()

    def f(x, band, alpha, ar, noise):
        return torch.ops.fastfreq.spectral_augment(x, band, alpha, ar, noise, None, args[6], 1.0, 1.0) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args[:5]), f(*args[:5]))


@needs_ext
def test_in_kernel_noise_is_the_explicit_philox_draw():
    x, band, alpha, ar, _, seed, edges, sigma, rs = op_args(seeded=True)
    inkernel = torch.ops.fastfreq.spectral_augment(x, band, alpha, ar, None, seed, edges, sigma, rs)
    draw = ext.philox_normal(seed, (2, 3, 10, 5))
    explicit = fastfreq.spectral_augment(x, band, alpha, ar, draw, backend="cpp")
    assert torch.equal(inkernel, explicit)
    want = ref.spectral_augment(x.double().numpy(), band.numpy(), alpha.double().numpy(),
                                ar.double().numpy(), draw.double().numpy())
    assert np.abs(inkernel.double().numpy() - want).max() < 1e-5


@needs_ext
def test_philox_draws_are_standard_normal():
    z = ext.philox_normal(torch.tensor([3]), (400_000,)).double().numpy()
    n = len(z)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    # a few quantiles of N(0, 1)
    for q, v in [(0.025, -1.959964), (0.16, -0.994458), (0.5, 0.0), (0.84, 0.994458), (0.975, 1.959964)]:
        assert abs(np.quantile(z, q) - v) < 0.02
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)
    # reproducible for a seed, different for another
    assert torch.equal(ext.philox_normal(torch.tensor([3]), (16,)), ext.philox_normal(torch.tensor([3]), (16,)))
    assert not torch.equal(ext.philox_normal(torch.tensor([3]), (16,)), ext.philox_normal(torch.tensor([4]), (16,)))


@needs_ext
def test_in_kernel_noise_statistics():
    """Zero images: F(out) = R, so the in-kernel noise can be read back."""
    B, C, H, W, sigma = 3000, 2, 8, 8, 2.0
    bands = ((0, 2), (2, 4), (4, 6))
    ar = torch.tensor([[1.0, 0.3, 0.0]]).repeat(B, 1)
    out = fastfreq.nfd(torch.zeros(B, C, H, W, dtype=torch.float64), ar, sigma=sigma, nfd_bands=bands,
                       generator=torch.Generator().manual_seed(5), backend="cpp")
    R = torch.fft.fft2(out)
    assert R.imag.abs().max() < 1e-9   # Hermitian
    R = R.real.numpy()
    want = sigma * np.clip(1 - ref.control_matrix(ar[:1].numpy(), H, W, nfd_bands=bands)[0], 0, None)
    var = R.var(axis=0)
    pos = want > 0
    assert np.abs(var[:, pos] / want[pos] - 1).max() < 5 * math.sqrt(2 / B)
    assert np.abs(R.mean(axis=0)).max() < 5 * math.sqrt(sigma / B)
    # channels and images are independent
    c = np.corrcoef(R[:, 0, 2, 3], R[:, 1, 2, 3])[0, 1]
    i = np.corrcoef(R[:-1, 0, 2, 3], R[1:, 0, 2, 3])[0, 1]
    assert abs(c) < 5 / math.sqrt(B) and abs(i) < 5 / math.sqrt(B)


# --------------------------------------------------------------- bad input
def good():
    return dict(x=torch.rand(2, 3, 8, 8), band=torch.tensor([0, 1]), alpha=torch.tensor([0.2, 0.5]),
                alpha_r=torch.rand(2, 5), noise=torch.randn(2, 3, 8, 5))


@pytest.mark.parametrize("change, exc, match", [
    (dict(x=torch.zeros(2, 3, 8, 8, dtype=torch.int32)), TypeError, "x: expected float"),
    (dict(x=torch.zeros(1, 2, 3, 8, 8)), ValueError, "x: expected shape"),
    (dict(x=torch.zeros(2, 3, 1, 8)), ValueError, "H: image sizes"),
    (dict(band=torch.tensor([0, 3])), ValueError, r"band: expected values in \[0, 2\]"),
    (dict(band=torch.tensor([0.0, 1.0])), TypeError, "band: expected integer"),
    (dict(band=torch.tensor([0, 1, 2])), ValueError, r"band: expected shape \(2,\)"),
    (dict(band="X"), ValueError, "band: expected one of"),
    (dict(alpha=torch.tensor([0.2, 1.5])), ValueError, "alpha: expected values in"),
    (dict(alpha=torch.tensor([0.2, float("nan")])), ValueError, "alpha: expected finite"),
    (dict(alpha=None), ValueError, "band, alpha"),
    (dict(alpha_r=torch.rand(2, 4)), ValueError, r"alpha_r: expected shape \(2, 5\)"),
    (dict(alpha_r=torch.full((2, 5), -0.1)), ValueError, "alpha_r: expected values"),
    (dict(noise=torch.randn(2, 3, 8, 8)), ValueError, "noise: expected the half-spectrum shape"),
    (dict(noise=torch.full((2, 3, 8, 5), float("inf"))), ValueError, "noise: expected finite"),
    (dict(sigma=-1.0), ValueError, "sigma"),
    (dict(sigma=float("nan")), ValueError, "sigma"),
    (dict(radius_scale=-2.0), ValueError, "radius_scale"),
    (dict(nfd_bands=((0, 9),)), ValueError, r"alpha_r: expected shape \(2, 1\)"),
    (dict(generator="seed"), TypeError, "generator"),
    (dict(backend="fpga"), ValueError, "backend: expected one of"),
])
def test_bad_input(change, exc, match):
    args = good()
    args.update(change)
    x = args.pop("x")
    with pytest.raises(exc, match=match):
        fastfreq.spectral_augment(x, **args)


def test_backend_device_mismatch_errors():
    """Each way backend='cuda' / 'cpp' can be wrong for a CPU tensor has its own
    error, and the test expects exactly the one this build must give."""
    x = torch.rand(1, 1, 8, 8)
    if ext.has_cuda():
        with pytest.raises(ValueError, match=r"backend='cuda' runs on CUDA tensors, x is on cpu"):
            fastfreq.power_suppress(x, 0, 0.5, backend="cuda")
    elif ext.available():
        with pytest.raises(RuntimeError, match="fastfreq._C was built without its CUDA part"):
            fastfreq.power_suppress(x, 0, 0.5, backend="cuda")
    else:
        with pytest.raises(RuntimeError, match="pip install --no-build-isolation"):
            fastfreq.power_suppress(x, 0, 0.5, backend="cpp")
    if torch.cuda.is_available() and ext.available():
        with pytest.raises(ValueError, match=r"backend='cpp' runs on CPU tensors, x is on cuda"):
            fastfreq.power_suppress(x.cuda(), 0, 0.5, backend="cpp")


@needs_ext
@pytest.mark.parametrize("change, match", [
    (dict(noise=torch.randn(2, 3, 8, 8)), "noise must be floating of shape"),
    (dict(alpha=torch.tensor([0.5, 0.2, 0.1])), "alpha must be floating of shape"),
    (dict(alpha_r=torch.rand(2, 4)), "alpha_r must be floating of shape"),
    (dict(band=torch.tensor([0, 1], dtype=torch.int32)), "band must be int64"),
])
def test_cpp_validates_without_python_checks(change, match):
    """The C++ op checks the structure of its inputs itself (values out of range
    give NaN images, the contract tested in test_matrix.py)."""
    args = good()
    args.update(change)
    edges = [float(v) for p in ref.PAPER_BANDS for v in p]
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastfreq.spectral_augment(args["x"], args["band"], args["alpha"], args["alpha_r"],
                                            args["noise"], None, edges, 1.0, 1.0)


@needs_ext
def test_cpp_rejects_missing_noise_and_seed():
    a = good()
    with pytest.raises(RuntimeError, match="exactly one of noise and seed"):
        torch.ops.fastfreq.spectral_augment(a["x"], None, None, a["alpha_r"], None, None,
                                            [0.0, 9.0] * 5, 1.0, 1.0)


@pytest.mark.gpu
def test_device_mismatch_on_gpu():
    x = torch.rand(2, 3, 8, 8, device="cuda")
    with pytest.raises(ValueError, match="alpha: is on cpu but x is on cuda"):
        fastfreq.power_suppress(x, torch.tensor([0, 1], device="cuda"), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="generator: is on cpu"):
        fastfreq.nfd(x, torch.rand(2, 5, device="cuda"), generator=torch.Generator())


@pytest.mark.gpu
@needs_ext
def test_cuda_in_kernel_noise_matches_cpu():
    """CPU and CUDA kernels draw the same Philox noise for the same seed."""
    args = list(op_args(seeded=True))
    cpu = torch.ops.fastfreq.spectral_augment(*args)
    gpu_args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    gpu = torch.ops.fastfreq.spectral_augment(*gpu_args)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)


@pytest.mark.gpu
@needs_ext
def test_cuda_compile_fullgraph():
    args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in op_args()]

    def f(x, band, alpha, ar, noise):
        return torch.ops.fastfreq.spectral_augment(x, band, alpha, ar, noise, None, args[6], 1.0, 1.0) + 1

    torch.testing.assert_close(torch.compile(f, fullgraph=True)(*args[:5]), f(*args[:5]))


# ---------------------------------------------------------------- Philox, bit for bit
PHILOX_SEEDS = [0, 1, 42, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, -1, -2 ** 63, -123456789012345]
PHILOX_COUNTERS = [0, 1, 2, 3, 4, 1000, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7]


@pytest.mark.skipif(not ext.available(), reason="fastfreq._C not built")
def test_python_philox_words_equal_the_compiled_ones_bit_for_bit():
    """fastfreq.philox (tensor ops) and csrc/spectral_common.h's
    philox4x32_10 give the same four uint32 words for every (counter, seed),
    and the same uniforms (uint_to_unit) for those words."""
    from fastfreq import philox

    for seed in PHILOX_SEEDS:
        got = philox.philox4x32_10(torch.tensor(PHILOX_COUNTERS, dtype=torch.int64),
                                   torch.tensor([seed]))
        for i, c in enumerate(PHILOX_COUNTERS):
            want = ext._C.philox_words(c, seed)
            assert tuple(int(w[i]) for w in got) == want, (seed, c)
            for w in want:
                assert philox._unit(torch.tensor([w])).item() == ext._C.uint_to_unit(w)


@pytest.mark.skipif(not ext.available(), reason="fastfreq._C not built")
def test_per_bin_draw_equals_the_row_fill():
    """normal_at (the CUDA kernel's per-bin draw) gives, bit for bit, the
    normals the CPU kernel fills whole rows with (philox_normal op)."""
    for seed in (0, 7, -3, 2 ** 40 + 1):
        row = ext.philox_normal(torch.tensor([seed]), (3, 9))  # rows of 9: 3 groups of 4, padded
        for r in range(3):
            for k in range(9):
                assert ext._C.normal_at(r * 12 + k, seed) == row[r, k].item(), (seed, r, k)


@pytest.mark.skipif(not triton_kernel.available(), reason="Triton not importable")
def test_python_philox_words_equal_tritons_bit_for_bit():
    """... and Triton's tl.randint4x (what the Triton kernel's tl.randn4x
    draws from), compiled on a GPU, under the interpreter on CPU."""
    import triton
    import triton.language as tl

    from fastfreq import philox

    @triton.jit
    def words(seed, out_ptr, N: tl.constexpr):
        offs = tl.arange(0, N)
        a, b, c, d = tl.randint4x(seed, offs.to(tl.uint64) + 4294967290)
        tl.store(out_ptr + offs * 4 + 0, a)
        tl.store(out_ptr + offs * 4 + 1, b)
        tl.store(out_ptr + offs * 4 + 2, c)
        tl.store(out_ptr + offs * 4 + 3, d)

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    N = 16
    for seed in (0, 42, 2 ** 32 + 5, -7):
        out = torch.empty(N * 4, dtype=torch.int32, device=dev)
        words[(1,)](seed, out, N=N)
        got = out.cpu().to(torch.int64) & 0xFFFFFFFF
        want = philox.philox4x32_10(torch.arange(N, dtype=torch.int64) + 4294967290, torch.tensor([seed]))
        assert torch.equal(got.reshape(N, 4), torch.stack(want, dim=1)), seed
