"""The build and the README's commands."""
import json
import os
import subprocess
import sys

import pytest

from fastfreq.backends import ext


@pytest.mark.skipif(os.environ.get("FASTFREQ_EXPECT_CUDA_BUILD") != "1",
                    reason="only CI asks for the CUDA part")
def test_extension_built_with_cuda_part():
    """CI builds with FASTFREQ_CUDA=1: the CUDA code must have compiled."""
    assert ext.available(), ext.LOAD_ERROR
    assert ext.has_cuda()


def test_demo_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastfreq.demo", "--out", str(tmp_path), "--batch", "32"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Equivalence with the NumPy reference" in out.stdout
    assert (tmp_path / "demo.json").exists() and (tmp_path / "power_suppression.png").exists()


def test_demo_rejects_bad_arguments(tmp_path):
    out = subprocess.run([sys.executable, "-m", "fastfreq.demo", "--batch", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--batch" in out.stderr


def test_gpu_check_dry_run_plans_every_step():
    out = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--dry-run"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for step in ("[build]", "[tests]", "[throughput]", "[e2e]", "[train]"):
        assert step in out.stdout
    assert "prerequisites:" in out.stdout


def test_benchmark_cli_writes_json_table_and_plot(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bench", "--batches", "4", "16", "--sizes", "8",
                          "--dtypes", "float32", "--ops", "both", "--repeats", "2",
                          "--backends", "torch", "cpp", "fft-roundtrip", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    import json

    js = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    assert len(js) == 1 and js[0].with_suffix(".md").exists() and js[0].with_suffix(".png").exists()
    data = json.loads(js[0].read_text())
    assert data["info"]["device"] == "cpu" and "torch" in data["info"]
    rows = {(r["backend"], r["batch"]) for r in data["rows"]}
    assert ("torch", 4) in rows and ("fft-roundtrip", 16) in rows
    assert all(r["images_per_s"] > 0 for r in data["rows"])


def test_benchmark_cli_says_no_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    out = subprocess.run([sys.executable, "-m", "bench", "--device", "cuda", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "no GPU" in out.stderr


def test_contention_benchmark_cli(tmp_path):
    """`python -m bench contention` runs both conditions (it starts and stops
    its own busy process) and writes the table; no timing is asserted here."""
    out = subprocess.run([sys.executable, "-m", "bench", "contention", "--rounds", "1", "--batch", "8",
                          "--size", "8", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.load(open(tmp_path / "contention-cpu.json"))
    assert {r["condition"] for r in res["rows"]} == {"quiet", "busy"}
    assert {r["threads"] for r in res["rows"]} == {1, 2}
    assert "busy_2t_over_quiet_1t" in res["ratios"]["torch"]
    assert (tmp_path / "contention-cpu.md").exists()
