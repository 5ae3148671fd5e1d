"""Equation-level tests of fastfreq.reference with values worked out by hand."""
import math

import numpy as np
import pytest

from fastfreq import reference as ref


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


@pytest.mark.parametrize("s, want", [(-1, 1), (0, 1), (1.5, 0.5), (3, 0), (4, 0)])
def test_m_step(s, want):
    assert ref.m_step(s) == pytest.approx(want)


@pytest.mark.parametrize("s, want", [(-1, 0), (0, 0), (1.5, 0.5), (3, 1), (5, 1), (8, 1),
                                     (9.5, 0.5), (11, 0), (12, 0)])
def test_m_hill(s, want):
    assert ref.m_hill(s) == pytest.approx(want)


@pytest.mark.parametrize("curve, s, want", [
    (ref.m_L, 0, 1), (ref.m_L, 2.5, 1), (ref.m_L, 4, 1), (ref.m_L, 10.5, 0.5), (ref.m_L, 13, 0),
    (ref.m_M, 0, 1), (ref.m_M, 2.5, 0.5), (ref.m_M, 5, 0), (ref.m_M, 8.5, 0.5), (ref.m_M, 12, 1),
    (ref.m_M, 16.5, 0.5), (ref.m_M, 19, 0),
    (ref.m_H, 0, 1), (ref.m_H, 2.5, 0.5), (ref.m_H, 5, 0), (ref.m_H, 14.5, 0.5), (ref.m_H, 20, 1),
])
def test_band_curves(curve, s, want):
    assert curve(s) == pytest.approx(want)


def test_band_curves_stay_in_unit_interval():
    s = np.linspace(0, 40, 4001)
    for curve in ref.BAND_CURVES:
        v = curve(s)
        assert v.min() >= 0 and v.max() <= 1


def test_radius_and_indices():
    ky, kx = ref.frequency_indices(5, 4)
    assert ky.tolist() == [0, 1, 2, -2, -1]
    assert kx.tolist() == [0, 1, -2, -1]
    r = ref.radius(5, 4)
    assert r[2, 2] == pytest.approx(math.sqrt(8))
    assert ref.radius(5, 4, half=True).shape == (5, 3)


def test_mask_matrix_radius_scale():
    m1 = ref.band_mask(0, 40, 40)
    m2 = ref.band_mask(0, 80, 80, radius_scale=2.0)
    # the 80x80 mask at doubled indices equals the 40x40 mask
    ky = np.r_[0:20, -20:0]
    assert np.allclose(m2[np.ix_(ky * 2 % 80, ky * 2 % 80)], m1[np.ix_(ky % 40, ky % 40)])


def test_beta_0_endpoints():
    # alpha = 0: nothing suppressed, kappa = 1 -> beta_0 = 1
    assert ref.beta_0(0.0) == pytest.approx(1.0)
    # alpha = 1: kappa = 0 -> sigmoid(-3) + 1 - sigmoid(4)
    assert ref.beta_0(1.0) == pytest.approx(sigmoid(-3) + 1 - sigmoid(4))
    a = np.linspace(0, 1, 11)
    assert np.all(np.diff(ref.beta_0(a)) < 0)


def test_beta_1_and_learnable():
    assert np.all(ref.beta_1(np.array([0.0, 0.5, 1.0])) == 1)
    b = ref.basic_open_ratios(np.zeros(3))
    assert b == pytest.approx([1.1 / 3] * 3)
    assert ref.beta_learnable([0, 1, 2], [1.0, 1.0, 1.0], np.zeros(3)) == pytest.approx(b)
    assert ref.beta_learnable([2], [0.0], np.zeros(3)) == pytest.approx([1.0])
    b = ref.basic_open_ratios(np.array([2.0, 0.0, -1.0]))
    assert b.sum() == pytest.approx(1.1)
    assert b[0] > b[1] > b[2]


@pytest.mark.parametrize("config, want", [("LMH=000", (0, 0, 0)), ("LMH=011", (0, 1, 1)),
                                          ("LMH=100", (1, 0, 0)), ("learnable", "learnable")])
def test_parse_config(config, want):
    assert ref.parse_config(config) == want


def test_aux_labels_follow_the_config():
    band = np.array([0, 1, 2])
    alpha = np.array([0.5, 0.5, 0.5])
    labels = ref.aux_labels("LMH=010", band, alpha)
    assert labels[1] == 1.0
    assert labels[0] == labels[2] == pytest.approx(ref.beta_0(0.5))


def test_aux_loss():
    v = np.array([0.5, 0.9, 0.2])
    beta = np.array([0.4, 1.0, 0.0])
    assert ref.aux_loss(v, beta, [True, False, True], lam=100) == pytest.approx(
        100 * ((0.1 ** 2 + 0.2 ** 2) / 2))
    assert ref.aux_loss(v, beta, [False, False, False]) == 0.0


@pytest.mark.parametrize("s, want", [(9.5, 0.5), (10, 1), (12.9, 1), (13, 1), (13.5, 0.5),
                                     (14, 0), (8.9, 0)])
def test_nfd_hill_values(s, want):
    assert ref.nfd_hill(s, 10, 13) == pytest.approx(want)


def test_paper_bands_partition_unity():
    # 1 on [0, 29], which holds every radius of the 40x40 grid (max 28.3);
    # the last band's down-ramp occupies [29, 30) (see docs/paper-notes.md)
    s = np.linspace(0, 29, 2901)
    total = sum(ref.nfd_hill(s, a, b) for a, b in ref.PAPER_BANDS)
    assert np.allclose(total, 1.0)
    assert ref.radius(40, 40).max() < 29
    tail = np.array([29.5])
    assert sum(ref.nfd_hill(tail, a, b) for a, b in ref.PAPER_BANDS) == pytest.approx(0.5)


def test_paper_band_coverage_near_one_fifth():
    cov = ref.nfd_band_coverage()
    assert cov.shape == (5,)
    assert np.all((cov >= 0.15) & (cov <= 0.25)), cov
    assert cov.sum() == pytest.approx(1.0, abs=1e-9)


def test_information_increments_sum_to_one():
    dH = ref.information_increments(40, 40)
    assert len(dH) == 30
    assert dH.sum() == pytest.approx(1.0)
    assert np.all(dH >= 0)


def test_control_weights_rule(rng):
    w = ref.sample_control_weights(rng, 2000, 5)
    frac = (w > 0) & (w < 1)
    # exactly one entry per row is fractional (a U(0,1) draw is never exactly 0 or 1)
    assert np.all(frac.sum(1) == 1)
    binary = w[~frac]
    assert set(np.unique(binary)) <= {0.0, 1.0}
    assert abs(binary.mean() - 0.5) < 0.03
    assert np.all(np.abs(np.bincount(frac.argmax(1), minlength=5) / 2000 - 0.2) < 0.04)


def test_control_matrix_is_weighted_sum():
    a = np.array([[1, 0, 0.5, 0, 1.0]])
    M = ref.control_matrix(a, 40, 40)[0]
    s = ref.radius(40, 40)
    want = ref.nfd_hill(s, 0, 9) + 0.5 * ref.nfd_hill(s, 14, 17) + ref.nfd_hill(s, 21, 29)
    assert np.allclose(M, want)


def test_hermitian_noise_is_symmetric(rng):
    for H, W in [(8, 6), (7, 5), (6, 7), (2, 2)]:
        g = ref.hermitian_from_half(rng.standard_normal((2, H, W // 2 + 1)), W)
        ky, kx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        assert np.array_equal(g, g[:, (-ky) % H, (-kx) % W])


def x_batch(rng, B=3, C=2, H=12, W=10):
    return rng.random((B, C, H, W))


def test_alpha_zero_and_sigma_zero_are_identities(rng):
    x = x_batch(rng)
    out = ref.spectral_augment(x, [0, 1, 2], 0.0)
    assert np.allclose(out, x, atol=1e-12)
    out = ref.spectral_augment(x, alpha_r=rng.random((3, 5)), sigma=0.0, generator=1)
    assert np.allclose(out, x, atol=1e-12)


def test_alpha_one_keeps_exactly_the_mask_band(rng):
    x = x_batch(rng, H=40, W=40)
    for band in range(3):
        out = ref.power_suppress(x, band, 1.0)
        mask = ref.band_mask(band, 40, 40)
        assert np.allclose(np.fft.fft2(out), np.fft.fft2(x) * mask, atol=1e-9)


def test_output_is_real_with_hermitian_noise(rng):
    x = x_batch(rng, H=9, W=8)
    noise = rng.standard_normal((3, 2, 9, 5))
    X = np.fft.fft2(x)
    G = ref.hermitian_from_half(noise, 8)
    R = ref.nfd_noise_std(np.full((3, 5), 0.3), 9, 8, 1.0)[:, None] * G
    Z = X + R * ref.direction(X, ref.dir_eps(x))
    assert np.abs(np.fft.ifft2(Z).imag).max() < 1e-12


def test_nfd_variance_per_frequency(rng):
    """On a zero image Dir = 1, so F(out) = R: its per-frequency variance must
    be sigma (1 - M) (checked statistically with a fixed seed)."""
    N, H, W, sigma = 4000, 8, 8, 2.0
    bands = ((0, 2), (2, 4), (4, 6))
    alpha_r = np.tile([[1.0, 0.3, 0.0]], (N, 1))
    out = ref.nfd(np.zeros((N, 1, H, W)), alpha_r, sigma=sigma, nfd_bands=bands, generator=7)
    R = np.fft.fft2(out)[:, 0]
    assert np.abs(R.imag).max() < 1e-9
    var = R.real.var(axis=0)
    want = sigma * np.clip(1 - ref.control_matrix(alpha_r[:1], H, W, nfd_bands=bands)[0], 0, None)
    pos = want > 0
    assert np.all(var[~pos] < 1e-20)
    assert np.abs(var[pos] / want[pos] - 1).max() < 5 * math.sqrt(2 / N)
    assert np.abs(R.real.mean(axis=0)).max() < 5 * math.sqrt(sigma / N)


def test_dir_on_constant_image_is_one():
    x = np.full((1, 1, 6, 6), 0.7)
    X = np.fft.fft2(x)
    d = ref.direction(X, ref.dir_eps(x))
    assert d[0, 0, 0, 0] == pytest.approx(1.0)
    assert np.allclose(d[0, 0].ravel()[1:], 1.0)


def test_grating_strength_and_spectrum():
    g = ref.grating(32, 32, 3, 5, 4 * math.sqrt(2))
    assert np.linalg.norm(g) == pytest.approx(4 * math.sqrt(2))
    assert np.abs(g).max() == pytest.approx(0.25)
    F = np.abs(np.fft.fft2(g))
    nz = np.argwhere(F > 1e-9)
    assert sorted(map(tuple, nz)) == [(3, 5), (29, 27)]


def test_channel_pdm():
    p = ref.channel_pdm(3, 1, 8, 8, 1, 2, 1.0)
    assert np.all(p[0] == 0.5) and np.all(p[2] == 0.5)
    assert p[1].mean() == pytest.approx(0.5)
    assert np.linalg.norm(p[1] - 0.5) == pytest.approx(1.0)


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(x=np.zeros((2, 8, 8))), ValueError, "x: expected shape"),
    (dict(x=np.zeros((1, 1, 8, 8), dtype=np.int64)), TypeError, "x: expected floating"),
    (dict(x=np.zeros((1, 1, 1, 8))), ValueError, "H: image sizes"),
    (dict(band=3, alpha=0.5), ValueError, "band"),
    (dict(band=[0], alpha=1.5), ValueError, "alpha: expected values in"),
    (dict(band=[0], alpha=float("nan")), ValueError, "alpha: expected finite"),
    (dict(band=[0]), ValueError, "band, alpha"),
    (dict(alpha_r=np.zeros((1, 4))), ValueError, "alpha_r: expected shape"),
    (dict(alpha_r=np.zeros((1, 5)), noise=np.zeros((1, 1, 8, 8))), ValueError, "noise: expected"),
    (dict(alpha_r=np.zeros((1, 5)), sigma=-1.0), ValueError, "sigma"),
    (dict(alpha_r=np.zeros((1, 5)), sigma=float("inf")), ValueError, "sigma"),
    (dict(radius_scale=0.0), ValueError, "radius_scale"),
    (dict(nfd_bands=((3, 1),)), ValueError, "nfd_bands"),
])
def test_reference_bad_input(kwargs, exc, match):
    args = dict(x=np.zeros((1, 1, 8, 8)))
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(exc, match=match):
        ref.spectral_augment(x, **args)


@pytest.mark.parametrize("bad", ["LMH=0101", "LMH=012", "lmh=000", "learn", 3])
def test_bad_config_strings(bad):
    with pytest.raises(ValueError, match="config"):
        ref.parse_config(bad)


def test_bad_pdm_arguments():
    with pytest.raises(ValueError, match="H: image sizes"):
        ref.grating(1, 8, 0, 1, 1.0)
    with pytest.raises(ValueError, match="c: expected"):
        ref.channel_pdm(3, 3, 8, 8, 0, 1, 1.0)
    with pytest.raises(ValueError, match="phi"):
        ref.grating(8, 8, 0, 4, 1.0, phi=math.pi / 2)
