"""The cost of a module forward beside one bare op call (issue 23).

    fastfreq-bench module [--device cuda] [--batches 128 512] [--rounds 15]
                          [--backends auto single_pass] [--ops both ps]

For each batch: ``SpectralAugment(ps_p=1/3, sigma=1)`` forward (the draw in
the op; ``--ops ps``: with ``nfd_p=0``, so 2/3 of the images are drawn by no
transform) and one bare ``spectral_augment`` call with explicit parameters for
the whole batch (same backend, same images, ``check_values=False``), timed in
interleaved rounds (A, B, A, B, ...) so that a busy machine slows both alike;
the ratio of the medians is the module's overhead. Also counts the module
forward's top-level ops (torch.profiler, CPU) and, on a GPU, its CUDA kernel
launches. Writes ``<out>/module-<device>.json`` and prints a table.
"""
from __future__ import annotations

import json
import os
import statistics
import time

import torch

import fastfreq
from fastfreq.constants import PAPER_BANDS

from . import core


def _timer(device: str):
    if device == "cuda":
        def run(fn):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            return s.elapsed_time(e) / 1e3
    else:
        def run(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return run


def count_ops(fn, device: str) -> dict:
    """Top-level ops (CPU profiler events without a parent) and, on a GPU,
    CUDA kernels of one call of ``fn``."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    events = prof.events()
    top = [e.name for e in events if e.cpu_parent is None and e.device_type.name == "CPU"]
    out = {"top_level_ops": len(top), "ops": top}
    if device == "cuda":
        out["cuda_kernels"] = sum(1 for e in events if e.device_type.name == "CUDA")
    return out


def compare(batch: int, device: str, rounds: int, size: int = 40, backend: str = "auto",
            op: str = "both") -> dict:
    """op "both": PS (p = 1/3) + NFD (p = 1); "ps": PS alone (p = 1/3), where
    2/3 of the images are drawn by no transform (the bare call still
    transforms all of them, with gain 1)."""
    if op not in ("both", "ps"):
        raise SystemExit(f"error: --ops: module times 'both' or 'ps', got {op!r}")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).to(device)
    aug = fastfreq.SpectralAugment(ps_p=1 / 3, sigma=1.0, nfd_p=0.0 if op == "ps" else 1.0,
                                   backend=backend,
                                   generator=torch.Generator(device=device).manual_seed(1))
    aug(x)
    p = aug.last_params
    ps, nf = p["ps"], p["nfd"]

    def module():
        aug(x)

    def bare():
        if op == "ps":
            fastfreq.spectral_augment(x, ps["band"], ps["alpha"], backend=backend,
                                      check_values=False)
            return
        fastfreq.spectral_augment(x, ps["band"], ps["alpha"], nf["alpha_r"], sigma=1.0,
                                  nfd_bands=PAPER_BANDS, seed=nf["seed"], backend=backend,
                                  check_values=False)

    run = _timer(device)
    for fn in (module, bare, module, bare):  # warm-up (plans, caches)
        run(fn)
    t_mod, t_bare = [], []
    for _ in range(rounds):
        t_mod.append(run(module))
        t_bare.append(run(bare))
    m, b = statistics.median(t_mod), statistics.median(t_bare)
    return {"batch": batch, "size": size, "device": device, "op": op,
            "backend": fastfreq.functional.resolve_backend(backend, x),
            "module_s": m, "bare_s": b, "ratio": m / b, "rounds": rounds,
            "module": count_ops(module, device), "bare": count_ops(bare, device)}


def run(a) -> list:
    device = a.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA GPU on this machine")
    batches = a.batches or [128, 512]
    backends = a.backends or ["auto"]
    for name in backends:
        if name != "auto" and name not in fastfreq.BACKENDS:
            raise SystemExit(f"error: --backends: {name!r} is not one of auto, "
                             f"{', '.join(fastfreq.BACKENDS)}")
    ops = a.ops or ["both"]
    rows = [compare(b, device, a.rounds, backend=k, op=o) for o in ops for k in backends
            for b in batches]
    info = core.device_info(device)
    print(f"module forward vs one bare op call ({info.get('gpu') or info.get('cpu')}, "
          f"{info['threads']} threads, torch {info['torch']}; load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print("| op | batch | backend | module ms | bare ms | ratio | module ops | bare ops |"
          + (" module kernels | bare kernels |" if device == "cuda" else ""))
    for r in rows:
        line = (f"| {r['op']} | {r['batch']} | {r['backend']} | {1e3 * r['module_s']:.2f} | {1e3 * r['bare_s']:.2f} | "
                f"{r['ratio']:.2f} | {r['module']['top_level_ops']} | {r['bare']['top_level_ops']} |")
        if device == "cuda":
            line += f" {r['module']['cuda_kernels']} | {r['bare']['cuda_kernels']} |"
        print(line)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"module-{device}.json")
    with open(path, "w") as f:
        json.dump({"info": info, "load_average": os.getloadavg(), "rows": rows}, f, indent=1)
    print(f"wrote {path}")
    return rows
