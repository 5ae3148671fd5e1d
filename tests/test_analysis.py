"""Fourier heat map (fastfreq.analysis), the PDM input transform, the report
and its CLI, and the comparison with gatheluck/FourierHeatmap (the peer).

The peer test runs when FASTFREQ_PEER_FHMAP names a checkout of
https://github.com/gatheluck/FourierHeatmap (compared at commit
1b4ef0f846d59466e0575b968ba0105dd07e2c7e; see docs/analysis.md)."""
import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from fastfreq import analysis as A
from fastfreq import pdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _small_cnn(C=3, classes=4, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(C, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, classes))


def _numpy_heatmap(weight, bias, x, labels, eps, signs, mean, std):
    """Yin et al.'s protocol in NumPy float64 for a linear classifier
    ``logits = W vec((x' - mean) / std) + b``: the basis of frequency (i, j)
    is the inverse rfft2 of a one-hot half spectrum, normalised to L2 norm
    ``eps``; x' = clip(x + sign * basis per channel, 0, 1)."""
    N, C, H, W = x.shape
    Wh = W // 2 + 1
    err, loss = np.zeros((H, Wh)), np.zeros((H, Wh))
    m, s = np.asarray(mean)[:, None, None], np.asarray(std)[:, None, None]
    for i in range(H):
        for j in range(Wh):
            spec = np.zeros((H, Wh))
            spec[i, j] = 1.0
            u = np.fft.irfft2(spec, s=(H, W))
            u *= eps / np.linalg.norm(u)
            r = signs[i * Wh + j]  # (N, C)
            xp = np.clip(x + r[:, :, None, None] * u, 0.0, 1.0)
            logits = ((xp - m) / s).reshape(N, -1) @ weight.T + bias
            lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
            loss[i, j] = np.mean(lse - logits[np.arange(N), labels])
            err[i, j] = np.mean(logits.argmax(1) != labels)
    return err, loss


@pytest.mark.parametrize("H,W", [(8, 8), (6, 7)])
def test_heatmap_equals_an_independent_numpy_computation(H, W):
    g = torch.Generator().manual_seed(H * W)
    N, C, K = 12, 3, 5
    x = torch.rand(N, C, H, W, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (N,), generator=g)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K)).double()
    with torch.no_grad():
        lin[1].weight.normal_(0, 1, generator=g)
        lin[1].bias.normal_(0, 0.1, generator=g)
    eps = 3.0
    hm = A.fourier_heatmap(lin, x, y, eps, input_transform=A.Normalize(MEAN, STD), seed=7, batch_size=10,
                           progress=False)
    n_freq = H * (W // 2 + 1)
    signs = A.basis_signs(7, 0, n_freq * N * C).view(n_freq, N, C).double().numpy()
    err, loss = _numpy_heatmap(lin[1].weight.detach().numpy(), lin[1].bias.detach().numpy(), x.numpy(),
                               y.numpy(), eps, signs, MEAN, STD)
    assert hm.error.shape == (H, W // 2 + 1)
    np.testing.assert_allclose(hm.loss.numpy(), loss, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(hm.error.numpy(), err)
    assert 0 < err.mean() < 1  # the check would be vacuous on an all-right or all-wrong model
    # clean values: the same linear model without perturbation
    logits = lin(A.Normalize(MEAN, STD)(x)).detach()
    assert hm.clean_error == pytest.approx(float((logits.argmax(1) != y).double().mean()))
    assert hm.clean_loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-12)


def test_chunking_device_order_and_seed():
    model = _small_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (10,), generator=g)
    runs = [A.fourier_heatmap(model, x, y, 2.0, seed=3, batch_size=b, progress=False) for b in (1, 7, 25, 10_000)]
    for r in runs[1:]:
        torch.testing.assert_close(r.error, runs[0].error, rtol=0, atol=0)
        torch.testing.assert_close(r.loss, runs[0].loss, rtol=1e-6, atol=1e-7)
    other = A.fourier_heatmap(model, x, y, 2.0, seed=4, progress=False)
    assert not torch.equal(other.loss, runs[0].loss)
    assert model.training  # the model's own mode is given back


def test_signs_are_a_balanced_sliceable_stream():
    s = A.basis_signs(11, 0, 200_000)
    assert set(s.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(s.mean())) < 4 / math.sqrt(len(s))  # 4 sigma of a fair coin
    torch.testing.assert_close(A.basis_signs(11, 1234, 5678), s[1234:5678], rtol=0, atol=0)
    assert (A.basis_signs(12, 0, 1000) != s[:1000]).float().mean() > 0.4


def test_full_plane_mirrors_through_the_origin():
    H, W = 4, 5  # half plane 4 x 3
    half = torch.arange(12.).view(4, 3)
    full = A.full_plane(half, W)
    # kx = -1 (column 4) and -2 (column 3) take (-ky, +1) and (-ky, +2); rows -ky: 0, 3, 2, 1
    want = torch.tensor([[0, 1, 2, 2, 1],
                         [3, 4, 5, 11, 10],
                         [6, 7, 8, 8, 7],
                         [9, 10, 11, 5, 4]], dtype=torch.float32)
    torch.testing.assert_close(full, want)


def _known_heatmap(values):
    H, Wh = values.shape
    return A.FourierHeatmap(error=values, loss=2 * values, clean_error=0.1, clean_loss=0.2, eps=4.0, seed=0,
                            n_images=1, image_size=(H, 2 * (Wh - 1)), batch_size=1, seconds=0.0)


def test_radial_profile_and_band_means_by_hand():
    H = W = 32
    ky = np.fft.fftfreq(H, 1 / H)[:, None]
    kx = np.arange(W // 2 + 1)[None, :]
    r = np.hypot(ky, kx)
    hm = _known_heatmap(torch.from_numpy(r.copy()))
    p = hm.radial_profile()
    for k, v, c in zip(p["radius"], p["value"], p["count"]):
        sel = np.round(r) == k
        assert c == sel.sum() and v == pytest.approx(r[sel].mean())
    assert sum(p["count"]) == H * (W // 2 + 1) and p["radius"][0] == 0 and p["value"][0] == 0
    region = torch.from_numpy(np.where(r < 9.5, 1.0, np.where(r < 15.5, 2.0, 3.0)))
    assert _known_heatmap(region).band_means() == {"L": 1.0, "M": 2.0, "H": 3.0}
    assert _known_heatmap(region).band_means("loss") == {"L": 2.0, "M": 4.0, "H": 6.0}
    c = hm.centred()
    assert c.shape == (32, 32) and c[16, 16] == 0 and c[16, 17] == 1 and c[16, 15] == 1 and c[0, 0] == math.hypot(16, 16)


def test_pdm_input_transform_is_applied_to_the_probes():
    """Hand-worked: a first block returning its input has, for the DC probe
    of channel c, the spatial mean 0.5 + t / sqrt(HW) on channel c (0.5
    elsewhere); through (x - 0.5) / 0.25 that is 4 t / sqrt(HW) (0 elsewhere)."""
    H = W = 6
    t = 3.0
    plain = pdm.frequency_response(lambda x: x, 2, H, W, t)
    seen = pdm.frequency_response(lambda x: x, 2, H, W, t, input_transform=lambda x: (x - 0.5) / 0.25)
    dc = t / math.sqrt(H * W)
    torch.testing.assert_close(plain[0, 0, 0, 0], torch.tensor(0.5 + dc))
    torch.testing.assert_close(seen[0, 0, 0, 0], torch.tensor(4 * dc))
    torch.testing.assert_close(seen[1, 0, 0, 0], torch.tensor(0.0))
    # a grating of non-zero frequency has zero mean
    assert seen[:, :, 1:, :].abs().max() < 1e-5 and seen[:, :, :, 1:].abs().max() < 1e-5


@pytest.mark.parametrize("call,exc,match", [
    (lambda m, x, y: A.fourier_heatmap(m, x, y[:3]), ValueError, "labels: expected a 1-D integer tensor of 4"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y.float()), ValueError, "labels: expected a 1-D integer"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y + 10), ValueError, r"labels: expected class indices in \[0, 4\)"),
    (lambda m, x, y: A.fourier_heatmap(m, x[0], y), ValueError, r"images: expected a non-empty \(N, C, H, W\)"),
    (lambda m, x, y: A.fourier_heatmap(m, (x - 0.5) / 0.25, y), ValueError, "pass the images before normalisation"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y, -1.0), ValueError, "eps"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y, batch_size=0), ValueError, "batch_size: expected None or a positive"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y, memory_budget=-5), ValueError, "memory_budget"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y, seed=-1), ValueError, "seed: expected an int"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y, pixel_range=(1, 0)), ValueError, "pixel_range: expected lo < hi"),
    (lambda m, x, y: A.fourier_heatmap(m, x, y, input_transform=3), TypeError, "input_transform"),
    (lambda m, x, y: A.fourier_heatmap(lambda b: b.mean((1, 2, 3)), x, y), ValueError, r"model: expected \(B, classes\)"),
    (lambda m, x, y: pdm.frequency_response(lambda b: b, 3, 8, 8, input_transform="no"), TypeError, "input_transform"),
])
def test_bad_input_names_the_argument(call, exc, match):
    m = _small_cnn()
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    with pytest.raises(exc, match=match):
        call(m, x, y)


def test_uint8_images_and_batch_from_a_memory_budget():
    m = _small_cnn()
    x8 = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 4, (6,))
    a = A.fourier_heatmap(m, x8, y, progress=False)
    b = A.fourier_heatmap(m, x8.float() / 255, y, progress=False)
    torch.testing.assert_close(a.loss, b.loss)
    per = A.sample_bytes(m, x8.float())
    assert A.auto_batch_size(per, "cpu", memory_budget=10 * per) == 10
    assert A.fourier_heatmap(m, x8, y, memory_budget=3 * per, progress=False).batch_size == 3


def test_report_files_and_numbers(tmp_path):
    g = torch.Generator().manual_seed(1)
    m = _small_cnn()
    x, y = torch.rand(5, 3, 8, 8, generator=g), torch.randint(0, 4, (5,), generator=g)
    hm = A.fourier_heatmap(m, x, y, progress=False)
    res = pdm.analyse(lambda b: m[1](m[0](b)), 3, 8, 8)
    acc = {"fog": [90.0, 80, 70, 60, 50], "snow": [95.0, 90, 85, 80, 75]}
    paths = A.write_report(str(tmp_path), hm, pdm=res, corruption_acc=acc, clean_acc=97.5, title="t",
                           meta={"model": "small"})
    for key in ("heatmap", "heatmap_loss", "radial_profile", "pdm", "corruptions", "summary"):
        assert os.path.getsize(paths[key]) > 1000 and paths[key].endswith(".png")
    rep = json.load(open(paths["json"]))
    assert rep["fourier_heatmap"]["error"] == hm.error.tolist()
    assert rep["fourier_heatmap"]["band_means"]["error"] == hm.band_means()
    assert rep["pdm"]["band_shares"] == res["band_shares"] and rep["corruption_acc"] == acc
    md = open(paths["markdown"]).read()
    for key in ("summary", "pdm", "corruptions"):
        assert f"]({os.path.basename(paths[key])})" in md
    assert "| fog | 90.0 | 80.0 | 70.0 | 60.0 | 50.0 | 70.0 |" in md


# ------------------------------------------------------------------ the CLI

def _cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "train.analyse", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from train import engine
    from train.presets import get_preset

    cfg = get_preset("demo-nat", n_test=16, device="cpu")
    torch.manual_seed(0)
    net = engine.build_net(cfg)
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    torch.save({"epoch": 0, "config": cfg.to_dict(), "net": net.state_dict(), "opt": {}, "sched": {},
                "history": [], "rng_cpu": torch.get_rng_state()}, path)
    json.dump({"clean_acc": 50.0, "corruption_acc": {"fog": [50.0, 40, 30, 20, 10]}},
              open(path.parent / "results.json", "w"))
    return path


def test_cli_writes_the_report_of_a_checkpoint(checkpoint, tmp_path):
    out = _cli(str(checkpoint.parent), "--n-images", "3", "--out", str(tmp_path / "rep"), "--seed", "2")
    assert out.returncode == 0, out.stderr
    rep = json.load(open(tmp_path / "rep" / "report.json"))
    assert rep["fourier_heatmap"]["n_images"] == 3 and rep["fourier_heatmap"]["seed"] == 2
    assert len(rep["fourier_heatmap"]["error"]) == 32 and len(rep["fourier_heatmap"]["error"][0]) == 17
    assert rep["corruption_acc"] == {"fog": [50.0, 40, 30, 20, 10]} and "band_shares" in rep["pdm"]
    assert (tmp_path / "rep" / "corruptions.png").exists() and (tmp_path / "rep" / "report.md").exists()


@pytest.mark.parametrize("args,match", [
    (["/nonexistent/run"], "run: /nonexistent/run does not exist"),
    (["{ckpt}", "--n-images", "0"], "--n-images: expected a positive integer"),
    (["{ckpt}", "--eps", "-1"], "eps"),
    (["{ckpt}", "--memory-budget", "lots"], "--memory-budget: expected bytes"),
])
def test_cli_bad_input_is_one_error_line(checkpoint, args, match):
    out = _cli(*[a.format(ckpt=checkpoint) for a in args], timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and match in out.stderr


# ------------------------------------------------------------------ the peer

PEER = os.environ.get("FASTFREQ_PEER_FHMAP")


@pytest.mark.skipif(not PEER, reason="FASTFREQ_PEER_FHMAP (a gatheluck/FourierHeatmap checkout) not set")
def test_heatmap_equals_gatheluck_fourierheatmap(monkeypatch):
    """The peer's own eval_fourier_heatmap (its bases, noise transform,
    evaluation loop and map assembly) on the same model, images and signs.
    Two things are changed, neither in its arithmetic: its DataLoader runs in
    this process (num_workers=0), so that its per-channel signs, drawn with
    random.randrange, can be fed ours; seaborn, which only its plotting
    imports, is stubbed when absent."""
    tv = pytest.importorskip("torchvision")
    if "seaborn" not in sys.modules:
        try:
            import seaborn  # noqa: F401
        except ImportError:
            monkeypatch.setitem(sys.modules, "seaborn", types.ModuleType("seaborn"))
    monkeypatch.syspath_prepend(PEER)
    import fhmap
    from fhmap.fourier import heatmap as peer_heatmap
    from fhmap.fourier import noise as peer_noise

    H = 16
    N, C, bs, eps = 32, 3, 16, 4.0
    g = torch.Generator().manual_seed(5)
    x = torch.rand(N, C, H, H, generator=g)
    y = torch.randint(0, 4, (N,), generator=g)
    model = _small_cnn().eval()
    normalise = tv.transforms.Normalize(MEAN, STD)

    ours = A.fourier_heatmap(model, x, y, eps, input_transform=normalise, seed=9, batch_size=100,
                             progress=False)

    # the peer visits the half plane from row H/2 (ky = -H/2) on, images in
    # order, channels 0, 1, 2: feed it our sign of each (basis, image, channel)
    Wh = H // 2 + 1
    signs = A.basis_signs(9, 0, H * Wh * N * C).view(H, Wh, N, C)
    order = signs[(torch.arange(H) + H // 2) % H].reshape(-1).long().tolist()
    stream = iter(order)
    monkeypatch.setattr(peer_noise, "random", types.SimpleNamespace(randrange=lambda *a: next(stream)))
    monkeypatch.setattr(peer_heatmap, "DataLoader", lambda *a, **kw: torch.utils.data.DataLoader(
        *a, **{**kw, "num_workers": 0, "pin_memory": False}))

    class Images(torch.utils.data.Dataset):
        transform = tv.transforms.Compose([tv.transforms.ConvertImageDtype(torch.float32), normalise])

        def __len__(self):
            return N

        def __getitem__(self, i):
            return self.transform(x[i].clone()), int(y[i])

    theirs = fhmap.eval_fourier_heatmap(H, 0, eps, model, Images(), bs, torch.device("cpu"), (1,))[0]
    assert next(stream, None) is None  # every sign was used once
    # the peer drops the Nyquist row and column and reports percent
    mine = 100 * ours.centred()[1:, 1:]
    assert theirs.shape == mine.shape == (H - 1, H - 1)
    assert 5 < float(mine.mean()) < 95
    torch.testing.assert_close(theirs.double(), mine, rtol=0, atol=1e-4)
