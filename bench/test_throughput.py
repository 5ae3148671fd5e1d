"""pytest-benchmark suite: ``pytest bench/ --benchmark-only`` (filter with -k,
e.g. ``-k "40x40 and float32"``). Settings come from bench.core, the same
runners as the CLI; GPU rows run only where a GPU exists."""
import pytest
import torch

from bench import core

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BATCHES = [1, 128, 1024, 8192] if DEVICE == "cuda" else [1, 128, 1024, 2048]
BACKENDS = core.available_backends(DEVICE)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("size", [32, 40, 64], ids=lambda s: f"{s}x{s}")
@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("op", core.OPS)
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch-compile"])
def test_throughput(benchmark, backend, op, batch, size, dtype):
    if backend == "numpy" and batch > 128:
        pytest.skip("the NumPy reference is timed up to batch 128")
    if backend == "fft-roundtrip" and op != "both":
        pytest.skip("the FFT round trip is the floor of the fused op only")
    fn = core.runner(backend, op, batch, size, dtype, DEVICE)
    if fn is None:
        pytest.skip(f"{backend} cannot run {size}x{size} on {DEVICE}")
    if DEVICE == "cuda":
        def step():
            fn()
            torch.cuda.synchronize()
    else:
        step = fn
    benchmark.extra_info.update(images=batch, device=DEVICE)
    benchmark.pedantic(step, warmup_rounds=2, rounds=5 if backend == "numpy" else 10, iterations=1)
