"""Throughput benchmark of fastfreq's backends (and end-to-end training overhead).

    fastfreq-bench                       # CPU grid: batches 1..2048, 32/40/64, fp32/fp16
    fastfreq-bench --quick               # a small grid (batch 128/1024, 40x40, fp32)
    fastfreq-bench e2e                   # training throughput with / without augmentation
    fastfreq-bench --device cuda         # on a GPU: batches up to 8192, % of bandwidth bound
    fastfreq-bench aot [--gate] [--full] # GPU kernel resources and a static estimate (no GPU)
    fastfreq-bench precision --device cuda   # Triton error per precision vs the reference
    fastfreq-bench contention            # CPU: 1/2 threads, quiet and beside a busy process
    fastfreq-bench heatmap               # CPU: batched Fourier heat map vs the peer's loop over bases
    fastfreq-bench module [--device cuda] # a module forward beside one bare op call, op counts

Writes ``<out>/<device-name>.json`` (device, versions, every figure),
``<device-name>.md`` (the table) and ``<device-name>.png`` (images/s vs batch).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time

import torch

from . import core


def _name(info: dict) -> str:
    raw = info.get("gpu") or f"cpu-{info.get('threads')}threads"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-")


def format_table(rows, device: str) -> str:
    cols = ["backend", "op", "batch", "size", "dtype", "images_per_s", "iqr_pct", "speedup_vs_torch"]
    if device == "cuda":
        cols.append("pct_of_bound")
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = []
    for r in rows:
        r = dict(r, iqr_pct=100 * r["iqr_s"] / r["median_s"])
        cells = []
        for c in cols:
            v = r.get(c, "")
            if c == "images_per_s":
                v = f"{v:,.0f}"
            elif isinstance(v, float):
                v = f"{v:.2f}"
            cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def plot(rows, path: str, title: str):
    from fastfreq.figures import save, subplots

    keys = sorted({(r["op"], r["size"], r["dtype"]) for r in rows})
    fig, axes = subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, (op, size, dtype) in zip(axes[0], keys):
        for backend in sorted({r["backend"] for r in rows}):
            pts = sorted((r["batch"], r["images_per_s"]) for r in rows
                         if (r["backend"], r["op"], r["size"], r["dtype"]) == (backend, op, size, dtype))
            if pts:
                ax.plot(*zip(*pts), marker="o", label=backend)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("images/s")
        ax.set_title(f"{op} {size}x{size} {dtype}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    save(fig, path)


def throughput(a) -> dict:
    device = a.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no GPU: GPU rows are not measured on this machine", file=sys.stderr)
        return {}
    gpu = device == "cuda"
    batches = a.batches or ([128, 1024] if a.quick else ([1, 128, 1024, 8192] if gpu else [1, 128, 1024, 2048]))
    sizes = a.sizes or ([40] if a.quick else [32, 40, 64])
    dtypes = [getattr(torch, d) for d in (a.dtypes or (["float32"] if a.quick else ["float32", "float16"]))]
    ops = a.ops or (["both"] if a.quick else list(core.OPS))
    backends = a.backends or core.available_backends(device)
    info, rows = core.measure(backends, ops, batches, sizes, dtypes, device, repeats=a.repeats,
                              compile_max_cases=None if a.compile_all else 2)
    info["date"] = time.strftime("%Y-%m-%d")
    if not gpu:
        info["note"] = "no GPU on this machine: GPU backends (cuda, triton) not measured"
    os.makedirs(a.out, exist_ok=True)
    stem = os.path.join(a.out, _name(info))
    with open(stem + ".json", "w") as f:
        json.dump({"info": info, "rows": rows}, f, indent=1)
    table = format_table(rows, device)
    title = f"{info.get('gpu') or info.get('cpu')} ({info['threads']} threads), torch {info['torch']}, {info['date']}"
    with open(stem + ".md", "w") as f:
        f.write(f"# Throughput: {title}\n\nImages/s of one augmentation call (median of repeats, IQR in % "
                "of the median); speedup over the eager torch backend at the same setting.\n\n" + table)
    plot(rows, stem + ".png", title)
    print(table)
    print(f"wrote {stem}.json, .md and .png")
    return {"info": info, "rows": rows}


def e2e(a) -> dict:
    """Training throughput of one epoch with and without on-device augmentation."""
    if __package__ == "fastfreq.bench":  # installed: train/ is fastfreq.train
        from fastfreq.train.engine import Trainer
        from fastfreq.train.presets import get_preset
    else:  # a checkout: python -m bench
        from train.engine import Trainer
        from train.presets import get_preset

    gpu = torch.cuda.is_available() and a.device != "cpu"
    model = "resnet18" if gpu else "tiny"
    out = {}
    with tempfile.TemporaryDirectory() as runs:
        for label, aug in (("no augmentation", {}), ("PS + NFD", {"ps": True, "nfd": True})):
            cfg = get_preset("demo-nat", model=model, epochs=2, n_train=a.e2e_images, n_test=100,
                             device="cuda" if gpu else "cpu", **aug)
            cfg.preset = f"bench-e2e-{'aug' if aug else 'plain'}"
            t = Trainer(cfg, runs, progress=False)
            t.train_epoch(0)  # warm-up epoch (allocations, cuDNN autotune)
            stats = t.train_epoch(1)
            t.lock.release()
            out[label] = stats["images_per_s"]
            print(f"{model} {label}: {stats['images_per_s']:,.0f} images/s")
    overhead = 100 * (out["no augmentation"] / out["PS + NFD"] - 1)
    print(f"augmentation overhead: {overhead:.1f}% of the training step time")
    res = {"model": model, "device": "cuda" if gpu else "cpu", "images_per_s": out,
           "overhead_pct": overhead, "images": a.e2e_images}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"e2e-{'gpu' if gpu else 'cpu'}.json"), "w") as f:
        json.dump(res, f, indent=1)
    return res


def precision(a) -> dict:
    """Max error of the Triton kernel per precision against the reference,
    relative to the output's value range (random [0, 1] images, PS + NFD with
    explicit noise), next to the 8-bit quantisation step 1/255."""
    import numpy as np

    import fastfreq
    from fastfreq import reference as ref
    from fastfreq.backends import triton_kernel

    device = a.device
    rows = []
    for size in a.sizes or [32, 40, 64]:
        g = np.random.default_rng(size)
        B = 64
        x = g.random((B, 3, size, size)).astype(np.float32)
        band, alpha, ar = np.arange(B) % 3, g.random(B), g.random((B, 5))
        noise = g.standard_normal((B, 3, size, size // 2 + 1))
        want = ref.spectral_augment(x.astype(np.float64), band, alpha, ar, noise)
        t = lambda v, dt=None: torch.as_tensor(v, device=device, dtype=dt)  # noqa: E731
        for prec in triton_kernel.PRECISIONS:
            out = fastfreq.spectral_augment(t(x), t(band), t(alpha), t(ar), t(noise),
                                            backend="triton", precision=prec)
            err = float(np.abs(out.double().cpu().numpy() - want).max() / np.ptp(want))
            rows.append({"size": size, "precision": prec, "max_err_of_range": err,
                         "quantisation_steps": err * 255})
            print(f"{size}x{size} {prec:7s} max error {err:.2e} of the range = "
                  f"{err * 255:.3f} of an 8-bit step", flush=True)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"precision-{device}.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                   "rows": rows}, f, indent=1)
    return {"rows": rows}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and every option's default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, argparse.SUPPRESS) and action.default is not False \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def parser():
    ap = argparse.ArgumentParser(prog="fastfreq-bench", description=__doc__,
                                 formatter_class=_HelpFormatter)
    ap.add_argument("what", nargs="?", default="throughput",
                    choices=["throughput", "e2e", "aot", "precision", "contention",
                             "heatmap", "module"],
                    help="which benchmark")
    ap.add_argument("--rounds", type=int, default=7, help="contention, module: interleaved rounds")
    ap.add_argument("--batch", type=int, default=1024, help="contention: images per call")
    ap.add_argument("--size", type=int, default=40, help="contention: image side")
    ap.add_argument("--arch", type=int, nargs="+", default=[90], help="aot: SM architectures (90, 80)")
    ap.add_argument("--full", action="store_true", help="aot: every shipped configuration")
    ap.add_argument("--gate", action="store_true", help="aot: exit 1 if a default 32/40 config spills")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to time")
    ap.add_argument("--quick", action="store_true", help="a small grid")
    ap.add_argument("--batches", type=int, nargs="+",
                    help="throughput: batch sizes (default: 1 128 1024 2048 on CPU, 1 128 1024 8192 "
                         "on CUDA, 128 1024 with --quick); module: 128 512")
    ap.add_argument("--sizes", type=int, nargs="+",
                    help="throughput: image sides (default: 32 40 64; 40 with --quick)")
    ap.add_argument("--dtypes", nargs="+", choices=["float32", "float16", "bfloat16", "float64"],
                    help="throughput: dtypes (default: float32 float16; float32 with --quick)")
    ap.add_argument("--ops", nargs="+", choices=list(core.OPS),
                    help="throughput: operations (default: all; both with --quick); "
                         "module: both (default) and/or ps")
    ap.add_argument("--backends", nargs="+",
                    help="throughput, contention, module: backends to time (default: every one "
                         "this machine runs; contention: cpp torch; module: auto)")
    ap.add_argument("--repeats", type=int, default=10, help="throughput: interleaved rounds")
    ap.add_argument("--compile-all", action="store_true",
                    help="time torch.compile of the eager code at every setting (default: first 2)")
    ap.add_argument("--e2e-images", type=int, default=4096, help="training images per epoch (e2e)")
    ap.add_argument("--images", type=int, default=256, help="heatmap: test images")
    ap.add_argument("--heatmap-batch", type=int, default=256, help="heatmap: batch size of both methods")
    ap.add_argument("--peer-bases", type=int, default=17,
                    help="heatmap: bases timed with the peer's own code (FASTFREQ_PEER_FHMAP)")
    ap.add_argument("--out", default="out/bench",
                    help="output folder (untracked; the committed tables in bench/results "
                         "are copied there on purpose)")
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    for name in ("rounds", "batch", "size", "images", "heatmap_batch", "peer_bases"):
        if getattr(a, name) < 1:
            parser().error(f"--{name.replace('_', '-')}: expected a positive integer")
    for name in ("batches", "sizes"):
        if any(v < 1 for v in (getattr(a, name) or [])):
            parser().error(f"--{name}: expected positive integers")
    if a.what == "aot":
        from fastfreq.backends import triton_kernel

        problem = triton_kernel.version_problem()
        if problem is not None:  # the report compiles the Triton kernel ahead of time
            print(f"error: aot: compiles the Triton kernel (no GPU needed, but Triton is): "
                  f"{problem}", file=sys.stderr)
            return 2
        from . import aot

        return aot.report(a.arch, full=a.full, out=a.out, gate=a.gate)
    if a.what == "contention":
        from . import contention

        contention.run(a)
    elif a.what == "module":
        from . import module

        module.run(a)
    elif a.what == "heatmap":
        from . import heatmap

        heatmap.run(a)
    elif a.what == "precision":
        if a.device == "cuda" and not torch.cuda.is_available():
            print("error: --device cuda: no CUDA GPU on this machine (the precision check times "
                  "the compiled Triton kernel on one)", file=sys.stderr)
            return 2
        precision(a)
    elif a.what == "e2e":
        e2e(a)
    else:
        throughput(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
