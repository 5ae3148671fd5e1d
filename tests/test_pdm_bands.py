"""PDM frequency response, histograms, band shares and equal-coverage bands."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from fastfreq import pdm
from fastfreq import reference as ref
from fastfreq.bands import band_coverage, equal_coverage_bands


def test_probes_match_reference():
    probes = pdm.channel_pdms(3, 8, 6, 2.0, dtype=torch.float64)
    ky, kx = ref.frequency_indices(8, 6)
    for n in (0, 17, 100, 143):
        c, i, j = n // 48, (n // 6) % 8, n % 6
        want = ref.channel_pdm(3, c, 8, 6, int(ky[i]), int(kx[j]), 2.0)
        assert np.abs(probes[n].numpy() - want).max() < 1e-12


def grating_layer(freqs, H, W):
    """A first block whose channels are pure gratings at known frequencies
    (full-size conv = correlation with the grating), then a square."""
    conv = nn.Conv2d(1, len(freqs), (H, W), bias=False)
    y, x = np.mgrid[0:H, 0:W]
    with torch.no_grad():
        for k, (fy, fx) in enumerate(freqs):
            conv.weight[k, 0] = torch.from_numpy(np.cos(2 * np.pi * (fy * y / H + fx * x / W)))
    return lambda im: conv(im - 0.5) ** 2


def test_histogram_peaks_at_the_filters_frequencies():
    H = W = 16
    freqs = [(2, 3), (5, -1)]
    resp = pdm.frequency_response(grating_layer(freqs, H, W), 1, H, W, 1.0, batch_size=64)
    assert resp.shape == (2, 1, H, W)
    # these synthetic maps have 2 non-zero entries of 256: 1% clipping would
    # flatten them, so the peak test uses clip=0
    hist = pdm.response_histogram(resp, clip=0.0, centred=False)
    top = torch.topk(hist.flatten(), 4).indices
    got = {(int(i) // W, int(i) % W) for i in top}
    want = {(fy % H, fx % W) for fy, fx in freqs} | {(-fy % H, -fx % W) for fy, fx in freqs}
    assert got == want


def test_band_shares_sum_to_one_and_follow_the_filters():
    H = W = 32
    low = pdm.frequency_response(grating_layer([(1, 1), (2, 0)], H, W), 1, H, W, batch_size=512)
    high = pdm.frequency_response(grating_layer([(14, 10), (12, 15)], H, W), 1, H, W, batch_size=512)
    s_low = pdm.band_shares(pdm.response_histogram(low, clip=0.0))
    s_high = pdm.band_shares(pdm.response_histogram(high, clip=0.0))
    for s in (s_low, s_high):
        assert sum(s.values()) == pytest.approx(1.0)
    assert s_low["L"] > 0.5 and s_high["H"] > 0.5


def test_analyse_writes_a_figure(tmp_path):
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    res = pdm.analyse(conv, 3, 8, 8, str(tmp_path / "pdm.png"), batch_size=50)
    assert (tmp_path / "pdm.png").stat().st_size > 1000
    assert res["histogram"].shape == (8, 8)
    assert sum(res["band_shares"].values()) == pytest.approx(1.0)


def test_normalise_clips_extremes():
    resp = torch.linspace(0, 1, 1000).reshape(1, 1, 10, 100)
    resp[0, 0, 0, 0] = -100.0
    n = pdm.normalise_responses(resp)
    assert n.min() == 0 and n.max() == 1
    # the outlier is clipped away: the rest spans [q01, q99] ~ [0.01, 0.99]
    assert n[0, 0, 5, 50] == pytest.approx((550 / 999 - 0.01) / 0.98, abs=0.005)


@pytest.mark.parametrize("H, W", [(40, 40), (32, 32), (64, 64)])
def test_equal_coverage_within_tolerance(H, W):
    bands = equal_coverage_bands(H, W, 5)
    cov = band_coverage(bands, H, W)
    assert np.all(np.abs(cov - 0.2) < 0.005), cov
    # the runtime's information model against the reference's own (eqs. 15-18)
    np.testing.assert_allclose(cov, ref.nfd_band_coverage(bands, H, W), rtol=0, atol=1e-12)
    s = np.linspace(0, math.ceil(ref.radius(H, W).max()), 500)
    assert np.allclose(sum(ref.nfd_hill(s, a, b) for a, b in bands), 1.0)


def test_paper_bands_unchanged():
    from fastfreq.transforms import resolve_nfd_bands
    assert resolve_nfd_bands("paper", 40, 40) == ((0, 9), (10, 13), (14, 17), (18, 20), (21, 29))
    cov = band_coverage(ref.PAPER_BANDS, 40, 40)
    assert np.allclose(cov, [0.1831, 0.1798, 0.2297, 0.2102, 0.1973], atol=1e-4)


def test_bad_input():
    with pytest.raises(ValueError, match="H: image sizes"):
        pdm.channel_pdms(1, 1, 8)
    with pytest.raises(ValueError, match="first_block: expected it to return"):
        pdm.frequency_response(lambda x: x.mean(dim=(2, 3)), 1, 4, 4)
    with pytest.raises(TypeError, match="first_block"):
        pdm.frequency_response(None, 1, 4, 4)
    with pytest.raises(ValueError, match="n: expected"):
        equal_coverage_bands(40, 40, 0)


@pytest.mark.parametrize("tol", [0.0, -1.0, float("nan"), 2.0, "1e-9"])
def test_equal_coverage_bad_tolerance_is_refused_not_a_hang(tol):
    """tol <= 0 once made the bisection loop forever; NaN gave a misleading
    message. (The bisection is also capped at 200 halvings.)"""
    with pytest.raises(ValueError, match="tol: expected a number in"):
        equal_coverage_bands(40, 40, tol=tol)


def test_pdm_figure_has_colourbar_region_borders_and_flat_channels(tmp_path):
    """The figures once had no colourbar, no L/M/H borders and all-black
    channels without a word."""
    from matplotlib.patches import Circle

    from fastfreq import pdm
    from fastfreq.figures import subplots

    hist = torch.rand(32, 32)
    fig, ax = subplots(1, 1, figsize=(3, 3))
    pdm.draw_histogram(fig, ax, hist, "run")
    assert len(fig.axes) == 2                                  # the image and its colourbar
    radii = sorted(p.get_radius() for p in ax.patches if isinstance(p, Circle))
    assert radii == list(pdm.REGION_EDGES)
    s = pdm.band_shares(hist)
    assert ax.get_title().startswith("run") and f"L {s['L']:.2f}" in ax.get_title()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    with torch.no_grad():
        net[0].bias[0] = -1e3
        net[0].bias[1:] = 1.0                                   # the others always fire                                   # channel 0 never fires
    out = pdm.analyse(net, 3, 8, 8, str(tmp_path / "pdm.png"))
    assert os.path.getsize(out["figure"]) > 0
    assert pdm.flat_channels(out["responses"])[0] and not any(pdm.flat_channels(out["responses"])[1:])
