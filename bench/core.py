"""Throughput measurement of the spectral augmentation backends.

Timing: warm-up calls, then repeats timed with CUDA events on GPU (perf_counter
plus nothing to sync on CPU); median and inter-quartile range of the repeats.
On GPU each row also gets the memory-bandwidth bound: bytes read + written per
image (the image in, the image out) over the device bandwidth.
"""
from __future__ import annotations

import functools
import math
import platform
import statistics
import time

import numpy as np
import torch

import fastfreq
from fastfreq import reference as ref
from fastfreq.backends import ext, torch_fft, triton_kernel

OPS = ("ps", "nfd", "both")
# HBM bandwidth from the vendors' spec sheets, bytes/s, by device-name substring
SPEC_BANDWIDTH = {"H200": 4.8e12, "H100 SXM": 3.35e12, "H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12,
                  "H100 NVL": 3.9e12, "A100-SXM4-80GB": 2.039e12, "A100-SXM4-40GB": 1.555e12,
                  "A100-PCIE-40GB": 1.555e12, "A100 80GB PCIe": 1.935e12, "L4": 3.0e11}


def device_info(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "extension": ext.available(),
            "extension_cuda": ext.has_cuda(), "triton": getattr(triton_kernel.triton, "__version__", None),
            "threads": torch.get_num_threads(), "machine": platform.machine()}
    if device == "cuda":
        name = torch.cuda.get_device_name()
        info.update(gpu=name, cuda=torch.version.cuda)
        spec = next((v for k, v in SPEC_BANDWIDTH.items() if k in name), None)
        info["bandwidth_spec"] = spec
        info["bandwidth_copy"] = measured_copy_bandwidth()
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def measured_copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second)."""
    a = torch.empty(nbytes // 4, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    t = _time_cuda(lambda: b.copy_(a), 10)
    return 2 * nbytes / statistics.median(t)


def _time_cuda(fn, repeats):
    times = []
    for _ in range(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return times


def make_inputs(op: str, batch: int, size: int, dtype, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g).to(device=device, dtype=dtype)
    kw = {}
    if op in ("ps", "both"):
        kw.update(band=torch.randint(0, 3, (batch,), generator=g).to(device),
                  alpha=torch.rand(batch, generator=g).to(device))
    if op in ("nfd", "both"):
        kw.update(alpha_r=torch.rand(batch, 5, generator=g).to(device))
    return x, kw


@functools.lru_cache(maxsize=None)
def _compiled_eager():
    return torch.compile(torch_fft.spectral_augment, dynamic=False)


def runner(backend: str, op: str, batch: int, size: int, dtype, device: str):
    """A zero-argument callable doing one augmentation of a fresh batch's worth
    (inputs made once), or None when the backend cannot run here."""
    x, kw = make_inputs(op, batch, size, dtype, device)
    if backend == "numpy":
        xn = x.double().cpu().numpy()
        knp = {k: v.cpu().numpy() for k, v in kw.items()}
        rng = np.random.default_rng(0)
        return lambda: ref.spectral_augment(xn, knp.get("band"), knp.get("alpha"), knp.get("alpha_r"),
                                            generator=rng)
    if backend == "fft-roundtrip":
        return lambda: torch.fft.irfft2(torch.fft.rfft2(x.float()), s=(size, size))
    if backend == "torch-compile":
        fn = _compiled_eager()
        return lambda: fn(x, kw.get("band"), kw.get("alpha"), kw.get("alpha_r"), None, 1.0, 1.0,
                          fastfreq.PAPER_BANDS, None)
    try:
        fastfreq.resolve_backend(backend, x)
    except (RuntimeError, ValueError):
        return None
    return lambda: fastfreq.spectral_augment(x, **kw, backend=backend, check_values=False)


def available_backends(device: str) -> list[str]:
    """fastfreq's backends for ``device`` plus the two baselines of the table."""
    return [*fastfreq.functional.available_backends(device), "torch-compile", "fft-roundtrip"]


def measure(backends, ops, batches, sizes, dtypes, device: str, *, repeats: int = 10, warmup: int = 3,
            numpy_max_batch: int = 128, compile_max_cases: int | None = None, progress: bool = True):
    """Rows of measurements (one per backend x op x batch x size x dtype).

    The backends of one setting are timed in interleaved rounds (each round
    times every backend once), so that drifts of the machine (other load,
    memory reclaim on a VM) hit all of them alike."""
    info = device_info(device)
    bandwidth = info.get("bandwidth_spec") or info.get("bandwidth_copy")
    rows = []
    settings = [(o, n, s, d) for d in dtypes for s in sizes for n in batches for o in ops]
    from fastfreq._progress import progress as bar

    n_compiled = 0
    for op, batch, size, dtype in (bar(settings, desc="benchmark", unit="setting") if progress else settings):
        fns = {}
        for backend in backends:
            if backend == "numpy" and batch > numpy_max_batch:
                continue
            if backend == "fft-roundtrip" and op != "both":
                continue
            if backend == "torch-compile":
                if compile_max_cases is not None and n_compiled >= compile_max_cases:
                    continue
                n_compiled += 1
            fn = runner(backend, op, batch, size, dtype, device)
            if fn is not None:
                fns[backend] = fn
        times = {b: [] for b in fns}
        for b, fn in fns.items():
            for _ in range(1 if b == "numpy" else warmup):
                fn()
        for r in range(repeats):
            for b, fn in fns.items():
                if b == "numpy" and r >= 3:
                    continue
                times[b] += _time_once(fn, device)
        for b, ts in times.items():
            q = np.percentile(ts, [25, 50, 75])
            row = {"backend": b, "op": op, "batch": batch, "size": size,
                   "dtype": str(dtype).replace("torch.", ""), "median_s": float(q[1]),
                   "iqr_s": float(q[2] - q[0]), "repeats": len(ts), "images_per_s": batch / float(q[1])}
            if device == "cuda" and bandwidth:
                bytes_per_image = 2 * 3 * size * size * torch.empty((), dtype=dtype).element_size()
                row["pct_of_bound"] = 100 * row["images_per_s"] / (bandwidth / bytes_per_image)
            rows.append(row)
    for r in rows:
        base = next((b for b in rows if b["backend"] == "torch" and all(
            b[k] == r[k] for k in ("op", "batch", "size", "dtype"))), None)
        r["speedup_vs_torch"] = r["images_per_s"] / base["images_per_s"] if base else math.nan
    return info, rows


def _time_once(fn, device: str) -> list:
    if device == "cuda":
        return _time_cuda(fn, 1)
    t0 = time.perf_counter()
    fn()
    return [time.perf_counter() - t0]
