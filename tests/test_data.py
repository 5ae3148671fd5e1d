"""Loaders in the real layouts, synthetic data, the device loader, corruptions."""
import os
import pickle

import numpy as np
import pytest
import torch

from fastfreq import corruptions as C
from train import data as D

from .conftest import SHARED_DATA


def write_cifar(root, n=20, bad=None):
    d = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(d)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, n))
        if bad == "shape" and name == "test_batch":
            data = data[:, :100]
        if bad == "labels" and name == "test_batch":
            labels = labels[:-1]
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    return root


def test_cifar10_loads_any_n(tmp_path):
    root = write_cifar(str(tmp_path), n=13)
    x, y = D.load_cifar10(root, "train")
    assert x.shape == (65, 3, 32, 32) and x.dtype == torch.uint8 and y.shape == (65,)
    xt, yt = D.load_cifar10(os.path.join(root, "cifar-10-batches-py"), "test")
    assert xt.shape == (13, 3, 32, 32)


@pytest.mark.parametrize("bad, match", [("shape", r"must be uint8 of shape \(N, 3072\)"),
                                        ("labels", "labels \\(one per image\\)")])
def test_cifar10_bad_files(tmp_path, bad, match):
    root = write_cifar(str(tmp_path), bad=bad)
    with pytest.raises(D.DataError, match=match):
        D.load_cifar10(root, "test")


def test_cifar10_missing(tmp_path):
    with pytest.raises(D.DataError, match="cifar-10-batches-py.*--download"):
        D.load_cifar10(str(tmp_path), "train")
    with pytest.raises(ValueError, match="split"):
        D.load_cifar10(str(tmp_path), "val")


def write_c(root, n=7, names=("gaussian_noise", "fog")):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in names:
        arr = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        arr[:, 0, 0, 0] = np.repeat(np.arange(5), n)  # severity marker
        np.save(os.path.join(root, f"{name}.npy"), arr)
    np.save(os.path.join(root, "labels.npy"), np.tile(np.arange(n, dtype=np.uint8) % 10, 5))
    return root


def test_cifar10c_layout(tmp_path):
    root = write_c(str(tmp_path))
    c = D.CIFAR10C(root)
    assert c.n == 7 and c.available() == ("gaussian_noise", "fog")
    for s in range(1, 6):
        x, y = c.severity("fog", s)
        assert x.shape == (7, 3, 32, 32) and torch.all(x[:, 0, 0, 0] == s - 1)
        assert y.tolist() == list(range(7))
    got = [(n, s) for n, s, *_ in c.iterate(["fog"])]
    assert got == [("fog", s) for s in range(1, 6)]


def test_cifar10c_errors(tmp_path):
    root = write_c(str(tmp_path))
    np.save(os.path.join(root, "snow.npy"), np.zeros((10, 32, 32, 3), np.uint8))
    c = D.CIFAR10C(root)
    with pytest.raises(D.DataError, match=r"snow.npy: expected uint8 of shape \(35, 32, 32, 3\)"):
        c.load("snow")
    with pytest.raises(ValueError, match="unknown corruption 'blur'.*gaussian_noise"):
        c.load("blur")
    with pytest.raises(D.DataError, match="frost.npy: missing"):
        c.load("frost")
    with pytest.raises(D.DataError, match="labels.npy: missing"):
        D.CIFAR10C(str(tmp_path / "nothing"))


def test_named_sets():
    assert len(D.BENCHMARK_15) == 15 and len(D.EXTRA_4) == 4 and len(D.ALL_19) == 19
    assert set(D.CORRUPTION_SETS["builtin"]) == set(C.CORRUPTIONS)


def test_synthetic_is_deterministic():
    a, la = D.synthetic_dataset(64, seed=3)
    b, lb = D.synthetic_dataset(64, seed=3)
    c, _ = D.synthetic_dataset(64, seed=4)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert a.dtype == torch.uint8 and a.shape == (64, 3, 32, 32)
    assert len(torch.unique(la)) == 10


def test_synthetic_c_layout(tmp_path):
    root = D.build_synthetic_c(str(tmp_path / "c"), n=16, seed=1, names=["contrast", "gaussian_noise"])
    c = D.CIFAR10C(root)
    assert c.n == 16 and set(c.available()) == {"contrast", "gaussian_noise"}
    x1, _ = c.severity("contrast", 1)
    x5, _ = c.severity("contrast", 5)
    clean, _ = D.synthetic_dataset(16, seed=1)
    d1 = (x1.float() - clean.float()).abs().mean()
    d5 = (x5.float() - clean.float()).abs().mean()
    assert d5 > d1 > 0


def labelled_images(n):
    return torch.zeros(n, 3, 8, 8, dtype=torch.uint8), torch.arange(n)


def test_loader_covers_the_split_once_per_epoch():
    x, y = labelled_images(50)
    dl = D.DeviceLoader(x, y, 16, seed=1)
    for epoch in range(2):
        dl.set_epoch(epoch)
        seen = torch.cat([yb for _, yb, _ in dl])
        assert sorted(seen.tolist()) == list(range(50))
    dl.set_epoch(0)
    a = torch.cat([yb for _, yb, _ in dl])
    dl.set_epoch(1)
    b = torch.cat([yb for _, yb, _ in dl])
    assert not torch.equal(a, b)


def test_loader_shards_are_disjoint():
    x, y = labelled_images(41)
    shards = []
    for rank in range(3):
        dl = D.DeviceLoader(x, y, 5, seed=2, rank=rank, world_size=3, drop_last=True)
        shards.append(set(torch.cat([yb for _, yb, _ in dl]).tolist()))
        assert len(dl) == 13 // 5
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])


def test_loader_augments_and_replays():
    from fastfreq.transforms import SpectralAugment

    x, y = D.synthetic_dataset(32, seed=0)
    dl = D.DeviceLoader(x, y, 16, augment=SpectralAugment(ps_p=0.5), seed=3)
    b1 = [(xb.clone(), p) for xb, _, p in dl]
    b2 = [(xb.clone(), p) for xb, _, p in dl]
    for (xa, pa), (xb, pb) in zip(b1, b2):
        assert torch.equal(xa, xb)  # same epoch, same seed: same batches and augmentations
        assert torch.equal(pa["ps"]["band"], pb["ps"]["band"])
    assert b1[0][0].shape == (16, 3, 32, 32)
    # replaying a batch's params on the padded images gives the same augmentation
    aug = SpectralAugment(ps_p=0.5)
    xp = torch.nn.functional.pad(x[:16].float() / 255, (4, 4, 4, 4))
    out1 = aug(xp)
    out2 = aug(xp, params=aug.last_params)
    assert torch.equal(out1, out2)


def test_loader_bad_arguments():
    x, y = labelled_images(10)
    with pytest.raises(ValueError, match="rank"):
        D.DeviceLoader(x, y, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        D.DeviceLoader(x, y, 0)
    with pytest.raises(ValueError, match="images, labels"):
        D.DeviceLoader(x, y[:5], 4)


# ------------------------------------------------------------------ corruptions
@pytest.mark.parametrize("name", sorted(C.CORRUPTIONS))
def test_corruptions_keep_shape_range_and_grow(name):
    x, _ = D.synthetic_dataset(24, seed=5)
    x = x.float() / 255
    g = torch.Generator().manual_seed(0)
    changes = []
    for s in range(1, 6):
        y = C.corrupt(x, name, s, generator=g)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
        changes.append(float((y - x).abs().mean()))
    if name == "saturate":  # severities 1-2 desaturate, 3-5 saturate (as CIFAR-10-C)
        assert changes[1] > changes[0] and changes[4] > changes[3] > changes[2]
    else:
        assert all(b >= a * 0.98 for a, b in zip(changes, changes[1:])), changes
        assert changes[4] > changes[0]


def test_corruption_bad_input():
    with pytest.raises(ValueError, match="severity"):
        C.contrast(torch.rand(1, 3, 8, 8), 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corrupt(torch.rand(1, 3, 8, 8), "rain", 1)
    with pytest.raises(ValueError, match="RGB"):
        C.brightness(torch.rand(1, 1, 8, 8), 1)
    with pytest.raises(TypeError, match="floating"):
        C.brightness(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 1)


SAMPLE = os.path.join(SHARED_DATA, "CIFAR-10-C-sample")
BUILDER = os.path.join(SHARED_DATA, "build_cifar10.py")


@pytest.fixture(scope="session")
def real_test_batch(tmp_path_factory):
    if not (os.path.exists(SAMPLE) and os.path.exists(BUILDER)):
        pytest.skip("../shared/data (CIFAR-10 archive and CIFAR-10-C sample) not present")
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("cifar")
    subprocess.run([sys.executable, BUILDER, str(out)], check=True, capture_output=True, timeout=600)
    x, _ = D.load_cifar10(str(out), "test")
    return x[:500]


@pytest.mark.slow
def test_corruptions_match_the_cifar10c_sample(real_test_batch):
    """Per severity, the mean absolute change from the clean images is within
    15% of the real CIFAR-10-C sample's (docs/corruptions.md has the table)."""
    table = D.corruption_change_table(real_test_batch, D.CIFAR10C(SAMPLE), sorted(C.CORRUPTIONS))
    for name, rows in table.items():
        for sev, (ours, theirs) in enumerate(rows, 1):
            assert abs(ours / theirs - 1) < 0.15, f"{name} severity {sev}: {ours:.2f} vs {theirs:.2f}"
