"""The paper's settings are for 40x40 images: other sizes get a warning that
names the setting that adapts them (radius_scale, equal-coverage bands)."""
import warnings

import pytest
import torch

import fastfreq
from fastfreq.bands import band_coverage
from fastfreq.functional import SizeWarning
from fastfreq.transforms import NFD, PowerSuppression, SpectralAugment


def _warnings(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in got if issubclass(w.category, SizeWarning)]


def test_nfd_paper_bands_on_another_size_warn_with_the_fix():
    x = torch.rand(1, 3, 32, 32)
    msgs = _warnings(lambda: NFD()(x))
    assert len(msgs) == 1 and "bands='equal-coverage'" in msgs[0] and "32x32" in msgs[0]
    # the coverage it quotes is the reference's (on 32x32 the last band holds 0.02)
    want = "/".join(f"{c:.2f}" for c in band_coverage(fastfreq.PAPER_BANDS, 32, 32))
    assert want in msgs[0] and want.endswith("0.02")
    assert not _warnings(lambda: NFD(bands="equal-coverage")(x))
    assert not _warnings(lambda: NFD()(torch.rand(1, 3, 40, 40)))
    # the functional API with its default bands too
    assert _warnings(lambda: fastfreq.nfd(x, torch.rand(1, 5)))


@pytest.mark.parametrize("side", [8, 224])
def test_suppression_radii_on_far_sizes_warn_with_the_radius_scale(side):
    x = torch.rand(1, 3, side, side)
    msgs = _warnings(lambda: PowerSuppression(p=1.0)(x))
    scale = f"{side / 40:.3g}"
    assert len(msgs) == 1 and f"radius_scale={scale}" in msgs[0], msgs
    assert not _warnings(lambda: PowerSuppression(p=1.0, radius_scale=side / 40)(x))


def test_paper_sized_images_do_not_warn():
    for side in (32, 40, 48):  # CIFAR and its padded size: the paper's radii
        assert not _warnings(lambda: PowerSuppression(p=1.0)(torch.rand(1, 3, side, side)))
    both = _warnings(lambda: SpectralAugment(ps_p=1.0)(torch.rand(1, 3, 224, 224)))
    assert len(both) == 2  # radii and bands, each named once
