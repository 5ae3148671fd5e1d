"""The demo of the README's Quick start: runs on a built-in batch, no download.

1. Equivalence: every backend that can run here against the NumPy reference
   on the same images, parameters and noise (max error per backend).
2. Throughput: images/s of power suppression + NFD for each backend.
3. Figures like the paper's Fig. 3 and Fig. 4.

Results go to ``--out`` (default ``out/demo``) as JSON and PNG.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from . import functional as FF
from . import reference as ref
from .backends import ext
from .constants import PAPER_BANDS
from .figures import nfd_grid, power_suppression_grid
from .samples import sample_batch


def available_backends():
    """(backend, device) pairs to show: the backends this machine runs on the
    CPU and, when there is one, on the GPU (the NumPy reference on the CPU
    only; Triton on a GPU only, not under its CPU interpreter)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [(b, dev) for dev in devices for b in FF.available_backends(dev)
            if not (dev == "cuda" and b == "numpy") and not (dev == "cpu" and b == "triton")]


def equivalence_table(x: torch.Tensor, seed: int = 0):
    g = np.random.default_rng(seed)
    B, C, H, W = x.shape
    band = np.arange(B) % 3
    alpha = g.random(B)
    alpha_r = g.random((B, len(PAPER_BANDS)))
    noise = g.standard_normal((B, C, H, W // 2 + 1))
    want = ref.spectral_augment(x.double().numpy(), band, alpha, alpha_r, noise)
    rows = []
    for backend, device in available_backends():
        for dtype in (torch.float32, torch.float64):
            if backend == "triton" and dtype == torch.float64:
                continue  # the Triton kernel computes in float32 and refuses float64
            t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
            out = FF.spectral_augment(x.to(device, dtype), t(band), t(alpha), t(alpha_r), t(noise),
                                     backend=backend)
            err = float(np.abs(out.double().cpu().numpy() - want).max())
            rows.append(dict(backend=backend, device=device, dtype=str(dtype).replace("torch.", ""),
                             max_abs_error=err))
    return rows


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def throughput_table(batch: int = 256, size: int = 40, repeats: int = 5):
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    rows = []
    for backend, device in available_backends():
        xd = x.to(device)
        band = torch.randint(0, 3, (batch,), device=device)
        alpha = torch.rand(batch, device=device)
        alpha_r = torch.rand(batch, 5, device=device)
        n = batch if backend != "numpy" else min(batch, 64)

        def step():
            FF.spectral_augment(xd[:n], band[:n], alpha[:n], alpha_r[:n], backend=backend,
                               check_values=False)
            _sync(device)

        step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        rows.append(dict(backend=backend, device=device, batch=n, median_s=med,
                         images_per_s=n / med))
    base = next(r["images_per_s"] for r in rows if r["backend"] == "torch" and r["device"] == "cpu")
    for r in rows:
        if r["device"] == "cpu":
            r["vs_torch_cpu"] = r["images_per_s"] / base
    return rows


def print_table(rows, cols, title):
    print(f"\n{title}")
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths)))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/demo", help="folder for JSON and PNG results")
    ap.add_argument("--batch", type=int, default=256, help="batch size of the throughput table")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error(f"--batch: expected a positive int, got {args.batch}")
    torch.manual_seed(args.seed)
    print(f"fastfreq demo: torch {torch.__version__}, extension "
          f"{'yes' if ext.available() else 'no (' + str(ext.LOAD_ERROR) + ')'}"
          f"{', CUDA part' if ext.has_cuda() else ''}, GPU: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    x = sample_batch(8, 40, seed=args.seed)
    eq = equivalence_table(x, args.seed)
    print_table(eq, ["backend", "device", "dtype", "max_abs_error"],
                "Equivalence with the NumPy reference (8 images 3x40x40, PS + NFD, same noise)")
    tp = throughput_table(args.batch)
    print_table(tp, ["backend", "device", "batch", "images_per_s", "vs_torch_cpu"],
                "Throughput, PS + NFD fused, 3x40x40 float32 "
                f"(median of 5; {platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} threads)")
    os.makedirs(args.out, exist_ok=True)
    figs = [power_suppression_grid(x[0], os.path.join(args.out, "power_suppression.png")),
            nfd_grid(x[0], os.path.join(args.out, "nfd.png"), seed=args.seed)]
    with open(os.path.join(args.out, "demo.json"), "w") as f:
        json.dump(dict(torch=torch.__version__, equivalence=eq, throughput=tp, figures=figs), f, indent=1)
    print(f"\nwrote {args.out}/demo.json and the figures {', '.join(os.path.basename(p) for p in figs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
