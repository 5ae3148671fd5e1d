"""One command for a machine with an NVIDIA GPU (``make gpu-check``).

Uses the interpreter it runs on as it is (no venv, no downloads): builds the
extension in place for this GPU, runs the test suite including the GPU-marked
tests, the throughput benchmark, the end-to-end training overhead and a short
ResNet-18 training on the embedded data. Every step has its own time limit, so
one slow step cannot eat the others' time; a step that runs out is reported
as "timeout" with the end of its output.

Writes into ``--out`` (default ``out/gpu-check``, untracked):
``<gpu>-gpu-check.md`` (steps, throughput table, e2e overhead),
``<gpu>-gpu-check.json`` (the same with each step's output tail),
``gpu-check.log`` (every step's whole output), and the benchmark's own
``<gpu>.json/.md/.png`` and ``e2e-gpu.json``.

    python3 -m bench.gpu_check                 # full plan (never run whole on a lease)
    python3 -m bench.gpu_check --plan quick    # a few minutes: 40x40 only, short e2e/training
    python3 -m bench.gpu_check --plan lease    # fits a 15-minute lease (about 5 minutes on an H200)
    python3 -m bench.gpu_check --dry-run       # anywhere: prints the plan and prerequisites
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "out", "gpu-check")


PLANS = ("full", "quick", "lease")


def steps(py: str, out: str, arch: str, plan: str = "full") -> list[tuple[str, list[str], dict, int]]:
    """(name, command, extra environment, time limit in seconds) per step.

    full: the whole grid (its step limits add up to about 25 minutes); quick: 40x40 only, a
    few minutes; lease: what fits one 15-minute device lease (the whole
    suite, the "both" grid at 32/40/64 in float32 and bfloat16, PS and NFD
    alone at 40x40, precision errors, e2e and a short training)."""
    quick = plan == "quick"
    lease = plan == "lease"
    build_env = {"FASTFREQ_CUDA": "1", "TORCH_CUDA_ARCH_LIST": arch, "MAX_JOBS": str(os.cpu_count() or 8)}
    test_cmd = [py, "-m", "pytest", "-q", "tests", "-p", "no:cacheprovider", "-rfE", "--tb=short",
                "--durations=15"]
    if importlib.util.find_spec("xdist") is not None:
        test_cmd += ["-n", "8"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        test_cmd += ["--timeout", "300"]
    sizes = ["40"] if quick else ["32", "40", "64"]
    dtypes = ["float32"] if quick else ["float32", "bfloat16"]
    ops = ["both"] if quick or lease else ["both", "ps", "nfd"]
    bench = [py, "-m", "bench", "--device", "cuda", "--batches", "1024", "8192", "--repeats", "20"]
    # Triton at its default warps (the shipped default; autotuning is opt-in)
    no_tune = {"FASTFREQ_TRITON_AUTOTUNE": "0"}
    plan_steps = [
        ("build", [py, "setup.py", "build_ext", "--inplace"], build_env, 80 if lease else 300),
        ("tests", test_cmd, no_tune, 150 if quick or lease else 330),
        ("throughput", bench + ["--sizes", *sizes, "--dtypes", *dtypes, "--ops", *ops, "--out", out],
         no_tune, 60 if quick else 90 if lease else 300),
    ]
    if lease:
        plan_steps.append(("throughput-ps-nfd", bench + ["--sizes", "40", "--dtypes", "float32", "--ops",
                                                          "ps", "nfd", "--out", os.path.join(out, "ps-nfd")],
                           no_tune, 35))
    if not quick:
        plan_steps.append(("precision", [py, "-m", "bench", "precision", "--device", "cuda", "--out", out],
                           {}, 30 if lease else 60))
    # the module forward beside one bare op call (issue 23), then every CUDA
    # kernel under compute-sanitizer on small batches (bench/sanitize.py)
    plan_steps.append(("module", [py, "-m", "bench", "module", "--device", "cuda", "--batches", "128",
                                  "512", "--rounds", "30", "--backends", "cuda", "single_pass",
                                  "--out", out], {}, 25 if lease else 60))
    sanitizer = shutil.which("compute-sanitizer") or "/usr/local/cuda/bin/compute-sanitizer"
    for tool, limit in (("memcheck", 45), ("racecheck", 70)):
        plan_steps.append((tool, [sanitizer, "--tool", tool, "--error-exitcode", "3", py, "-m",
                                  "bench.sanitize"], {}, limit if lease else 2 * limit))
    plan_steps += [
        ("e2e", [py, "-m", "bench", "e2e", "--device", "cuda", "--e2e-images",
                 "20000" if quick or lease else "50000", "--out", out], {},
         60 if quick else 35 if lease else 180),
        ("train", [py, "-m", "train", "run", "--preset", "t3-both+att", "--data", "synthetic",
                   "--epochs", "1" if quick or lease else "3", "--n-train", "5000" if quick or lease else "20000",
                   "--n-test", "1000", "--out", os.path.join(out, "runs")], {},
         60 if quick else 35 if lease else 240),
    ]
    if lease:  # measurements first; the suite takes the time that is left
        plan_steps.append(plan_steps.pop(1))
    return plan_steps


def gpu_name() -> str:
    import torch

    return re.sub(r"[^A-Za-z0-9._-]+", "-", torch.cuda.get_device_name()).strip("-")


def arch_list() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def prerequisites() -> dict:
    found = {m: importlib.util.find_spec(m) is not None
             for m in ("torch", "numpy", "pytest", "matplotlib", "triton", "pytest_benchmark", "setuptools")}
    found["nvcc"] = bool(subprocess.run(["which", "nvcc"], capture_output=True).returncode == 0
                         or os.path.exists("/usr/local/cuda/bin/nvcc"))
    return found


def run_step(cmd, env, limit, log_file) -> tuple[int | str, float, str]:
    """Run one step in its own process group; kill the group at the limit."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=limit)
        rc: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        text, _ = proc.communicate()
        rc = "timeout"
    dt = time.perf_counter() - t0
    log_file.write(f"\n===== {' '.join(cmd)} (rc={rc}, {dt:.0f} s)\n{text}\n")
    log_file.flush()
    return rc, dt, text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="print the plan and check prerequisites only")
    ap.add_argument("--plan", choices=PLANS, default="full")
    ap.add_argument("--only", nargs="+", help="run only these steps (build always runs first)")
    ap.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    py = sys.executable
    pre = prerequisites()
    if a.dry_run:
        for name, cmd, env, limit in steps(py, a.out, "<device capability>", a.plan):
            print(f"[{name}] (limit {limit} s) {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}")
        print("prerequisites: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in pre.items()))
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU visible; nothing to measure", file=sys.stderr)
        return 2
    missing = [k for k, v in pre.items() if not v and k != "pytest_benchmark"]
    if missing:
        print(f"gpu-check: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    name = gpu_name()
    log = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "triton": _version("triton"), "python": sys.version.split()[0], "plan": a.plan,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "steps": []}
    status = 0
    with open(os.path.join(a.out, "gpu-check.log"), "w") as lf:
        for step, cmd, env, limit in steps(py, a.out, arch_list(), a.plan):
            if a.only and step != "build" and step not in a.only:
                continue
            rc, dt, text = run_step(cmd, env, limit, lf)
            log["steps"].append({"step": step, "rc": rc, "seconds": round(dt, 1), "limit_s": limit,
                                 "tail": text[-6000:]})
            print(f"[{step}] rc={rc} {dt:.0f}s", flush=True)
            if rc != 0:
                print(text[-3000:], flush=True)
                status = 1
                if step == "build":
                    break
            _write(a.out, name, log)  # after every step: a later kill keeps what finished
    return status


def _version(module: str):
    try:
        return importlib.import_module(module).__version__
    except Exception:  # noqa: BLE001  (report, never fail on a version lookup)
        return None


def _write(out: str, name: str, log: dict):
    with open(os.path.join(out, f"{name}-gpu-check.json"), "w") as f:
        json.dump(log, f, indent=1)
    write_report(out, name, log)


def write_report(out: str, name: str, log: dict):
    """<out>/<gpu>-gpu-check.md: the steps, the throughput table and the e2e overhead."""
    lines = [f"# GPU check: {log['gpu']}", "",
             f"torch {log['torch']} (CUDA {log.get('cuda')}), triton {log.get('triton')}, Python "
             f"{log.get('python')}; {log['date']}; `python3 -m bench.gpu_check --plan {log.get('plan')}`.",
             "", "| step | exit | seconds | limit |", "|---|---|---|---|"]
    lines += [f"| {s['step']} | {s['rc']} | {s['seconds']} | {s.get('limit_s', '')} |" for s in log["steps"]]
    table = os.path.join(out, f"{name}.md")
    if os.path.exists(table):
        lines += ["", open(table).read().split("\n", 2)[-1]]
    e2e = os.path.join(out, "e2e-gpu.json")
    if os.path.exists(e2e):
        r = json.load(open(e2e))
        lines += ["", f"End to end ({r['model']}, {r['images']} images/epoch): "
                  + ", ".join(f"{k}: {v:,.0f} images/s" for k, v in r["images_per_s"].items())
                  + f"; augmentation overhead {r['overhead_pct']:.1f}%."]
    with open(os.path.join(out, f"{name}-gpu-check.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
