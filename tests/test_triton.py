"""What is particular to the Triton backend: its op (opcheck, fake tensors,
compile), precisions, noise statistics, errors and the auto fallback. Its
values against the reference run in tests/test_matrix.py with every backend.
Under Triton's interpreter on CPU here (TRITON_INTERPRET=1, set by conftest
without a GPU); compiled on a GPU."""
import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

import fastfreq
from fastfreq import reference as ref
from fastfreq.backends import ext, triton_kernel

from .test_backends import op_args as backend_op_args

pytestmark = pytest.mark.skipif(not triton_kernel.available(),
                                reason=f"no Triton backend: {triton_kernel.version_problem()}")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def op_args(seeded: bool):
    """The compiled-op arguments of test_backends, on the Triton device."""
    return tuple(a.to(DEVICE) if isinstance(a, torch.Tensor) else a
                 for a in backend_op_args(seeded=seeded))


@pytest.mark.parametrize("seeded", [False, True])
def test_opcheck(seeded):
    """The Triton op has the C++ op's schema (plus precision): the same opcheck."""
    torch.library.opcheck(torch.ops.fastfreq.spectral_augment_triton.default, op_args(seeded))


def test_same_schema_as_the_cpp_op():
    tri = torch.ops.fastfreq.spectral_augment_triton.default._schema
    names = [a.name for a in tri.arguments]
    assert names[-1] == "precision"
    if ext.available():
        cpp = torch.ops.fastfreq.spectral_augment.default._schema
        assert [(a.name, str(a.type)) for a in cpp.arguments] == \
            [(a.name, str(a.type)) for a in tri.arguments[:-1]]


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in op_args(True)]
        out = torch.ops.fastfreq.spectral_augment_triton(*args)
    assert out.shape == (2, 3, 10, 8) and out.dtype == torch.float32


def test_cpu_kernel_and_triton_draw_the_same_noise():
    if not ext.available():
        pytest.skip("fastfreq._C not built")
    x = torch.rand(2, 3, 16, 12)
    ar = torch.rand(2, 5)
    a = fastfreq.nfd(x, ar, seed=42, backend="cpp")
    b = fastfreq.nfd(x.to(DEVICE), ar.to(DEVICE), seed=42, backend="triton", precision="tf32x3")
    torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-5)


def test_in_kernel_noise_statistics_small():
    """Zero images: F(out) = R. Few planes here (the interpreter is slow); the
    large-sample version runs on GPUs below."""
    B, H, W, sigma = 48, 4, 4, 2.0
    out = fastfreq.nfd(torch.zeros(B, 1, H, W, device=DEVICE), torch.zeros(B, 5, device=DEVICE),
                       sigma=sigma, seed=3, backend="triton", precision="tf32x3")
    R = torch.fft.fft2(out.double().cpu())[:, 0]
    assert R.imag.abs().max() < 1e-4
    v = R.real.flatten()
    assert abs(v.mean()) < 5 * math.sqrt(sigma / len(v))
    assert abs(v.var() / sigma - 1) < 5 * math.sqrt(2 / len(v))


def test_errors():
    with pytest.raises(ValueError, match="images up to 64x64"):
        fastfreq.power_suppress(torch.rand(1, 1, 65, 8, device=DEVICE), 0, 0.5, backend="triton")
    with pytest.raises(ValueError, match="precision"):
        fastfreq.power_suppress(torch.rand(1, 1, 8, 8, device=DEVICE), 0, 0.5, backend="triton",
                                precision="fp8")


def test_auto_on_cpu_prefers_the_compiled_cpu_op_even_under_the_interpreter():
    """With TRITON_INTERPRET=1 Triton *supports* CPU tensors (this suite runs
    it there), yet auto must not send CPU work to the interpreter."""
    x = torch.zeros(1, 1, 8, 8)
    assert triton_kernel.supports(x) == triton_kernel.interpreted()
    assert fastfreq.resolve_backend("auto", x) == ("cpp" if ext.available() else "torch")


@pytest.mark.gpu
def test_gpu_auto_choice():
    """auto on CUDA: the measured choice for small images, never Triton above
    64x64 or for float64."""
    x = torch.zeros(1, 1, 40, 40, device="cuda")
    want = "triton" if triton_kernel.preferred_on_gpu(x) or not ext.has_cuda() else "cuda"
    assert fastfreq.resolve_backend("auto", x) == want
    big = torch.zeros(1, 1, 80, 80, device="cuda")
    assert fastfreq.resolve_backend("auto", big) == ("cuda" if ext.has_cuda() else "torch")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["ieee", "tf32x3", "tf32"])
@pytest.mark.parametrize("size", [32, 40, 64])
def test_gpu_precision_error_budget(precision, size):
    """Error against the reference relative to the value range: ieee/tf32x3 at
    float32 accuracy; the default tf32 (round-to-nearest operands) within half
    an 8-bit quantisation step, 0.5/255."""
    g = np.random.default_rng(7)
    B = 64
    x, ar, noise = g.random((B, 3, size, size)), g.random((B, 5)), g.standard_normal((B, 3, size, size // 2 + 1))
    band, alpha = np.arange(B) % 3, g.random(B)
    t = lambda a, dt=None: torch.as_tensor(a, device="cuda", dtype=dt)  # noqa: E731
    out = fastfreq.spectral_augment(t(x, torch.float32), t(band), t(alpha), t(ar), t(noise),
                                    backend="triton", precision=precision)
    want = ref.spectral_augment(x.astype(np.float32).astype(np.float64), band, alpha, ar, noise)
    err = np.abs(out.double().cpu().numpy() - want).max() / np.ptp(want)
    assert err < {"ieee": 2e-5, "tf32x3": 2e-5, "tf32": 0.5 / 255}[precision], err


@pytest.mark.gpu
def test_gpu_in_kernel_noise_statistics():
    B, C, H, W, sigma = 4000, 2, 8, 8, 2.0
    bands = ((0, 2), (2, 4), (4, 6))
    ar = torch.tensor([[1.0, 0.3, 0.0]], device="cuda").repeat(B, 1)
    out = fastfreq.nfd(torch.zeros(B, C, H, W, device="cuda"), ar, sigma=sigma, nfd_bands=bands,
                       seed=11, backend="triton", precision="tf32x3")
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


@pytest.mark.gpu
def test_gpu_no_host_sync_from_the_first_call():
    """Twiddles and curve tables are built on the device: even the first call
    (which fills the caches) does not synchronise with the host."""
    triton_kernel._CACHE.clear()
    x = torch.rand(8, 3, 24, 24, device="cuda")
    seed = torch.tensor([3], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fastfreq.spectral_augment(x, torch.zeros(8, dtype=torch.int64, device="cuda"),
                                        torch.rand(8, device="cuda"), torch.rand(8, 5, device="cuda"),
                                        seed=seed, backend="triton", check_values=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out).all()


def test_auto_falls_back_when_the_triton_kernel_fails(monkeypatch):
    """Under backend='auto' a Triton failure on a GPU warns once and falls back;
    an explicit backend='triton' raises. The real choice (_auto_cuda with its
    _triton_failure check) and the real _dispatch run: only the device test in
    front of them is bypassed (auto sends CUDA tensors to _auto_cuda, and this
    runs on CPU tensors under the interpreter), auto is made to prefer Triton,
    and the extension is made to lack CUDA so that the fallback is eager torch."""
    import fastfreq.functional as FF

    monkeypatch.setattr(FF, "_triton_failure", None)
    real_resolve = FF.resolve_backend
    monkeypatch.setattr(FF, "resolve_backend",
                        lambda backend, x: FF._auto_cuda(x) if backend == "auto" else real_resolve(backend, x))
    monkeypatch.setattr(FF.triton_kernel, "preferred_on_gpu", lambda x: True)
    monkeypatch.setattr(FF.ext, "has_cuda", lambda: False)
    calls = []

    def boom(*a, **k):
        calls.append(1)
        raise RuntimeError("PTX compile failed")

    monkeypatch.setattr(FF.triton_kernel, "spectral_augment", boom)
    x = torch.rand(2, 3, 8, 8, device=DEVICE)
    assert FF.resolve_backend("auto", x) == "triton"
    with pytest.warns(RuntimeWarning, match="Triton kernel failed.*PTX compile failed.*torch backend"):
        out = FF.power_suppress(x, 0, 0.5)
    torch.testing.assert_close(out, FF.power_suppress(x, 0, 0.5, backend="torch"))
    assert FF._triton_failure.startswith("RuntimeError: PTX compile failed")
    assert FF.resolve_backend("auto", x) == "torch"        # auto no longer picks it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)     # the fallback warned once, not on every call
        FF.power_suppress(x, 0, 0.5)
    assert len(calls) == 1
    with pytest.raises(RuntimeError, match="PTX"):
        FF.power_suppress(x, 0, 0.5, backend="triton")


@pytest.mark.parametrize("change, match", [
    (dict(noise=torch.randn(2, 3, 10, 8)), "noise must be floating of shape"),
    (dict(band=torch.tensor([0, 1], dtype=torch.int32)), "band must be int64"),
    (dict(alpha_r=torch.rand(2, 4)), r"alpha_r must be floating of shape \(2, 5\)"),
    (dict(alpha=None), "band and alpha must be given together"),
    (dict(seed=torch.tensor([1])), "exactly one of noise and seed"),
    (dict(x=torch.rand(2, 3, 10, 80)), r"H and W must be in \[2, 64\]"),
    (dict(edges=[]), "nfd_edges must hold"),
])
def test_op_checks_its_arguments(change, match):
    """Called directly (bypassing fastfreq.functional), the Triton op refuses
    arguments that would make the kernel read past a tensor."""
    x, band, alpha, ar, noise, seed, edges, sigma, rs = op_args(seeded=False)
    args = dict(x=x, band=band, alpha=alpha, alpha_r=ar, noise=noise, seed=seed, edges=edges)
    args.update({k: (v.to(DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in change.items()})
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastfreq.spectral_augment_triton(args["x"], args["band"], args["alpha"], args["alpha_r"],
                                                   args["noise"], args["seed"], args["edges"], sigma, rs)


@pytest.mark.parametrize("version", ["3.3.1", "3.0.0", "2.3.1+git1234", "unknown"])
def test_a_triton_older_than_3_4_is_refused(monkeypatch, version):
    """Before Triton 3.4, int64 offsets to tl.randn4x select another generator
    than our Philox: the backend must refuse such a Triton (a clear error for
    backend='triton'; auto and the backend list skip it), not add other noise."""
    monkeypatch.setattr(triton_kernel.triton, "__version__", version)
    x = torch.rand(1, 1, 8, 8, device=DEVICE)
    assert not triton_kernel.available() and not triton_kernel.supports(x)
    with pytest.raises(RuntimeError, match=rf"backend='triton': Triton {re.escape(version)} is older than 3\.4"):
        fastfreq.nfd(x, torch.rand(1, 5, device=DEVICE), seed=1, backend="triton")
    assert "triton" not in fastfreq.functional.available_backends(DEVICE)
    assert fastfreq.resolve_backend("auto", x) != "triton"


@pytest.mark.parametrize("version", ["3.4.0", "3.8.0", "3.10.1+cu130", "4.0.0"])
def test_triton_3_4_and_later_are_taken(monkeypatch, version):
    monkeypatch.setattr(triton_kernel.triton, "__version__", version)
    assert triton_kernel.available() and triton_kernel.version_problem() is None


def test_pyproject_pins_the_same_triton_bound():
    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    specs = [r for reqs in meta["project"]["optional-dependencies"].values() for r in reqs
             if re.match(r"triton\b", r)]
    want = ">={}.{}".format(*triton_kernel.MIN_TRITON)
    assert specs and all(r.replace(" ", "") == "triton" + want for r in specs), specs
