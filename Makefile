# Two commands do all of their own set-up (virtual environment, PyTorch, the
# package and its compiled extension):
#   make demo   the main job on built-in data (no download)
#   make test   the whole test suite
# Override PYTHON to pick the interpreter that creates the venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fastfreq-installed
SOURCES := setup.py pyproject.toml $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu)

# The CUDA part of the extension compiles where nvcc exists (no GPU needed).
export CUDA_HOME ?= $(if $(wildcard /usr/local/cuda/bin/nvcc),/usr/local/cuda,)

.PHONY: setup demo test bench gpu-check clean

setup: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "torch>=2.4" numpy tqdm matplotlib pillow ninja "setuptools>=64" wheel
	@echo "building fastfreq and its compiled extension (a few minutes; FASTFREQ_EXT=0 skips the extension)"
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	touch $(STAMP)

# equivalence + throughput tables and figures, then a short APS+NFD training on
# the embedded synthetic data with its corrupted test set and PDM figure
# (--resume: a finished demo run is re-evaluated, not retrained)
demo: $(STAMP)
	$(PY) -m fastfreq.demo
	$(PY) -m fastfreq.train run --preset demo --out out/demo/runs --resume

test: $(STAMP)
	$(PY) -m pytest -q tests

# CPU throughput table (out/bench/, untracked) and the e2e overhead
bench: $(STAMP)
	$(PY) -m fastfreq.bench
	$(PY) -m fastfreq.bench e2e

# On a machine with an NVIDIA GPU: uses python3 as it is (no venv, no
# downloads), builds in place, runs tests, benchmarks and a short training,
# writes out/gpu-check/<gpu-name>-gpu-check.md and its JSON.
gpu-check:
	python3 -m bench.gpu_check

clean:
	rm -rf build *.egg-info fastfreq/_C*.so
