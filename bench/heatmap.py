"""Fourier heat map speed: fastfreq.analysis (batched over bases and images)
against the loop over bases of gatheluck/FourierHeatmap, side by side in one
run on the same small CNN, images and batch size.

    python -m bench heatmap                    # 256 images, all 32 x 17 bases
    python -m bench heatmap --images 64 --peer-bases 17

The peer-style loop is the structure of the peer's eval_fourier_heatmap
(commit 1b4ef0f): for each basis a fresh DataLoader pass over the test set
whose per-image transform adds the basis with a random sign per channel,
clamps and normalises, then the batch-mean error. It runs here with
``num_workers=0``: the peer itself starts 8 worker processes per basis,
which costs more, not less, on a 2-core machine. When FASTFREQ_PEER_FHMAP
names a checkout of the peer, its own eval_fourier_heatmap (as shipped, 8
workers) is also timed on the first ``--peer-bases`` bases and its time per
basis reported next to ours (an extrapolation to the full map, marked so).

Writes ``<out>/heatmap-cpu.json`` and ``.md``.
"""
from __future__ import annotations

import json
import os
import platform
import random
import sys
import time

import torch
from torch import nn

from fastfreq import analysis as A

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def small_cnn() -> nn.Module:
    """Two stride-2 3x3 conv layers (8, 16 channels) and a linear head: 0.13 M
    multiply-adds per 32x32 image, so that the loop's per-basis and per-image
    work is visible beside the forward passes (a larger model spends a
    larger share of both methods' time in the same forward passes)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


class _PerImageNoise(torch.utils.data.Dataset):
    """The peer's per-image transform: basis times a random sign per channel,
    added, clamped to [0, 1], normalised."""

    def __init__(self, x, y, basis, normalise, rng):
        self.x, self.y, self.basis, self.normalise, self.rng = x, y, basis, normalise, rng

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        c = self.x.shape[1]
        noise = self.basis.unsqueeze(0).repeat(c, 1, 1)
        for k in range(c):
            noise[k] *= self.rng.randrange(-1, 2, 2)
        return self.normalise(torch.clamp(self.x[i] + noise, 0.0, 1.0)), self.y[i]


@torch.no_grad()
def peer_style(model, x, y, eps, batch_size, n_bases=None, seed=0) -> torch.Tensor:
    """Error (%) per basis, one DataLoader pass over the images per basis."""
    H, W = x.shape[2:]
    n = H * (W // 2 + 1) if n_bases is None else n_bases
    normalise = A.Normalize(MEAN, STD)
    rng = random.Random(seed)
    errors = torch.zeros(n)
    for f in range(n):
        basis = A.fourier_basis(H, W, eps, start=f, stop=f + 1)[0]
        loader = torch.utils.data.DataLoader(_PerImageNoise(x, y, basis, lambda t: normalise(t[None])[0], rng),
                                             batch_size=batch_size, shuffle=False, num_workers=0)
        errs = [100.0 * (model(xb).argmax(1) != yb).float().mean().item() for xb, yb in loader]
        errors[f] = sum(errs) / len(errs)
    return errors


def peer_itself(model, x, y, eps, batch_size, n_bases):
    """Seconds per basis of the peer's own eval_fourier_heatmap (as shipped)
    on its first ``n_bases`` bases; None without FASTFREQ_PEER_FHMAP."""
    path = os.environ.get("FASTFREQ_PEER_FHMAP")
    if not path:
        return None
    import types

    import torchvision as tv

    sys.modules.setdefault("seaborn", types.ModuleType("seaborn"))  # only its plotting needs it
    sys.path.insert(0, path)
    import fhmap
    from fhmap.fourier import heatmap as peer_heatmap

    class Images(torch.utils.data.Dataset):
        transform = tv.transforms.Compose([tv.transforms.ConvertImageDtype(torch.float32),
                                           tv.transforms.Normalize(MEAN, STD)])

        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return self.transform(x[i].clone()), int(y[i])

    full = peer_heatmap.fourier.get_spectrum
    peer_heatmap.fourier.get_spectrum = lambda *a, **k: (s for _, s in zip(range(n_bases), full(*a, **k)))
    try:  # the bases not visited stay 0 in its map: only the time is used
        t0 = time.perf_counter()
        fhmap.eval_fourier_heatmap(x.shape[2], 0, eps, model, Images(), batch_size, torch.device("cpu"), (1,))
        return (time.perf_counter() - t0) / n_bases
    finally:
        peer_heatmap.fourier.get_spectrum = full


def run(a) -> dict:
    model = small_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (a.images,), generator=g)
    normalise = A.Normalize(MEAN, STD)
    bs = a.heatmap_batch
    n_bases = 32 * 17
    # warm-up (allocator, oneDNN primitives for this batch shape): a map of 8 images
    A.fourier_heatmap(model, x[:8], y[:8], input_transform=normalise, batch_size=bs, progress=False)
    rows = []
    times = {}
    for label, kw in ((f"fastfreq batched, batch {bs}", {"batch_size": bs}),
                      ("fastfreq batched, batch from the memory budget", {})):
        t0 = time.perf_counter()
        hm = A.fourier_heatmap(model, x, y, input_transform=normalise, progress=False, **kw)
        times[label] = time.perf_counter() - t0
        rows.append({"method": label, "batch": hm.batch_size, "bases": n_bases, "seconds": times[label]})
        print(f"{label}: {times[label]:.1f} s (batch {hm.batch_size})", flush=True)
    t0 = time.perf_counter()
    peer_style(model, x, y, 4.0, bs)
    t_peer = time.perf_counter() - t0
    rows.append({"method": f"peer-style loop over bases, batch {bs}, num_workers=0", "batch": bs,
                 "bases": n_bases, "seconds": t_peer})
    print(f"peer-style loop: {t_peer:.1f} s", flush=True)
    per_basis = peer_itself(model, x, y, 4.0, bs, a.peer_bases)
    if per_basis is not None:
        rows.append({"method": f"gatheluck/FourierHeatmap eval_fourier_heatmap as shipped (8 workers), batch {bs}",
                     "batch": bs, "bases": a.peer_bases, "seconds_per_basis": per_basis,
                     "seconds": per_basis * n_bases, "extrapolated": True})
        print(f"peer as shipped: {per_basis:.2f} s per basis -> {per_basis * n_bases:.0f} s for the map "
              "(extrapolated)", flush=True)
    ours = times[f"fastfreq batched, batch {bs}"]
    for r in rows:
        r["speedup_of_fastfreq_same_batch"] = r["seconds"] / ours
    info = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_average_1min": os.getloadavg()[0], "images": a.images, "image_size": 32,
            "model": "small CNN, 2 stride-2 conv layers (8/16 ch), 0.13 M MAC per image",
            "forward_passes": a.images * n_bases}
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, "heatmap-cpu")
    with open(stem + ".json", "w") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    md = ["| method | batch | seconds | fastfreq (same batch) faster by |", "|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['method']}{' (extrapolated)' if r.get('extrapolated') else ''} | {r['batch']} | "
                  f"{r['seconds']:.1f} | {r['speedup_of_fastfreq_same_batch']:.1f}x |")
    with open(stem + ".md", "w") as f:
        f.write(f"# Fourier heat map, CPU: {json.dumps(info)}\n\n" + "\n".join(md) + "\n")
    print("\n".join(md))
    print(f"wrote {stem}.json and .md")
    return {"info": info, "rows": rows}
