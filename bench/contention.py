"""CPU throughput on a quiet machine and beside a busy process.

    fastfreq-bench contention [--rounds 7] [--batch 1024] [--size 40] [--backends cpp torch]
                              [--out out/bench]

Times one PS + NFD call (in-kernel noise, float32) of the ``cpp`` and ``torch``
backends (or those ``--backends`` names, e.g. ``cpp single_pass``) with 1 and 2 intra-op threads, in two conditions: quiet, and beside a
process that this command starts and stops itself (a Python loop spinning on
one core). Rounds interleave everything (each round: every backend x thread
count, quiet then busy), so that a drift of the machine hits all cells alike;
the table reports medians and the two ratios the CPU path is held to:

- scaling: quiet 2 threads / quiet 1 thread (>= 1.5 on 2 free cores);
- robustness: busy 2 threads / quiet 1 thread (>= 0.5: a busy core may slow
  the call, never collapse it).

Writes ``<out>/contention-cpu.json`` and ``.md`` (the machine's load average
before the run is recorded: a loaded machine makes every number lower).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

import fastfreq

from .core import make_inputs

BACKENDS = ("cpp", "torch")
THREADS = (1, 2)
SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def _call(backend: str, x, kw):
    return fastfreq.spectral_augment(x, **kw, backend=backend, check_values=False)


class BusyProcess:
    """A process spinning on one core for the duration of a ``with`` block."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SPIN])
        time.sleep(0.3)  # let it start spinning
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def measure(rounds: int = 7, batch: int = 1024, size: int = 40, backends=BACKENDS, progress=True):
    from fastfreq.backends import ext

    backends = [b for b in backends if b != "cpp" or ext.available()]
    x, kw = make_inputs("both", batch, size, torch.float32, "cpu")
    before = torch.get_num_threads()
    times = {(c, b, t): [] for c in ("quiet", "busy") for b in backends for t in THREADS}
    for b in backends:  # warm-up: plans, caches, thread pools
        for t in THREADS:
            torch.set_num_threads(t)
            _call(b, x, kw)
    try:
        for r in range(rounds):
            for cond in ("quiet", "busy"):
                ctx = BusyProcess() if cond == "busy" else contextlib.nullcontext()
                with ctx:
                    for b in backends:
                        for t in THREADS:
                            torch.set_num_threads(t)
                            t0 = time.perf_counter()
                            _call(b, x, kw)
                            times[(cond, b, t)].append(time.perf_counter() - t0)
            if progress:
                print(f"round {r + 1}/{rounds}", flush=True)
    finally:
        torch.set_num_threads(before)
    rows = []
    for (cond, b, t), ts in times.items():
        med = statistics.median(ts)
        rows.append({"condition": cond, "backend": b, "threads": t, "median_s": med,
                     "images_per_s": batch / med, "min_s": min(ts), "max_s": max(ts), "rounds": len(ts)})
    rate = _rates(rows)
    ratios = {b: {"scaling_quiet_2t_over_1t": rate[("quiet", b, 2)] / rate[("quiet", b, 1)],
                  "busy_2t_over_quiet_1t": rate[("busy", b, 2)] / rate[("quiet", b, 1)]}
              for b in backends}
    return rows, ratios


def _rates(rows) -> dict:
    """images/s by (condition, backend, threads)."""
    return {(r["condition"], r["backend"], r["threads"]): r["images_per_s"] for r in rows}


def run(a) -> dict:
    load = os.getloadavg()
    backends = tuple(getattr(a, "backends", None) or BACKENDS)
    rows, ratios = measure(a.rounds, a.batch, a.size, backends=backends)
    info = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg_before": load,
            "batch": a.batch, "size": a.size, "rounds": a.rounds, "backends": list(backends),
            "workload": f"{a.batch}x3x{a.size}x{a.size} float32, PS + NFD, in-kernel noise"}
    os.makedirs(a.out, exist_ok=True)
    res = {"info": info, "rows": rows, "ratios": ratios}
    stem = "contention-cpu" + ("" if backends == BACKENDS else "-" + "-".join(backends))
    with open(os.path.join(a.out, stem + ".json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(os.path.join(a.out, stem + ".md"), "w") as f:
        f.write(md)
    print(md)
    return res


def markdown(res: dict) -> str:
    i = res["info"]
    lines = [f"# CPU contention: {i['workload']}", "",
             f"{i['date']}, torch {i['torch']}, {i['cpus']} CPUs ({i['machine']}); load average before "
             f"the run {i['loadavg_before'][0]:.2f}; {i['rounds']} interleaved rounds, medians. "
             "'busy': beside a process spinning on one core.", "",
             "| backend | threads | quiet images/s | busy images/s |", "|---|---|---|---|"]
    rate = _rates(res["rows"])
    for b in res["ratios"]:
        for t in THREADS:
            lines.append(f"| {b} | {t} | {rate[('quiet', b, t)]:,.0f} | {rate[('busy', b, t)]:,.0f} |")
    lines += ["", "| backend | quiet 2 threads / quiet 1 thread | busy 2 threads / quiet 1 thread |",
              "|---|---|---|"]
    for b, r in res["ratios"].items():
        lines.append(f"| {b} | {r['scaling_quiet_2t_over_1t']:.2f} | {r['busy_2t_over_quiet_1t']:.2f} |")
    return "\n".join(lines) + "\n"
