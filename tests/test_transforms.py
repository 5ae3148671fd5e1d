"""Augmentation modules: parameter distributions, p, same_on_batch, replay, determinism."""
import numpy as np
import pytest
import torch

import fastfreq
from fastfreq import reference as ref
from fastfreq.bands import equal_coverage_bands
from fastfreq.constants import NOISE_DRAW_BOUND
from fastfreq.philox import philox_normal
from fastfreq.transforms import NFD, PowerSuppression, SpectralAugment, sample_control_weights

from .test_matrix import assert_close

# the paper's five NFD bands for 40x40 images (eq. 13 edges)
PAPER_BANDS = ((0, 9), (10, 13), (14, 17), (18, 20), (21, 29))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _nfd_bands(nfd, H, W, dtype):
    """The module's band edges as its compute holds them: float32 images take
    them in float32 (non-integer edges, as equal-coverage ones are, then shift
    the ramps: 1.6e-5 of the range at 32x32, on torch and cpp alike)."""
    if isinstance(nfd.bands, str):
        bands = PAPER_BANDS if nfd.bands == "paper" else equal_coverage_bands(H, W)
    else:
        bands = nfd.bands
    if dtype == torch.float64:
        return bands
    return tuple((float(np.float32(a)), float(np.float32(b))) for a, b in bands)


def module_reference(m, x, params):
    """What module ``m`` must return for its drawn ``params``, computed with
    fastfreq.reference (NFD's noise: the Philox normals of the drawn seed):
    suppression where ps is applied, NFD of the suppressed spectrum where nfd
    is applied, the image itself elsewhere."""
    x64 = x.double().numpy()
    x64 = x64[None] if x64.ndim == 3 else x64
    B, C, H, W = x64.shape

    def where(applied, a, b):
        return np.where(applied.numpy()[:, None, None, None], a, b)

    def ps(p, mod):
        return where(p["applied"], ref.power_suppress(x64, p["band"].numpy(), p["alpha"].numpy(),
                                                      radius_scale=mod.radius_scale), x64)

    def nfd_kw(p, mod):
        return dict(alpha_r=p["alpha_r"].numpy(), sigma=mod.sigma,
                    nfd_bands=_nfd_bands(mod, H, W, x.dtype),
                    noise=philox_normal(p["seed"], (B, C, H, W // 2 + 1)).double().numpy())

    if isinstance(m, PowerSuppression):
        out = ps(params, m)
    elif isinstance(m, NFD):
        out = where(params["applied"], ref.spectral_augment(x64, **nfd_kw(params, m)), x64)
    elif m.nfd.p == 0 or m.nfd.sigma == 0:
        out = ps(params["ps"], m.ps)
    else:
        p = params["ps"]
        both = ref.spectral_augment(x64, p["band"].numpy(), p["alpha"].numpy(),
                                    radius_scale=m.ps.radius_scale, **nfd_kw(params["nfd"], m.nfd))
        out = where(params["nfd"]["applied"], both, ps(p, m.ps))
    return out[0] if x.dim() == 3 else out


def assert_module_output(out, m, x, params):
    """out against module_reference, at the matrix's tolerance for the backend
    the module ran on."""
    backend = fastfreq.resolve_backend(m.backend, x if x.dim() == 4 else x[None])
    assert_close(out, module_reference(m, x, params), x.dtype, backend, default_precision=True)


def test_power_suppression_param_distribution():
    ps = PowerSuppression(p=0.5, bands=("L", "H"), alpha=(0.2, 0.6), generator=gen())
    p = ps.sample_params(20000)
    applied = p["applied"]
    assert abs(applied.float().mean() - 0.5) < 0.02
    assert set(p["band"].unique().tolist()) == {0, 2}
    assert abs((p["band"] == 0).float().mean() - 0.5) < 0.02
    a = p["alpha"][applied]
    assert a.min() >= 0.2 and a.max() <= 0.6
    assert abs(a.mean() - 0.4) < 0.01
    assert torch.all(p["alpha"][~applied] == 0)


def test_control_weights_rule():
    w = sample_control_weights(5000, 5, generator=gen(1))
    frac = (w > 0) & (w < 1)
    assert torch.all(frac.sum(1) == 1)
    assert set(w[~frac].unique().tolist()) <= {0.0, 1.0}
    assert abs(w[~frac].mean() - 0.5) < 0.02
    counts = torch.bincount(frac.float().argmax(1), minlength=5).float() / 5000
    assert torch.all((counts - 0.2).abs() < 0.03)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_p_extremes(p):
    x = torch.rand(6, 3, 16, 16)
    ps = PowerSuppression(p=p, alpha=(1.0, 1.0), generator=gen())
    out = ps(x)
    params = ps.last_params
    if p == 0:
        assert torch.equal(out, x) and not params["applied"].any()
    else:
        assert params["applied"].all() and not torch.allclose(out, x, atol=1e-3)
        assert_module_output(out, ps, x, params)


def test_applied_samples_match_functional():
    x = torch.rand(8, 3, 16, 16, dtype=torch.float64)
    ps = PowerSuppression(p=0.5, generator=gen(3))
    out = ps(x)
    params = ps.last_params
    want = ref.power_suppress(x.numpy(), params["band"].numpy(), params["alpha"].numpy())
    assert np.allclose(out.numpy(), want, atol=1e-10)
    assert torch.equal(out[~params["applied"]], x[~params["applied"]])


def test_same_on_batch():
    ps = PowerSuppression(p=0.7, same_on_batch=True, generator=gen())
    p = ps.sample_params(10)
    for k in ("applied", "band", "alpha"):
        assert torch.all(p[k] == p[k][0])
    nf = NFD(same_on_batch=True, generator=gen())
    q = nf.sample_params(10)
    assert torch.all(q["alpha_r"] == q["alpha_r"][0])


@pytest.mark.parametrize("module", [
    lambda: PowerSuppression(p=0.6, generator=gen(4)),
    lambda: NFD(sigma=2.0, p=0.7, generator=gen(4)),
    # a seed whose 8 images hold all four (suppressed, NFD) cases (the in-op
    # draws of issue 23; gen(4) happens to miss one)
    lambda: SpectralAugment(ps_p=0.5, sigma=1.5, nfd_p=0.8, generator=gen(2)),
    lambda: SpectralAugment(ps_p=0.5, sigma=1.5, generator=gen(4), backend="torch"),
])
def test_replay_and_determinism(module):
    x = torch.rand(8, 3, 20, 20)
    m = module()
    out = m(x)
    params = m.last_params
    if isinstance(m, SpectralAugment) and 0 < m.nfd.p < 1:
        # the draw holds every (suppressed, NFD) combination the output is checked for
        pairs = zip(params["ps"]["applied"].tolist(), params["nfd"]["applied"].tolist())
        assert set(pairs) == {(False, False), (False, True), (True, False), (True, True)}
    assert_module_output(out, m, x, params)
    again = m(x, params=params)
    assert torch.equal(out, again)
    out2 = module()(x)  # fresh module, same generator seed
    assert torch.equal(out, out2)
    out3 = m(x)  # next draw differs
    assert not torch.equal(out, out3)


def test_single_image_input():
    """A (C, H, W) image is a batch of one: (1,) params, a (C, H, W) result
    that is the reference's for them."""
    x = torch.rand(3, 16, 16)
    m = SpectralAugment(ps_p=1.0, generator=gen())
    out = m(x)
    params = m.last_params
    assert out.shape == x.shape
    assert params["ps"]["band"].shape == (1,) and params["nfd"]["alpha_r"].shape == (1, 5)
    assert_module_output(out, m, x, params)


def test_spectral_augment_is_ps_then_nfd():
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    m = SpectralAugment(ps_p=1.0, sigma=2.0, generator=gen(5), backend="torch")
    out = m(x)
    params = m.last_params
    seed = params["nfd"]["seed"]
    from fastfreq.philox import philox_normal
    noise = philox_normal(seed, (4, 3, 16, 9)).double().numpy()
    want = ref.spectral_augment(x.numpy(), params["ps"]["band"].numpy(), params["ps"]["alpha"].numpy(),
                                params["nfd"]["alpha_r"].numpy(), noise, 2.0)
    assert np.allclose(out.numpy(), want, atol=1e-9)


def test_nfd_replay_is_the_same_on_every_backend():
    x = torch.rand(3, 3, 16, 16)
    nf = NFD(generator=gen(6))
    params = nf.sample_params(3, size=(16, 16))
    outs = []
    for backend in ("torch", "cpp") if fastfreq.backends.ext.available() else ("torch",):
        nf.backend = backend
        outs.append(nf(x, params=params))
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=0, atol=1e-5)
    for backend, o in zip(("torch", "cpp"), outs):
        nf.backend = backend
        assert_module_output(o, nf, x, params)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_equal_coverage_bands_are_used(dtype):
    """bands="equal-coverage" runs NFD with five bands that each cover a fifth
    of the information at the image's size (the reference's coverage), and
    the result is the reference's for them (float64 images: for the exact
    edges, which the compiled op once held in float32); the paper's bands,
    which cover 0.28/0.27/0.32/0.11/0.02 at 32x32, give another image."""
    nf = NFD(bands="equal-coverage", generator=gen())
    p = nf.sample_params(2, size=(32, 32))
    assert p["alpha_r"].shape == (2, 5)
    x = torch.rand(2, 3, 32, 32, dtype=dtype)
    out = nf(x, params=p)
    bands = equal_coverage_bands(32, 32)
    np.testing.assert_allclose(ref.nfd_band_coverage(bands, 32, 32), 0.2, atol=1e-3)
    if dtype == torch.float64:
        # the kernels' float32 Philox normals and fastfreq.philox's differ by up
        # to NOISE_DRAW_BOUND (measured here: 8e-9; edges held in float32 once
        # made it 1.6e-5)
        err = np.abs(out.numpy() - module_reference(nf, x, p)).max()
        assert err <= NOISE_DRAW_BOUND * nf.sigma ** 0.5, f"max error {err:.3g}"
    else:
        assert_module_output(out, nf, x, p)
    noise = philox_normal(p["seed"], (2, 3, 32, 17)).double().numpy()
    paper = ref.nfd(x.double().numpy(), p["alpha_r"].numpy(), noise, nf.sigma, nfd_bands=PAPER_BANDS)
    with pytest.raises(AssertionError, match="max error"):  # 4.8e-2 apart
        assert_close(out, paper, x.dtype, fastfreq.resolve_backend("auto", x))


def test_dataloader_worker_style_use():
    """Single CPU images in a Dataset, as a DataLoader worker would see them."""
    aug = SpectralAugment(ps_p=0.5, generator=gen(7))

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            img = torch.rand(3, 12, 12, generator=gen(50 + i))
            return aug(img), img, aug.last_params

    out, images, params = next(iter(torch.utils.data.DataLoader(DS(), batch_size=6)))
    assert out.shape == (6, 3, 12, 12)
    # each image is the reference's for its own draw, collated to (6, 1, ...)
    for i in range(6):
        mine = {half: {k: v[i] for k, v in d.items()} for half, d in params.items()}
        assert_module_output(out[i], aug, images[i], mine)


@pytest.mark.parametrize("make, match", [
    (lambda: PowerSuppression(p=1.5), "p: expected a probability"),
    (lambda: PowerSuppression(bands=("L", "X")), "band: expected one of"),
    (lambda: PowerSuppression(bands="LMH"), "bands: expected a non-empty sequence"),
    (lambda: PowerSuppression(alpha=(0.8, 0.2)), "alpha: expected a range"),
    (lambda: NFD(sigma=-1), "sigma"),
    (lambda: NFD(p=-0.1), "p: expected a probability"),
    (lambda: NFD(bands="wide"), "bands: expected 'paper'"),
    (lambda: NFD(bands=((5, 2),)), "nfd_bands"),
])
def test_bad_module_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_module_input():
    with pytest.raises(ValueError, match="x: expected"):
        PowerSuppression()(torch.rand(2, 2, 3, 8, 8))
    with pytest.raises(TypeError, match="generator"):
        NFD(generator=123)


@pytest.mark.gpu
def test_gpu_batch_without_host_sync():
    x = torch.rand(64, 3, 40, 40, device="cuda")
    aug = SpectralAugment(generator=torch.Generator(device="cuda").manual_seed(0))
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == x.shape and out.device.type == "cuda"


class _AugmentedImages(torch.utils.data.Dataset):
    """Each item: one image augmented in the worker (cpp backend, its own
    generator per worker), with the params needed to replay it."""

    def __init__(self, n=8):
        self.images = torch.rand(n, 3, 12, 12, generator=gen(11))
        self.aug = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if self.aug is None:   # built in the worker: a generator seeded by the worker id
            info = torch.utils.data.get_worker_info()
            wid = info.id if info is not None else 0
            self.aug = SpectralAugment(ps_p=0.7, generator=gen(100 + wid), backend="cpp")
        out = self.aug(self.images[i][None])
        return out[0], self.aug.last_params, torch.get_num_threads()


@pytest.mark.skipif(not fastfreq.backends.ext.available(), reason="fastfreq._C not built")
def test_dataloader_workers_with_the_cpp_backend_replay():
    """num_workers=2, one intra-op thread each: every image the workers made is
    the one its params replay in the main process (bit for bit at the workers'
    thread count; a multi-threaded FFT may round differently)."""
    ds = _AugmentedImages()
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    replay = SpectralAugment(ps_p=0.7, backend="cpp")
    seen, threads_before = 0, torch.get_num_threads()
    for i, (out, params, threads) in enumerate(loader):
        assert threads == 1
        again = replay(ds.images[i][None], params=params)
        torch.testing.assert_close(again[0], out, rtol=0, atol=1e-6)
        torch.set_num_threads(1)
        try:
            again = replay(ds.images[i][None], params=params)
        finally:
            torch.set_num_threads(threads_before)
        assert torch.equal(again[0], out)
        seen += 1
    assert seen == len(ds)
