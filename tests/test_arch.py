"""Every GPU a user has: the architectures the build targets, and the choice
of backend on a GPU the build has no code for (issue "Results you can trust",
item 1). No GPU is needed: the device answers are stood in for."""
import importlib.util
import os
import types

import pytest
import torch

import fastfreq.functional as F
from fastfreq.backends import ext, triton_kernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup_module():
    spec = importlib.util.spec_from_file_location("fastfreq_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # setup() runs only under __main__
    return mod


NVCC_13 = [f"compute_{a}" for a in (75, 80, 86, 87, 88, 89, 90, 100, 110, 103, 120, 121)]


def test_default_arch_list_covers_torch_and_the_minimum():
    s = _setup_module()
    # torch's wheel flags plus the minimum set, PTX of the newest
    got = s.default_arch_list("sm_75 sm_80 sm_86 sm_90 sm_100 sm_120", NVCC_13)
    assert got == "7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"
    # a torch without CUDA arch flags still gets sm_80, 86, 89, 90
    assert s.default_arch_list("", NVCC_13) == "8.0;8.6;8.9;9.0+PTX"
    # only what nvcc can compile; unknown nvcc list: everything wanted
    assert s.default_arch_list("sm_80 sm_90", ["compute_80", "compute_90"]) == "8.0;9.0+PTX"
    assert s.default_arch_list("sm_70", None) == "7.0;8.0;8.6;8.9;9.0+PTX"
    with pytest.raises(SystemExit, match="TORCH_CUDA_ARCH_LIST"):
        s.default_arch_list("sm_90", ["compute_50"])


def test_targets_macro_round_trips_through_cuda_archs(monkeypatch):
    s = _setup_module()
    token = s.targets_macro("8.0;8.6;9.0+PTX")
    assert token == "targets_80_86_90ptx" and token.isidentifier()
    assert "arch" not in token.lower()  # torch drops its -gencode flags if a flag says "arch"
    stub = types.SimpleNamespace(built_with_cuda=lambda: True, cuda_archs=lambda: token)
    monkeypatch.setattr(ext, "_C", stub)
    assert ext.cuda_archs() == ("8.0", "8.6", "9.0+PTX")
    assert s.targets_macro("10.0 12.0+PTX") == "targets_100_120ptx"


@pytest.mark.skipif(os.environ.get("FASTFREQ_EXPECT_CUDA_BUILD") != "1",
                    reason="only where the build is expected to have its CUDA part (CI)")
def test_this_build_names_its_architectures():
    want = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    archs = ext.cuda_archs()
    assert archs, "built with CUDA but no architectures recorded"
    if want:
        assert [a for a in archs] == [a.strip() for a in want.replace(" ", ";").split(";") if a.strip()]


def test_auto_skips_cuda_without_a_kernel_image(monkeypatch):
    """An A100 under a Hopper-only build: auto must not pick cuda."""
    x = torch.zeros(1, 1, 8, 8)
    monkeypatch.setattr(ext, "has_cuda", lambda: True)
    monkeypatch.setattr(triton_kernel, "supports", lambda x: False)
    monkeypatch.setattr(ext, "kernel_image_ok", lambda device: False)
    assert F._auto_cuda(x) == "torch"
    monkeypatch.setattr(triton_kernel, "supports", lambda x: True)
    monkeypatch.setattr(F, "_triton_failure", None)
    assert F._auto_cuda(x) == "triton"
    monkeypatch.setattr(ext, "kernel_image_ok", lambda device: True)
    monkeypatch.setattr(triton_kernel, "supports", lambda x: False)
    assert F._auto_cuda(x) == "cuda"


def test_explicit_cuda_without_a_kernel_image_names_the_fix(monkeypatch):
    monkeypatch.setattr(ext, "has_cuda", lambda: True)
    monkeypatch.setattr(ext, "kernel_image_ok", lambda device: False)
    monkeypatch.setattr(ext, "cuda_archs", lambda: ("9.0",))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA A100-SXM4-80GB")
    fake = types.SimpleNamespace(device=torch.device("cuda:0"))
    with pytest.raises(RuntimeError, match=r'built for CUDA architectures 9\.0.*A100.*sm_80.*'
                                           r'TORCH_CUDA_ARCH_LIST="8\.0"'):
        ext.require_image(fake)


@pytest.mark.skipif(not ext.available(), reason="fastfreq._C not built")
def test_kernel_image_check_without_a_device():
    """The real check on this machine: no device index is runnable here
    (no GPU, or an index past the last GPU), and asking never raises."""
    assert ext._C.cuda_kernel_image_ok(10_000) is False
    if not torch.cuda.is_available():
        assert ext._C.cuda_kernel_image_ok(0) is False
