"""What a fresh install meets: a torchvision that is installed but does not
import. The PyPI torchvision links torch's CUDA libraries, so beside the
CPU-only torch wheel (torch==2.13.0+cpu, checked by hand in a fresh venv)
`import torchvision` raises RuntimeError ('operator torchvision::nms does
not exist'), not ImportError: fastfreq.tv and `--download` let it through as
a traceback. Both now say what is wrong and what to install."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKEN = "operator torchvision::nms does not exist"


def _with_broken_torchvision(tmp_path, code):
    """Run ``code`` where ``import torchvision`` raises what the PyPI
    torchvision raises beside a CPU-only torch."""
    fake = tmp_path / "fake" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise RuntimeError({BROKEN!r})\n")
    path = os.pathsep.join([str(tmp_path / "fake"), ROOT, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": path})


def test_tv_adapter_names_a_torchvision_that_does_not_import(tmp_path):
    out = _with_broken_torchvision(tmp_path, (
        "import fastfreq.tv as tv\n"
        "from fastfreq import PowerSuppression\n"
        "try:\n"
        "    tv.V2(PowerSuppression())\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"))
    assert out.returncode == 0, out.stderr[-2000:]  # importing fastfreq.tv itself works
    msg = out.stdout.strip()
    assert msg.startswith("ImportError: fastfreq.tv needs torchvision"), msg
    assert f"RuntimeError: {BROKEN}" in msg and "the torchvision built for torch" in msg, msg


def test_download_names_a_torchvision_that_does_not_import(tmp_path):
    out = _with_broken_torchvision(tmp_path, (
        "from train.data import DataError, load_cifar10\n"
        "try:\n"
        f"    load_cifar10({str(tmp_path / 'data')!r}, 'test', download=True)\n"
        "except DataError as e:\n"
        "    print('DataError:', e)\n"))
    assert out.returncode == 0, out.stderr[-2000:]
    msg = out.stdout.strip()
    assert msg.startswith("DataError: download: needs torchvision"), msg
    assert f"RuntimeError: {BROKEN}" in msg and "the torchvision built for torch" in msg, msg
