import os

import numpy as np
import pytest
import torch

# Without a GPU the Triton kernels run under Triton's interpreter on CPU
# tensors; the variable must be set before Triton jits anything.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastfreq.backends import ext, triton_kernel  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip_gpu)


def backend_params(numpy: bool = True):
    """Every backend this machine can run, as (backend, device) pairs: the
    NumPy reference, eager torch, the C++ CPU op, the Triton kernel (compiled
    on a GPU, under Triton's interpreter on CPU tensors otherwise), and on a
    GPU eager torch and the CUDA op, and the single-pass op (CPU host runner;
    on a GPU the kernel). The same parametrised cases run on each."""
    no_ext = pytest.mark.skipif(not ext.available(), reason=f"fastfreq._C not built: {ext.LOAD_ERROR}")
    no_triton = pytest.mark.skipif(not triton_kernel.available(),
                                   reason=f"no Triton backend: {triton_kernel.version_problem()}")
    params = [pytest.param(("numpy", "cpu"), id="numpy-cpu")] if numpy else []
    params += [
        pytest.param(("torch", "cpu"), id="torch-cpu"),
        pytest.param(("cpp", "cpu"), id="cpp-cpu", marks=no_ext),
        pytest.param(("triton", "cuda" if HAS_CUDA else "cpu"),
                     id="triton-cuda" if HAS_CUDA else "triton-interpreter", marks=no_triton),
        pytest.param(("torch", "cuda"), id="torch-cuda", marks=pytest.mark.gpu),
        pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
            not ext.has_cuda(), reason="fastfreq._C built without CUDA")]),
        # the single-pass kernel: its host runner on CPU tensors (the same
        # phase code as the GPU), and the kernel itself on a GPU
        pytest.param(("single_pass", "cpu"), id="single_pass-cpu", marks=no_ext),
        pytest.param(("single_pass", "cuda"), id="single_pass-cuda", marks=[
            pytest.mark.gpu, pytest.mark.skipif(not ext.has_cuda(),
                                                reason="fastfreq._C built without CUDA")]),
    ]
    return params


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
