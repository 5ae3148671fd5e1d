import os

import numpy as np
import pytest
import torch

# Without a GPU the Triton kernels run under Triton's interpreter on CPU
# tensors; the variable must be set before Triton jits anything.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastfreq.backends import ext  # noqa: E402

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


def backend_params():
    """(backend, device) pairs that can run here, each marked as needed."""
    params = [pytest.param(("torch", "cpu"), id="torch-cpu")]
    params.append(pytest.param(("cpp", "cpu"), id="cpp-cpu", marks=pytest.mark.skipif(
        not ext.available(), reason=f"fastfreq._C not built: {ext.LOAD_ERROR}")))
    params.append(pytest.param(("torch", "cuda"), id="torch-cuda", marks=pytest.mark.gpu))
    params.append(pytest.param(("cuda", "cuda"), id="cuda-cuda", marks=[pytest.mark.gpu,
                  pytest.mark.skipif(not ext.has_cuda(), reason="fastfreq._C built without CUDA")]))
    return params


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
