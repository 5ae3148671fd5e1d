"""The torch masks equal the NumPy reference."""
import numpy as np
import pytest
import torch

from fastfreq import masks
from fastfreq import reference as ref

SIZES = [(2, 2), (8, 6), (37, 29), (40, 40), (64, 64)]


@pytest.mark.parametrize("H, W", SIZES)
@pytest.mark.parametrize("half", [False, True])
def test_radius(H, W, half):
    got = masks.radius(H, W, half=half, dtype=torch.float64).numpy()
    assert np.allclose(got, ref.radius(H, W, half=half), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["m_step", "m_hill", "m_L", "m_M", "m_H"])
def test_curves(name):
    s = np.linspace(-2, 40, 4201)
    got = getattr(masks, name)(torch.from_numpy(s)).numpy()
    assert np.allclose(got, getattr(ref, name)(s), atol=1e-12)


@pytest.mark.parametrize("H, W", SIZES)
@pytest.mark.parametrize("radius_scale", [1.0, 1.6])
def test_band_masks(H, W, radius_scale):
    got = masks.band_masks(H, W, radius_scale=radius_scale, dtype=torch.float64).numpy()
    for b in range(3):
        assert np.allclose(got[b], ref.band_mask(b, H, W, radius_scale=radius_scale), atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_suppression_gain(dtype, tol, rng):
    band = np.array([0, 1, 2, 1])
    alpha = rng.random(4)
    got = masks.suppression_gain(torch.from_numpy(band), torch.from_numpy(alpha).to(dtype),
                                 40, 40, half=False)
    assert got.dtype == dtype
    assert np.allclose(got.double().numpy(), ref.suppression_gain(band, alpha, 40, 40), atol=tol)


@pytest.mark.parametrize("H, W", SIZES)
def test_control_matrix_and_std(H, W, rng):
    a = rng.random((3, 5))
    got = masks.control_matrix(torch.from_numpy(a), H, W, half=False).numpy()
    assert np.allclose(got, ref.control_matrix(a, H, W), atol=1e-12)
    std = masks.noise_std(torch.from_numpy(a), H, W, 2.0, half=False).numpy()
    assert np.allclose(std, ref.nfd_noise_std(a, H, W, 2.0), atol=1e-12)


def test_nfd_hill(rng):
    s = np.linspace(-1, 32, 3301)
    for a, b in ref.PAPER_BANDS + ((2.5, 7.25),):
        got = masks.nfd_hill(torch.from_numpy(s), a, b).numpy()
        assert np.allclose(got, ref.nfd_hill(s, a, b))


@pytest.mark.parametrize("H, W", [(8, 6), (7, 5), (6, 7), (2, 2)])
def test_hermitian_half_matches_reference(H, W, rng):
    g = rng.standard_normal((2, H, W // 2 + 1))
    got = masks.hermitian_half(torch.from_numpy(g), W).numpy()
    assert np.array_equal(got, ref.hermitian_from_half(g, W)[..., : W // 2 + 1])
