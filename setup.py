"""Build fastfreq and its extension ``fastfreq._C``.

Install against the PyTorch that is already installed:

    pip install --no-build-isolation -e .      # or . for a regular install

The CPU part is always built. The CUDA part is built when nvcc, the CUDA
runtime library and a CUDA build of PyTorch are present (no GPU is needed at
build time); set
``FASTFREQ_CUDA=0`` or ``1`` to force either way, and ``FASTFREQ_EXT=0`` to
skip the extension altogether (the package then falls back to its pure
PyTorch backend).
"""
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _setuptools_build_ext

# Small default: Hopper only. Set TORCH_CUDA_ARCH_LIST to build for others.
DEFAULT_ARCH_LIST = "9.0"


def _cudart_found(cuda_home) -> bool:
    """The CUDA runtime library that CUDAExtension links (-lcudart)."""
    if not cuda_home:
        return False
    return any(os.path.exists(os.path.join(cuda_home, lib, "libcudart.so"))
               for lib in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")))


def _want_cuda(torch_cuda_version):
    """CUDA part: forced by FASTFREQ_CUDA=0/1, else built when torch is a CUDA
    build AND nvcc AND the CUDA runtime library are found."""
    flag = os.environ.get("FASTFREQ_CUDA", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    from torch.utils.cpp_extension import CUDA_HOME

    nvcc = shutil.which("nvcc") or (CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")))
    if not (torch_cuda_version and nvcc):
        return False
    if not _cudart_found(CUDA_HOME):
        print(f"fastfreq build: nvcc found but no libcudart.so under CUDA_HOME={CUDA_HOME!r}; "
              "building the CPU part only (set CUDA_HOME, or FASTFREQ_CUDA=1 to force)")
        return False
    return True


def _openmp_flags():
    """-fopenmp where torch itself runs OpenMP (Linux/GCC builds); nothing else."""
    import sys

    import torch

    if sys.platform != "linux" or not torch.backends.openmp.is_available():
        return []
    return ["-fopenmp"]


def _pip_cuda_includes():
    """Headers of the CUDA libraries that PyTorch's own wheels bring (cuSPARSE,
    cuBLAS, ...): ATen's CUDA headers include them, and a bare nvcc toolkit may
    lack them."""
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for root in getattr(nvidia, "__path__", []):
        for sub in sorted(os.listdir(root)):
            inc = os.path.join(root, sub, "include")
            if os.path.exists(os.path.join(inc, "cusparse.h")):
                found.append(inc)
    return found


def _extensions():
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    sources = ["csrc/spectral_augment.cpp", "csrc/cpu/spectral_augment_kernel.cpp"]
    # No errno and no FP traps: lets the compiler vectorise the branch-free
    # noise and Dir loops (no code here reads errno or FP exceptions).
    cxx = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
    # OpenMP: at::parallel_for is inline OpenMP code (torch is built with
    # AT_PARALLEL_OPENMP), so without -fopenmp every chunk ran on the calling
    # thread. Linking -fopenmp names libgomp.so.1, which resolves to the copy
    # torch has already loaded: one thread pool, sized by torch.set_num_threads.
    openmp = _openmp_flags()
    with_cuda = _want_cuda(torch.version.cuda)
    if with_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCH_LIST)
        ext = CUDAExtension(
            "fastfreq._C",
            sources + ["csrc/cuda/spectral_augment_kernel.cu"],
            include_dirs=_pip_cuda_includes(),
            extra_compile_args={"cxx": cxx + openmp + ["-DFASTFREQ_WITH_CUDA"],
                                "nvcc": ["-O3", "-DFASTFREQ_WITH_CUDA"]},
            extra_link_args=openmp,
        )
    else:
        ext = CppExtension("fastfreq._C", sources, extra_compile_args={"cxx": cxx + openmp},
                           extra_link_args=openmp)
    print(f"fastfreq build: torch {torch.__version__}, CPU yes (OpenMP {'yes' if openmp else 'no'}), CUDA "
          f"{'yes (arch ' + os.environ['TORCH_CUDA_ARCH_LIST'] + ')' if with_cuda else 'no'}")
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


FALLBACK = ("fastfreq build: {why}. Install without the extension (pure PyTorch backend, "
            "same results, slower on CPU): FASTFREQ_EXT=0 pip install --no-build-isolation .")


def _compiler() -> str | None:
    """The C++ compiler torch's build calls: CXX, else c++."""
    return shutil.which((os.environ.get("CXX") or "c++").split()[0])


class _BuildExt(_setuptools_build_ext):
    """Decides and builds the extension only when it is built: metadata,
    sdist and --version never import torch (nor need ninja). A missing or
    failing compiler ends in one line naming the FASTFREQ_EXT=0 fallback."""

    def __new__(cls, dist, *args, **kwargs):
        if _compiler() is None:
            raise SystemExit(FALLBACK.format(why="no C++ compiler found (CXX, else c++ on PATH)"))
        dist.ext_modules[:], real = _extensions()
        cmd = real["build_ext"](dist, *args, **kwargs)
        run = cmd.run

        def run_with_hint():
            print("fastfreq build: compiling fastfreq._C (a few minutes; `pip install -v` shows "
                  "the progress, FASTFREQ_EXT=0 skips it)", flush=True)
            try:
                run()
            except Exception as exc:  # compiler, linker or ninja failure
                raise SystemExit(FALLBACK.format(
                    why=f"compiling fastfreq._C failed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[-1] if str(exc) else ''})")) from None
        cmd.run = run_with_hint
        return cmd


if __name__ == "__main__":  # not when a test imports the helpers above
    # Metadata, dependencies, packages and entry points: pyproject.toml.
    if os.environ.get("FASTFREQ_EXT", "1") == "0":
        print("fastfreq build: extension skipped (FASTFREQ_EXT=0)")
        setup()
    else:  # a stand-in until build_ext replaces it with torch's extension
        setup(ext_modules=[Extension("fastfreq._C", sources=["csrc/spectral_augment.cpp"])],
              cmdclass={"build_ext": _BuildExt})
