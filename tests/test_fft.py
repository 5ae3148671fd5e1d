"""The single-pass kernel's own FFT and plane phases (csrc/fft/), on the CPU.

The codelets and the five phases are ``__host__ __device__`` code: the
extension compiles them for the host too, and the hooks in
csrc/cpu/single_pass.cpp run them here exactly as the GPU does (every thread
of a block, phase by phase, in the order the barriers impose). Checked
against ``numpy.fft``:

* one line, every length 1..128, both directions, float32 and float64, in the
  run-time form and in the compile-time form for the lengths the host build
  instantiates;
* the half spectrum the row and column phases leave in shared memory, every
  H and every W up to the kernel's limit;
* the shared-memory discipline: no two threads write one word in a phase, no
  thread reads a word another thread writes in the same phase, nothing is
  read before it was written.

The whole op against the reference runs in tests/test_matrix.py
(``single_pass-cpu``).
"""
import numpy as np
import pytest
import torch

from fastfreq import reference as ref
from fastfreq.backends import ext
from fastfreq.constants import PAPER_BANDS, SINGLE_PASS_MAX_SIDE
from fastfreq.backends._contract import bands_to_edges

pytestmark = pytest.mark.skipif(not ext.available(), reason=f"fastfreq._C not built: {ext.LOAD_ERROR}")

# lengths with a compile-time instantiation on the host (csrc/cpu/single_pass.cpp ct_listed)
CT_LENGTHS = list(range(1, 17)) + [20, 24, 27, 30, 32, 36, 40, 45, 48, 49, 60, 61, 63, 64]
# relative error of one line over its scale: float32 round-off grows ~log n
LINE_TOL = {torch.float32: 2e-6, torch.float64: 1e-13}


def _line(n, dtype, seed):
    g = np.random.default_rng(seed)
    z = g.standard_normal(n) + 1j * g.standard_normal(n)
    return z, torch.tensor(np.stack([z.real, z.imag], axis=1), dtype=dtype)


def _fft_line(z, inverse, compile_time):
    out = ext._C.fft_line(z, inverse, compile_time).double().numpy()
    return out[:, 0] + 1j * out[:, 1]


def _rel(got, want):
    return np.abs(got - want).max() / max(np.abs(want).max(), 1e-300)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_run_time_line_every_length(dtype, inverse):
    """fft_rt against numpy for every n in 1..128 (mixed radix 8/4/2, the
    odd-prime codelets 3, 5, 7 and the generic odd step for 11, 13, ... 127)."""
    worst = {}
    for n in range(1, 129):
        z, t = _line(n, dtype, n)
        want = n * np.fft.ifft(z) if inverse else np.fft.fft(z)
        worst[n] = _rel(_fft_line(t, inverse, False), want)
    bad = {n: e for n, e in worst.items() if not e <= LINE_TOL[dtype]}
    assert not bad, f"lengths over {LINE_TOL[dtype]:g}: {bad}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("inverse", [False, True], ids=["forward", "inverse"])
def test_compile_time_line(dtype, inverse):
    """fft_ct<N> (constexpr twiddles, what the 32/40/64 kernels run)."""
    bad = {}
    for n in CT_LENGTHS:
        z, t = _line(n, dtype, 1000 + n)
        want = n * np.fft.ifft(z) if inverse else np.fft.fft(z)
        err = _rel(_fft_line(t, inverse, True), want)
        if not err <= LINE_TOL[dtype]:
            bad[n] = err
    assert not bad, f"lengths over {LINE_TOL[dtype]:g}: {bad}"


def test_line_hook_rejects_bad_input():
    with pytest.raises(RuntimeError, match=r"1 <= n <= 128"):
        ext._C.fft_line(torch.zeros(129, 2), False, False)
    with pytest.raises(RuntimeError, match=r"\(n, 2\) float32/float64"):
        ext._C.fft_line(torch.zeros(8, 3), False, False)
    with pytest.raises(RuntimeError, match="no compile-time instantiation"):
        ext._C.fft_line(torch.zeros(17, 2), False, True)


def _half_spectrum_error(H, W, dtype, batch=2, channels=3, seed=0):
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, channels, H, W))).to(dtype)
    got = ext._C.single_pass_rfft2(x).to(torch.complex128).numpy()
    want = np.fft.rfft2(x.double().numpy())
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("fixed", [5, 40], ids=lambda v: f"W{v}")
def test_row_and_column_phases_every_height(fixed):
    """Phases A and B give rfft2 for every H in 2..64 (float64: the run-time
    lines; odd and even H, the packed real columns 0 and W/2)."""
    errs = {H: _half_spectrum_error(H, fixed, torch.float64, seed=H) for H in range(2, SINGLE_PASS_MAX_SIDE + 1)}
    bad = {H: e for H, e in errs.items() if not e <= 1e-13}
    assert not bad, bad


@pytest.mark.parametrize("fixed", [7, 40], ids=lambda v: f"H{v}")
def test_row_and_column_phases_every_width(fixed):
    errs = {W: _half_spectrum_error(fixed, W, torch.float64, seed=W) for W in range(2, SINGLE_PASS_MAX_SIDE + 1)}
    bad = {W: e for W, e in errs.items() if not e <= 1e-13}
    assert not bad, bad


@pytest.mark.parametrize("side", [32, 40, 64])
def test_compile_time_planes_float32(side):
    """The float32 32/40/64 instantiations (register-resident lines) and a
    size next to them (run-time lines) give rfft2 to float32 round-off."""
    for H, W in [(side, side), (side - 1, side)]:
        assert _half_spectrum_error(H, W, torch.float32, batch=3) <= 1e-6, (H, W)


def _check(x, ps=True, nfd=True, planes_per_block=0, seed=0, noise=False):
    """The op with every shared access tracked; returns (out, counts)."""
    B = x.shape[0]
    g = torch.Generator().manual_seed(seed)
    band = torch.randint(0, 3, (B,), generator=g) if ps else None
    alpha = torch.rand(B, generator=g, dtype=torch.float64).to(x.dtype) if ps else None
    alpha_r = torch.rand(B, len(PAPER_BANDS), generator=g, dtype=torch.float64).to(x.dtype) if nfd else None
    H, W = x.shape[-2:]
    nz = torch.randn(B, x.shape[1], H, W // 2 + 1, generator=g, dtype=torch.float64) if nfd and noise else None
    sd = torch.tensor([1234], dtype=torch.int64) if nfd and not noise else None
    out, counts = ext._C.single_pass_check(x, band, alpha, alpha_r, nz, sd, bands_to_edges(PAPER_BANDS),
                                           0.7, 1.0, planes_per_block)
    return out, counts, (band, alpha, alpha_r, nz)


SHAPES = [(2, 2), (3, 5), (8, 6), (37, 29), (40, 40), (32, 32), (64, 64), (64, 17), (2, 64), (63, 63)]


@pytest.mark.parametrize("hw", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_shared_memory_discipline(hw):
    """No write conflicts, no read-after-write hazards within a phase and no
    uninitialised reads, for the default planes per block and for odd ones
    (a block's last planes past the batch end included)."""
    H, W = hw
    x = torch.randn(5, 3, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(H * W))
    for ppb in (0, 1, 3):
        for ps, nfd in [(True, True), (True, False), (False, True)]:
            _, counts, _ = _check(x, ps=ps, nfd=nfd, planes_per_block=ppb)
            assert (counts["write_conflicts"], counts["read_hazards"], counts["uninitialised_reads"]) == (0, 0, 0), \
                (ppb, ps, nfd, counts)


@pytest.mark.parametrize("hw", [(37, 29), (40, 40), (64, 64), (2, 3)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("noise", [False, True], ids=["philox", "noise"])
def test_tracked_run_matches_the_reference(hw, noise):
    """The tracked run is the op itself: its output equals the reference for
    the same parameters and noise (float64)."""
    H, W = hw
    x = torch.randn(4, 2, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    out, counts, (band, alpha, alpha_r, nz) = _check(x, noise=noise, planes_per_block=3)
    if nz is None:
        from fastfreq.philox import philox_normal
        nz = philox_normal(torch.tensor([1234]), (4, 2, H, W // 2 + 1)).double()
    want = ref.spectral_augment(x.numpy(), band.numpy(), alpha.numpy(), alpha_r.numpy(), nz.numpy(), 0.7)
    err = np.abs(out.numpy() - want).max() / np.abs(want).max()
    assert err <= 1e-5, err  # the Philox normals are float32 draws (NOISE_DRAW_BOUND)
    assert counts["planes_per_block"] == 3


def _ways(addresses):
    """Most addresses that share one of the 32 banks (1: conflict-free)."""
    return max(np.bincount(np.asarray(addresses) % 32, minlength=32))


def test_geometry_bank_conflicts_for_the_fixed_sizes():
    """Per warp of the launch, the row threads (word g P + l S + k) and the
    column threads (g P + r S + j) of the row and column phases hit distinct
    banks when the lines per plane L divide a warp (32, 64: L = 16, 32), and
    at most two threads share a bank otherwise (40: L = 20)."""
    for side in (32, 40, 64):
        _, counts, _ = _check(torch.zeros(1, 1, side, side))
        S, P, T = counts["row_stride"], counts["plane_stride"], counts["threads"]
        L = (side + 1) // 2
        assert S % 2 == 1 and S >= side // 2 + 1
        want = 1 if 32 % L == 0 else 2
        for w0 in range(0, T, 32):
            g, line = np.divmod(np.arange(w0, min(w0 + 32, T)), L)
            assert _ways(g * P + line * S) <= want, (side, "rows", w0)
            assert _ways(g * P + line) <= want, (side, "columns", w0)
