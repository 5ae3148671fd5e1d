"""NumPy float64 reference of every equation fastfreq uses.

This module is the ground truth that every backend is tested against. It is
written to be read next to the paper ("Exploring Frequency Domain
Interpretation of Convolutional Neural Networks"); equation numbers refer to
it, and each interpretation choice is explained in ``docs/paper-notes.md``.

Conventions
-----------
* Images are real arrays ``(B, C, H, W)``; every ``(b, c)`` plane is
  transformed on its own.
* ``F`` is the unnormalised 2-D DFT (``numpy.fft.fft2``); ``F^-1`` divides by
  ``H * W``. DC sits at index ``[0, 0]``.
* The radius of a frequency is measured in index units:
  ``s = sqrt(ky^2 + kx^2)`` with ``ky = fftfreq(H) * H``.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from . import _checks as chk
from .constants import BAND_IDS, DIR_EPS_REL, PAPER_BANDS  # noqa: F401  (re-exported)

# Nothing here comes from fastfreq.equations (the curves the torch code, the
# masks and the Triton tables use): every equation below is written again,
# case by case as the paper prints it, so that a wrong curve there is caught
# by the backend matrix instead of being wrong in both.


# ---------------------------------------------------------------------------
# Frequency grid
# ---------------------------------------------------------------------------
def frequency_indices(H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer frequency indices ``(ky, kx)`` of an ``H x W`` DFT, DC at [0, 0]."""
    chk.image_size(H, W)
    ky = np.fft.fftfreq(H) * H
    kx = np.fft.fftfreq(W) * W
    return np.rint(ky), np.rint(kx)


def radius(H: int, W: int, *, half: bool = False) -> np.ndarray:
    """``r(i, j) = ||(i, j)||_2`` (Section 3.1) on the full grid, or on the
    ``rfft2`` half spectrum ``(H, W//2 + 1)`` when ``half`` is set."""
    ky, kx = frequency_indices(H, W)
    if half:
        kx = np.arange(W // 2 + 1, dtype=np.float64)
    return np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)


# ---------------------------------------------------------------------------
# Power-suppression mask curves (eqs. 2-4) and matrices (eq. 1)
# ---------------------------------------------------------------------------
def _f64(s) -> np.ndarray:
    return np.asarray(s, dtype=np.float64)


def m_step(s):
    """Eq. 2: 1 for s <= 0; 1 - s/3 for 0 < s <= 3; 0 else."""
    s = _f64(s)
    return np.select([s <= 0, s <= 3], [1.0, 1 - s / 3], 0.0)


def m_hill(s):
    """Eq. 3: s/3 on (0, 3]; 1 on (3, 8]; 1 - (s-8)/3 on (8, 11]; 0 else."""
    s = _f64(s)
    return np.select([s <= 0, s <= 3, s <= 8, s <= 11], [0.0, s / 3, 1.0, 1 - (s - 8) / 3], 0.0)


def m_L(s):
    """Eq. 4, low-pass: ``m_step(s-1) + m_hill(s-1)``."""
    return m_step(_f64(s) - 1) + m_hill(_f64(s) - 1)


def m_M(s):
    """Eq. 4, band-pass: ``m_step(s-1) + m_hill(s-7)``."""
    return m_step(_f64(s) - 1) + m_hill(_f64(s) - 7)


def m_H(s):
    """Eq. 4, high-pass, read as ``m_step(s-1) + 1 - m_step(s-13)`` (the printed
    ``+ m_step(s-13)`` would be low-pass; docs/paper-notes.md)."""
    return m_step(_f64(s) - 1) + 1 - m_step(_f64(s) - 13)


#: The curve of band id 0 (L), 1 (M), 2 (H).
BAND_CURVES = (m_L, m_M, m_H)


def gain_from_mask(alpha, mask):
    """Eq. 5's per-frequency factor ``1 - alpha (1 - M)``."""
    return 1 - _f64(alpha) * (1 - _f64(mask))


def mask_matrix(curve: Callable, H: int, W: int, *, radius_scale: float = 1.0,
                half: bool = False) -> np.ndarray:
    """Eq. 1: ``M[i, j] = m(r(i, j) / radius_scale)``."""
    radius_scale = chk.radius_scale(radius_scale)
    return curve(radius(H, W, half=half) / radius_scale)


def band_mask(band: int, H: int, W: int, *, radius_scale: float = 1.0,
              half: bool = False) -> np.ndarray:
    """Mask matrix ``M_L``, ``M_M`` or ``M_H`` for a band id in {0, 1, 2}."""
    band = chk.band_id(band)
    return mask_matrix(BAND_CURVES[band], H, W, radius_scale=radius_scale, half=half)


def suppression_gain(band, alpha, H: int, W: int, *, radius_scale: float = 1.0,
                     half: bool = False) -> np.ndarray:
    """Per-image gain of eq. 5, ``g = 1 - alpha * (1 - M_band)``: ``(B, H, W')``."""
    band, alpha = chk.np_band_alpha(band, alpha)
    masks = np.stack([band_mask(b, H, W, radius_scale=radius_scale, half=half)
                      for b in range(3)])
    return gain_from_mask(alpha[:, None, None], masks[band])


# ---------------------------------------------------------------------------
# Auxiliary labels (eqs. 6-9) and the aux loss (eq. 10)
# ---------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def beta_0(alpha):
    """Eq. 6 with alpha read as the suppressed fraction: ``kappa = 1 - alpha``
    is the kept fraction and ``beta_0 = sigmoid(7 kappa - 3) + 1 - sigmoid(4)``
    (so ``beta_0 = 1`` when nothing is suppressed)."""
    kappa = 1.0 - chk.np_unit_interval(alpha, "alpha")
    return _sigmoid(7.0 * kappa - 3.0) + 1.0 - _sigmoid(4.0)


def beta_1(alpha):
    """Eq. 7: the fully-open label, always 1."""
    return np.ones_like(chk.np_unit_interval(alpha, "alpha"))


def basic_open_ratios(theta) -> np.ndarray:
    """Eq. 9: ``b = 1.1 * sigmoid(theta) / sum(sigmoid(theta))`` for L, M, H."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (3,):
        raise ValueError(f"theta: expected shape (3,), got {theta.shape}")
    sig = _sigmoid(theta)
    return 1.1 * sig / sig.sum()


def beta_learnable(band, alpha, theta) -> np.ndarray:
    """Eq. 8 with the kept fraction: ``beta_L = (1 - kappa) b[band] + kappa``."""
    band, alpha = chk.np_band_alpha(band, alpha)
    kappa = 1.0 - alpha
    return (1.0 - kappa) * basic_open_ratios(theta)[band] + kappa


def parse_config(config: str):
    """``"LMH=abc"`` -> tuple of three label kinds (0 -> beta_0, 1 -> beta_1),
    or the string ``"learnable"``."""
    return chk.label_config(config)


def aux_labels(config: str, band, alpha, theta=None) -> np.ndarray:
    """Label ``beta`` per power-suppressed image under a configuration."""
    kinds = parse_config(config)
    band, alpha = chk.np_band_alpha(band, alpha)
    if kinds == "learnable":
        if theta is None:
            raise ValueError("theta: the learnable configuration needs theta (shape (3,))")
        return beta_learnable(band, alpha, theta)
    zero, one = beta_0(alpha), beta_1(alpha)
    use_one = np.asarray(kinds, dtype=bool)[band]
    return np.where(use_one, one, zero)


def aux_loss(open_ratio, beta, labelled, lam: float = 100.0) -> float:
    """Eq. 10 averaged over the labelled samples:
    ``lambda * mean_{labelled} (v_bar - beta)^2`` (0 when none is labelled)."""
    v = np.asarray(open_ratio, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    mask = np.asarray(labelled, dtype=bool)
    if not mask.any():
        return 0.0
    return float(lam * np.mean((v[mask] - beta[mask]) ** 2))


# ---------------------------------------------------------------------------
# NFD (eqs. 11-14)
# ---------------------------------------------------------------------------
def sample_control_weights(rng: np.random.Generator, batch: int, n_bands: int = 5) -> np.ndarray:
    """Control weights ``alpha_r`` (Section 3.3): one entry per image, chosen
    uniformly, is ``U(0, 1)``; every other entry is 0 or 1 with probability 1/2."""
    weights = rng.integers(0, 2, size=(batch, n_bands)).astype(np.float64)
    pick = rng.integers(0, n_bands, size=batch)
    weights[np.arange(batch), pick] = rng.uniform(0.0, 1.0, size=batch)
    return weights


# ---------------------------------------------------------------------------
# Per-image parameters from a Philox key (the in-op draws)
# ---------------------------------------------------------------------------
# Written from the Philox4x32-10 definition (Salmon et al., 2011) and the draw
# rules of csrc/param_draw.h, with NumPy uint64 arithmetic; it shares no code
# with fastfreq/philox.py or the C++ header, which the tests compare it with.
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def philox_words(counter, key: int, stream: int = 0) -> np.ndarray:
    """Philox4x32-10 of counters ``(counter_lo, counter_hi, stream, 0)`` under
    the 64-bit ``key``: ``(n, 4)`` uint64 array of 32-bit words."""
    m32 = np.uint64(0xFFFFFFFF)
    c = np.asarray(counter, dtype=np.uint64)
    key = int(key) % 2 ** 64
    k0, k1 = np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32)
    x0, x1 = c & m32, c >> np.uint64(32)
    x2 = np.full_like(c, np.uint64(stream & 0xFFFFFFFF))
    x3 = np.zeros_like(c)
    for _ in range(10):
        p0 = np.uint64(_PHILOX_M[0]) * x0  # < 2**64: both factors < 2**32
        p1 = np.uint64(_PHILOX_M[1]) * x2
        x0, x1, x2, x3 = ((p1 >> np.uint64(32)) ^ x1 ^ k0, p1 & m32,
                          (p0 >> np.uint64(32)) ^ x3 ^ k1, p0 & m32)
        k0 = (k0 + np.uint64(_PHILOX_W[0])) & m32
        k1 = (k1 + np.uint64(_PHILOX_W[1])) & m32
    return np.stack([x0, x1, x2, x3], axis=-1)


def draw_params(key: int, batch: int, *, ps_p: float, ps_bands=(0, 1, 2), alpha=(0.0, 1.0),
                nfd_p: float = 1.0, n_bands: int = 5, same_on_batch: bool = False) -> np.ndarray:
    """Rows ``[ps_applied, band, alpha, nfd_applied, alpha_r...]`` (float32)
    of every image: image i (0 under ``same_on_batch``) takes the Philox words
    of counter i, stream 1 (suppression) and 2 (NFD); a word's top 24 bits
    ``u24`` decide: applied iff ``u24 < round(p 2^24)``, a pick among n is
    ``(u24 n) >> 24``, a uniform is ``u24 / 2^24``. The NFD weights follow
    Section 3.3: entry j (picked) is uniform, entry k != j is bit k of the
    fourth word."""
    idx = np.zeros(batch, np.uint64) if same_on_batch else np.arange(batch, dtype=np.uint64)
    ps = philox_words(idx, key, 1) >> np.uint64(8)
    nf = philox_words(idx, key, 2)
    f32 = np.float32
    ps_on = ps[:, 0] < np.uint64(int(ps_p * 16777216.0 + 0.5))
    pick = (ps[:, 1] * np.uint64(len(ps_bands))) >> np.uint64(24)
    band = np.asarray(ps_bands, np.float32)[pick.astype(np.int64)]
    lo, hi = f32(alpha[0]), f32(alpha[1])
    u = ps[:, 2].astype(np.float32) * f32(2.0 ** -24)
    a = np.where(ps_on, lo + (hi - lo) * u, f32(0)).astype(np.float32)
    nfd_on = (nf[:, 0] >> np.uint64(8)) < np.uint64(int(nfd_p * 16777216.0 + 0.5))
    out = np.zeros((batch, 4 + n_bands), np.float32)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = ps_on, band, a, nfd_on
    if n_bands:
        j = ((nf[:, 1] >> np.uint64(8)) * np.uint64(n_bands)) >> np.uint64(24)
        u_r = (nf[:, 2] >> np.uint64(8)).astype(np.float32) * f32(2.0 ** -24)
        for k in range(n_bands):
            bit = ((nf[:, 3] >> np.uint64(k)) & np.uint64(1)).astype(np.float32)
            out[:, 4 + k] = np.where(j == k, u_r, bit)
    return out


def nfd_hill(s, a: float, b: float):
    """Eq. 13: s - a + 1 on [a-1, a); 1 on [a, b); b - s + 1 on [b, b+1); 0 else."""
    s = _f64(s)
    return np.select([s < a - 1, s < a, s < b, s < b + 1], [0.0, s - a + 1, 1.0, b - s + 1], 0.0)


def noise_std_from_control(sigma: float, control):
    """Eq. 11: the noise's standard deviation ``sqrt(sigma (1 - M))``, with
    ``1 - M`` taken as 0 where M > 1 (overlapping bands or weights)."""
    one_minus = 1 - _f64(control)
    return np.sqrt(sigma * np.where(one_minus > 0, one_minus, 0.0))


def control_matrix(alpha_r, H: int, W: int, *, nfd_bands=PAPER_BANDS,
                   half: bool = False) -> np.ndarray:
    """Eq. 14: ``M = sum_i alpha_r[i] * M_i`` per image: ``(B, H, W')``."""
    bands = chk.nfd_bands(nfd_bands)
    alpha_r = chk.np_alpha_r(alpha_r, len(bands))
    s = radius(H, W, half=half)
    hills = np.stack([nfd_hill(s, a, b) for a, b in bands])
    return np.einsum("bn,nhw->bhw", alpha_r, hills)


def hermitian_rule(noise_half, W: int) -> np.ndarray:
    """A copy of a half-spectrum draw ``(..., H, W//2+1)`` where the columns
    that are their own mirror (kx = 0, and kx = W/2 for even W) obey
    ``G[-ky] = G[ky]``: each row ``ky > H/2`` there takes row ``H - ky``."""
    g = np.array(noise_half, dtype=np.float64, copy=True)
    H = g.shape[-2]
    for kx in {0, W // 2} if W % 2 == 0 else {0}:
        for ky in range(H // 2 + 1, H):
            g[..., ky, kx] = g[..., H - ky, kx]
    return g


def direction(Y, eps):
    """Section 3.1's ``Dir c = c / |c|``; where ``|c| <= eps`` (Dir 0 is any unit
    number) it is 1."""
    Y = np.asarray(Y)
    mag = np.abs(Y)
    out = np.ones(np.broadcast(Y, eps).shape, dtype=np.result_type(Y, np.complex128))
    big = np.broadcast_to(mag > eps, out.shape)
    np.divide(np.broadcast_to(Y, out.shape), np.broadcast_to(mag, out.shape), out=out, where=big)
    return out


def hermitian_from_half(noise_half: np.ndarray, W: int) -> np.ndarray:
    """Full ``(..., H, W)`` real noise ``G`` with ``G[-k] = G[k]`` from a
    half-spectrum array ``(..., H, W//2 + 1)``.

    In the self-conjugate columns (kx = 0, and kx = W/2 for even W) a row
    ``r > H/2`` copies row ``H - r``; the other half-spectrum entries are used
    as given, and the missing columns are their mirror images.
    """
    H, Wh = np.shape(noise_half)[-2:]
    if Wh != W // 2 + 1:
        raise ValueError(f"noise: last dim must be W//2+1 = {W // 2 + 1}, got {Wh}")
    g = hermitian_rule(noise_half, W)
    rows = np.arange(H)
    full = np.empty(g.shape[:-1] + (W,), dtype=np.float64)
    full[..., :Wh] = g
    kx = np.arange(Wh, W)
    full[..., :, kx] = g[..., (-rows) % H, :][..., W - kx]
    return full


def dir_eps(x: np.ndarray) -> np.ndarray:
    """The Dir threshold per plane: ``1e-6 * sum |x|`` over ``(H, W)``."""
    return DIR_EPS_REL * np.abs(x).sum(axis=(-2, -1), keepdims=True)


def nfd_noise_std(alpha_r, H: int, W: int, sigma: float, *, nfd_bands=PAPER_BANDS) -> np.ndarray:
    """Per-frequency standard deviation of eq. 11, ``sqrt(sigma (1 - M))``.

    ``1 - M`` is clipped at 0: weights above 1 or overlapping bands could
    otherwise make the variance negative."""
    return noise_std_from_control(sigma, control_matrix(alpha_r, H, W, nfd_bands=nfd_bands))


# ---------------------------------------------------------------------------
# The fused operation and its two halves
# ---------------------------------------------------------------------------
def spectral_augment(x, band=None, alpha=None, alpha_r=None, noise=None, sigma=1.0, *,
                     radius_scale=1.0, nfd_bands=PAPER_BANDS, generator=None,
                     backend="numpy"):
    """``X = F(x); Y = g X; Z = Y + R Dir(Y); out = F^-1(Z)`` (eqs. 5, 11, 12).

    Power suppression runs when ``band`` and ``alpha`` are given, NFD when
    ``alpha_r`` is given. ``noise`` is the half-spectrum standard normal draw
    ``(B, C, H, W//2+1)``; when None it is drawn from ``generator`` (a
    ``numpy.random.Generator`` or a seed). ``backend`` is accepted for
    signature parity with :func:`fastfreq.spectral_augment` and must be
    ``"numpy"``.
    """
    if backend != "numpy":
        raise ValueError(f"backend: the reference only runs 'numpy', got {backend!r}")
    x = chk.np_images(x)
    B, C, H, W = x.shape
    sigma = chk.sigma(sigma)
    radius_scale = chk.radius_scale(radius_scale)
    bands = chk.nfd_bands(nfd_bands)
    do_ps = chk.ps_requested(band, alpha)
    do_nfd = alpha_r is not None

    X = np.fft.fft2(x)
    if do_ps:
        band_a, alpha_a = chk.np_band_alpha(band, alpha, batch=B)
        X = X * suppression_gain(band_a, alpha_a, H, W, radius_scale=radius_scale)[:, None]
    if do_nfd:
        alpha_r = chk.np_alpha_r(alpha_r, len(bands), batch=B)
        if noise is None:
            rng = np.random.default_rng(generator)
            noise = rng.standard_normal((B, C, H, W // 2 + 1))
        noise = chk.np_noise(noise, (B, C, H, W // 2 + 1))
        G = hermitian_from_half(noise, W)
        R = nfd_noise_std(alpha_r, H, W, sigma, nfd_bands=bands)[:, None] * G
        X = X + R * direction(X, dir_eps(x))
    return np.fft.ifft2(X).real


def power_suppress(x, band, alpha, *, radius_scale=1.0, backend="numpy"):
    """Eq. 5: ``D(I, M, alpha) = F^-1(F(I) * (1 - alpha (1 - M)))``."""
    if band is None or alpha is None:
        raise ValueError("band, alpha: power_suppress needs both")
    return spectral_augment(x, band, alpha, radius_scale=radius_scale, backend=backend)


def nfd(x, alpha_r, noise=None, sigma=1.0, *, nfd_bands=PAPER_BANDS, generator=None,
        backend="numpy"):
    """Eq. 12: ``N_sigma(I, M) = F^-1(F(I) + R_sigma(M) * Dir F(I))``."""
    if alpha_r is None:
        raise ValueError("alpha_r: nfd needs control weights of shape (B, n_bands)")
    return spectral_augment(x, alpha_r=alpha_r, noise=noise, sigma=sigma,
                            nfd_bands=nfd_bands, generator=generator, backend=backend)


# ---------------------------------------------------------------------------
# Information model and coverage degree (eqs. 15-18)
# ---------------------------------------------------------------------------
def information_bits(s, amplitude: float = 1600.0, beta: float = 1.0):
    """Eqs. 15-16: ``V(s) = log2(beta * pi * f(s)^2)`` with ``f(s) = A / (1 + s)``."""
    f = amplitude / (1.0 + np.asarray(s, dtype=np.float64))
    return np.log2(beta * math.pi * f ** 2)


def retained_information(H: int = 40, W: int = 40, *, amplitude: float | None = None,
                         samples: Sequence[float] | None = None) -> np.ndarray:
    """Eq. 17 sampled at ``s = 0, 1, ..., ceil(r_max)``: the share of the
    total information kept by an ideal low-pass filter of cut-off ``s``.

    ``amplitude`` defaults to ``H * W`` (1600 on the paper's 40x40 grid)."""
    amplitude = float(H * W) if amplitude is None else amplitude
    r = radius(H, W).ravel()
    V = information_bits(r, amplitude)
    if samples is None:
        samples = np.arange(int(math.ceil(r.max())) + 1)
    samples = np.asarray(samples, dtype=np.float64)
    return np.array([V[r <= s].sum() for s in samples]) / V.sum()


def information_increments(H: int = 40, W: int = 40, *, amplitude: float | None = None) -> np.ndarray:
    """``H'[0] = H(0)``, ``H'[i] = H(i) - H(i-1)``."""
    Hs = retained_information(H, W, amplitude=amplitude)
    return np.diff(Hs, prepend=0.0)


def coverage_degree(curve: Callable, H: int = 40, W: int = 40, *,
                    amplitude: float | None = None) -> float:
    """Eq. 18: ``C_v(m) = sum_i m(i) H'[i]`` over ``i = 0..ceil(r_max)``."""
    dH = information_increments(H, W, amplitude=amplitude)
    return float(np.sum(curve(np.arange(len(dH), dtype=np.float64)) * dH))


def nfd_band_coverage(nfd_bands=PAPER_BANDS, H: int = 40, W: int = 40) -> np.ndarray:
    """Coverage degree of each NFD band (eq. 18 applied to eq. 13)."""
    bands = chk.nfd_bands(nfd_bands)
    return np.array([coverage_degree(lambda s, a=a, b=b: nfd_hill(s, a, b), H, W)
                     for a, b in bands])


# ---------------------------------------------------------------------------
# Point Detection Maps (Section 3.4)
# ---------------------------------------------------------------------------
def grating(H: int, W: int, ky: int, kx: int, t: float, phi: float = 0.0) -> np.ndarray:
    """Point perturbation ``P = A cos(2 pi (ky y/H + kx x/W) + phi)`` with
    ``||P||_2 = t``: its DFT is non-zero only at ``(ky, kx)`` and ``(-ky, -kx)``."""
    chk.image_size(H, W)
    t = chk.nonneg_float(t, "t")
    y = np.arange(H, dtype=np.float64)[:, None]
    x = np.arange(W, dtype=np.float64)[None, :]
    wave = np.cos(2 * math.pi * (ky * y / H + kx * x / W) + phi)
    norm = np.linalg.norm(wave)
    if norm < 1e-9:
        raise ValueError(f"phi: the grating at ({ky}, {kx}) with phi={phi} vanishes; "
                         "use another phase")
    return t * wave / norm


def pdm(H: int, W: int, ky: int, kx: int, t: float, phi: float = 0.0) -> np.ndarray:
    """PDM ``P(t, i, j) = I_0.5 + P_p(t, i, j)``: an ``(H, W)`` image."""
    return 0.5 + grating(H, W, ky, kx, t, phi)


def channel_pdm(C: int, c: int, H: int, W: int, ky: int, kx: int, t: float,
                phi: float = 0.0) -> np.ndarray:
    """Channel PDM: channel ``c`` is the PDM, the others are 0.5: ``(C, H, W)``."""
    if not (isinstance(C, int) and C >= 1):
        raise ValueError(f"C: expected a positive int, got {C!r}")
    if not (isinstance(c, int) and 0 <= c < C):
        raise ValueError(f"c: expected an int in [0, {C}), got {c!r}")
    img = np.full((C, H, W), 0.5)
    img[c] = pdm(H, W, ky, kx, t, phi)
    return img
