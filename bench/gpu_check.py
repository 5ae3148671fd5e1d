"""One command for a machine with an NVIDIA GPU (``make gpu-check``).

Uses the interpreter it runs on as it is (no venv, no downloads): builds the
extension in place for this GPU, runs the whole test suite including the
GPU-marked tests, the throughput benchmark and the end-to-end overhead, a
short ResNet-18 training on the embedded data, and writes
``bench/results/<gpu-name>.md`` plus its JSON. Budget: 10 minutes on an H100.

    python3 -m bench.gpu_check             # on the GPU machine
    python3 -m bench.gpu_check --dry-run   # anywhere: checks the plan and prerequisites
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def steps(py: str, out: str, arch: str) -> list[tuple[str, list[str], dict]]:
    env = {"FASTFREQ_CUDA": "1", "TORCH_CUDA_ARCH_LIST": arch, "MAX_JOBS": "16"}
    return [
        ("build", [py, "setup.py", "build_ext", "--inplace"], env),
        ("tests", [py, "-m", "pytest", "-q", "-x", "tests", "-p", "no:cacheprovider"], {}),
        ("throughput", [py, "-m", "bench", "--device", "cuda", "--sizes", "32", "40", "64",
                        "--dtypes", "float32", "float16", "--ops", "both", "ps", "nfd",
                        "--repeats", "20", "--out", out], {}),
        ("e2e", [py, "-m", "bench", "e2e", "--device", "cuda", "--e2e-images", "50000", "--out", out], {}),
        ("train", [py, "-m", "train", "run", "--preset", "t3-both+att", "--data", "synthetic",
                   "--epochs", "3", "--n-train", "20000", "--n-test", "1000", "--out",
                   os.path.join(out, "gpu-check-runs"), "--resume"], {}),
    ]


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="print the plan and check prerequisites only")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = ap.parse_args(argv)
    py = sys.executable
    pre = prerequisites()
    if a.dry_run:
        plan = steps(py, a.out, "<device capability>")
        for name, cmd, env in plan:
            print(f"[{name}] {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(cmd)}")
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
    log = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
           "steps": []}
    status = 0
    for step, cmd, env in steps(py, a.out, arch_list()):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        tail = (proc.stdout + proc.stderr)[-4000:]
        log["steps"].append({"step": step, "rc": proc.returncode, "seconds": round(dt, 1), "tail": tail})
        print(f"[{step}] rc={proc.returncode} {dt:.0f}s")
        if proc.returncode != 0:
            print(tail)
            status = 1
            if step == "build":
                break
    with open(os.path.join(a.out, f"{name}-gpu-check.json"), "w") as f:
        json.dump(log, f, indent=1)
    write_report(a.out, name, log)
    return status


def write_report(out: str, name: str, log: dict):
    """bench/results/<gpu>.md: the steps, the throughput table and the e2e overhead."""
    lines = [f"# GPU check: {log['gpu']}", "", f"torch {log['torch']}, {log['date']}, `make gpu-check`.", "",
             "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {s['step']} | {s['rc']} | {s['seconds']} |" for s in log["steps"]]
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
