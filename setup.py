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

# Architectures every build covers at least (A100, RTX 30xx/A10, L4/RTX 40xx,
# H100/H200), beside those PyTorch's own wheel lists; PTX of the newest one
# lets later GPUs JIT it. TORCH_CUDA_ARCH_LIST overrides the whole list.
MIN_ARCHS = ("8.0", "8.6", "8.9", "9.0")


def _arch_key(a: str):
    major, minor = a.split(".")
    return int(major), int(minor.rstrip("af") or 0)


def default_arch_list(torch_arch_flags: str, nvcc_archs) -> str:
    """TORCH_CUDA_ARCH_LIST when the user sets none: the SASS architectures of
    torch's own build (``torch._C._cuda_getArchFlags()``, "sm_80 sm_90 ...")
    together with MIN_ARCHS, kept to those ``nvcc --list-gpu-arch`` knows
    (``nvcc_archs``: "compute_90", ...; None when unknown), plus PTX of the
    newest."""
    wanted = set(MIN_ARCHS)
    for flag in (torch_arch_flags or "").split():
        if flag.startswith("sm_") and flag[3:].isdigit():
            num = flag[3:]
            wanted.add(f"{num[:-1]}.{num[-1]}")
    if nvcc_archs is not None:
        known = {f"{n[:-1]}.{n[-1]}" for n in (a.split("_", 1)[-1] for a in nvcc_archs) if n.isdigit()}
        wanted &= known
    if not wanted:
        raise SystemExit("fastfreq build: nvcc supports none of the GPU architectures "
                         f"{', '.join(MIN_ARCHS)}; set TORCH_CUDA_ARCH_LIST")
    archs = sorted(wanted, key=_arch_key)
    archs[-1] += "+PTX"
    return ";".join(archs)


def _nvcc_archs(cuda_home):
    """``nvcc --list-gpu-arch`` as a list, or None when it cannot tell."""
    import subprocess

    nvcc = os.path.join(cuda_home, "bin", "nvcc") if cuda_home else shutil.which("nvcc")
    try:
        out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError, TypeError):
        return None
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def targets_macro(arch_list: str) -> str:
    """The arch list as one preprocessor token for -DFASTFREQ_CUDA_TARGETS
    ("8.0;9.0+PTX" -> "targets_80_90ptx"): no quotes or semicolons to survive
    the shell and ninja. fastfreq.backends.ext.cuda_archs() reads it back.
    Neither the flag nor the token may contain "arch": torch's extension build
    drops its -gencode flags when any nvcc flag does (nvcc then compiled for
    its default sm_75 only)."""
    parts = [a.strip() for a in arch_list.replace(" ", ";").split(";") if a.strip()]
    return "targets_" + "_".join(a.replace(".", "").replace("+PTX", "ptx") for a in parts)


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

    sources = ["csrc/spectral_augment.cpp", "csrc/cpu/spectral_augment_kernel.cpp",
               "csrc/cpu/single_pass.cpp"]
    # No errno and no FP traps: lets the compiler vectorise the branch-free
    # noise and Dir loops (no code here reads errno or FP exceptions).
    # No FMA contraction: the x86 clones of the noise loops (target_clones
    # avx512f/avx2) would otherwise fuse a*b+c where the default clone does
    # not, so the same seed gave draws 1 ulp apart on AVX-512 CPUs (seen on an
    # AMD EPYC: the row fill differed from normal_at).
    cxx = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
    # OpenMP: at::parallel_for is inline OpenMP code (torch is built with
    # AT_PARALLEL_OPENMP), so without -fopenmp every chunk ran on the calling
    # thread. Linking -fopenmp names libgomp.so.1, which resolves to the copy
    # torch has already loaded: one thread pool, sized by torch.set_num_threads.
    openmp = _openmp_flags()
    with_cuda = _want_cuda(torch.version.cuda)
    if with_cuda:
        from torch.utils.cpp_extension import CUDA_HOME

        if not os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip():
            flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, "_cuda_getArchFlags") else ""
            os.environ["TORCH_CUDA_ARCH_LIST"] = default_arch_list(flags, _nvcc_archs(CUDA_HOME))
        defines = ["-DFASTFREQ_WITH_CUDA",
                   f"-DFASTFREQ_CUDA_TARGETS={targets_macro(os.environ['TORCH_CUDA_ARCH_LIST'])}"]
        ext = CUDAExtension(
            "fastfreq._C",
            sources + ["csrc/cuda/spectral_augment_kernel.cu", "csrc/cuda/single_pass_kernel.cu"],
            include_dirs=_pip_cuda_includes(),
            extra_compile_args={"cxx": cxx + openmp + defines,
                                "nvcc": ["-O3"] + defines},
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
