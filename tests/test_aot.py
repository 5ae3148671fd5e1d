"""The ahead-of-time resource gate (no GPU needed): the default Triton
configurations for 32x32 and 40x40 must compile for sm_90 without spilling,
and the report must carry the static estimate. Runs `python -m bench aot
--gate` in a subprocess (the tests' own process runs Triton interpreted)."""
import json
import os
import subprocess
import sys

import pytest

from fastfreq.backends import triton_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(not triton_kernel.available(), reason="Triton not importable")
def test_aot_gate_default_configs_do_not_spill(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "bench", "aot", "--gate", "--out", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = json.load(open(tmp_path / "aot-sm90.json"))
    default = {(r["H"], r["W"]): r for r in res["triton"] if r["default"]}
    assert set(default) == {(32, 32), (40, 40), (64, 64)}
    for size in ((32, 32), (40, 40)):
        r = default[size]
        assert r["spill_bytes"] == 0 and r["registers"] <= 255 and r["sass_instructions"] > 100
        assert r["dots"] == 12      # 2 + 4 forward, 4 + 2 inverse DFT products
    est = res["estimate"]
    assert est["hbm_bound_us"] > 0 and est["triton_us"] >= est["hbm_bound_us"]
    assert "not a measurement" in res["note"]
    if res["cuda"]:                 # built with its CUDA part: nothing in local memory, no stack
        # (a run-time index into a per-thread array once gave every kernel a 16 B stack frame)
        assert all(k["local_bytes"] == 0 and k["stack_bytes"] == 0 for k in res["cuda"]), res["cuda"]
    assert (tmp_path / "aot-sm90.md").read_text().count("Static estimate (not measured)") == 1
