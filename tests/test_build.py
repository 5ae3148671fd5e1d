"""The build and the README's commands."""
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
