"""The package as a user installs it: an sdist that holds everything the
build needs, a wheel built from that sdist (CPU extension), installed in a
folder of its own: it imports, its extension loads, its entry points run, and
it puts no generic top-level packages into site-packages."""
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="no C++ compiler")
def test_sdist_builds_a_wheel_that_installs_and_runs(tmp_path):
    pytest.importorskip("build")
    env = {**os.environ, "FASTFREQ_CUDA": "0", "MAX_JOBS": "2"}
    _run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp_path), ROOT],
         env=env)
    (sdist,) = tmp_path.glob("fastfreq-*.tar.gz")
    names = tarfile.open(sdist).getnames()
    for need in ("csrc/spectral_common.h", "csrc/spectral_checks.h", "csrc/cuda/spectral_augment_kernel.cu",
                 "pyproject.toml", "LICENSE", "train/engine.py", "bench/core.py"):
        assert any(n.endswith(need) for n in names), need
    # the wheel is built from the sdist alone (not from the checkout)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
          "-w", str(tmp_path), str(sdist)], env=env, cwd=tmp_path)
    (wheel,) = tmp_path.glob("fastfreq-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops <= {"fastfreq", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}, tops
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)])
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = _run([sys.executable, "-c",
                  "import fastfreq, torch; from fastfreq.backends import ext; "
                  "print(fastfreq.__file__, ext.available(), fastfreq.__version__); "
                  "print(fastfreq.power_suppress(torch.rand(1, 3, 8, 8), 0, 0.5, backend='cpp').shape)"],
                 env=env, cwd=tmp_path)
    where, has_ext, version = probe.stdout.split("\n")[0].split()
    assert where.startswith(str(site)) and has_ext == "True"
    meta = zipfile.ZipFile(wheel).read(f"fastfreq-{version}.dist-info/METADATA").decode()
    for field in ("License-Expression: MIT", "Requires-Dist: pillow", "Provides-Extra: torchvision",
                  "Requires-Dist: torchvision; extra == \"torchvision\""):
        assert field in meta, field
    for script, args in (("fastfreq-train", ["list"]), ("fastfreq-bench", ["--help"])):
        out = _run([str(site / "bin" / script), *args], env=env, cwd=tmp_path)
        assert out.stdout.strip()
    _readme_commands_run_from(site, env, tmp_path)


def _readme_commands_run_from(site, env, cwd):
    """Every README command line resolves in the installed package: its
    program and subcommand answer --help, and that help lists every option
    the README line uses (running them for real would train for hours)."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    checked = {}
    for cmd in _readme_commands(readme):
        if cmd.startswith(CHECKOUT_ONLY):
            continue
        words = cmd.split()
        if words[0] == "torchrun":
            at = words.index("-m")
            prog, rest = [sys.executable, "-m", words[at + 1]], words[at + 2:]
        elif words[:2] == ["python", "-m"]:
            prog, rest = [sys.executable, "-m", words[2]], words[3:]
        else:
            prog, rest = [str(site / "bin" / words[0])], words[1:]
        sub = [rest[0]] if rest and not rest[0].startswith(("-", "[")) else []
        key = (tuple(prog), tuple(sub))
        if key not in checked:
            checked[key] = _run([*prog, *sub, "--help"], env=env, cwd=cwd).stdout
        for opt in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(rest)):
            assert opt in checked[key], f"README: `{cmd}`: {opt} is not an option of {key}"
    assert len(checked) >= 5, checked.keys()


def test_dev_extra_holds_the_build_requirements():
    """`python -m build --no-isolation` (the sdist -> wheel test above, the
    README's sdist command) checks that every [build-system] requirement is
    installed, for an sdist too. In a fresh venv with torch and `.[dev]`'s
    packages it stopped at 'Unmet dependencies: ninja, wheel': [dev] now
    brings them."""
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))

    def names(reqs):
        return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in reqs}

    dev = names(meta["project"]["optional-dependencies"]["dev"])
    base = names(meta["project"]["dependencies"])
    missing = names(meta["build-system"]["requires"]) - dev - base - {"setuptools"}
    assert not missing, f"[dev] lacks the build requirements {sorted(missing)}"
    assert "build" in dev


def test_cuda_part_needs_the_cuda_runtime_library(tmp_path):
    """nvcc on PATH but no libcudart.so: once CUDA was enabled and the link
    failed after minutes (`cannot find -lcudart`); now a CPU build with a note."""
    import torch

    if not torch.version.cuda:  # checked in a torch==2.13.0+cpu venv: this asserted a CUDA torch
        pytest.skip("a CPU-only torch: the CUDA part is never built, with nvcc or without")
    fake = tmp_path / "cuda"
    (fake / "bin").mkdir(parents=True)
    # answers --list-gpu-arch as nvcc 13 does (the build's default arch list asks)
    (fake / "bin" / "nvcc").write_text(
        '#!/bin/sh\nif [ "$1" = --list-gpu-arch ]; then printf "compute_80\\ncompute_86\\n'
        'compute_89\\ncompute_90\\n"; else echo fake nvcc; fi\n')
    (fake / "bin" / "nvcc").chmod(0o755)
    # the same case here and in CI (which sets an arch list): the default list
    env = {k: v for k, v in os.environ.items() if k not in ("FASTFREQ_CUDA", "TORCH_CUDA_ARCH_LIST")}
    env.update(CUDA_HOME=str(fake), PATH=f"{fake / 'bin'}:/usr/bin:/bin")
    # the build's own decision (setup.py decides only when it builds)
    decide = [sys.executable, "-c", "import setup; setup._extensions()"]
    out = _run(decide, env=env, cwd=ROOT)
    assert "nvcc found but no libcudart.so" in out.stdout and "CUDA no" in out.stdout
    (fake / "lib64").mkdir()
    (fake / "lib64" / "libcudart.so").write_text("")
    out = _run(decide, env=env, cwd=ROOT)
    assert "CUDA yes" in out.stdout and "no libcudart.so" not in out.stdout
    assert "8.0;8.6;8.9;9.0" in out.stdout, out.stdout


def test_metadata_and_sdist_do_not_import_torch(tmp_path):
    """`setup.py --version` / sdist: no torch import (an isolated metadata
    build once installed a CUDA torch to read a version string)."""
    out = _run([sys.executable, "-X", "importtime", "setup.py", "--version"], cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == __import__("fastfreq").__version__
    imported = [ln.split("|")[-1].strip() for ln in out.stderr.splitlines() if "|" in ln]
    assert not [m for m in imported if m.split(".")[0] in ("torch", "ninja")], "torch imported"


def _build_ext(tmp_path, env):
    return subprocess.run([sys.executable, "setup.py", "build_ext", "-b", str(tmp_path / "lib"),
                           "-t", str(tmp_path / "tmp")], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env={**env, "FASTFREQ_CUDA": "0"})


def test_no_compiler_ends_in_one_line_naming_the_fallback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env["PATH"] = str(tmp_path)  # nothing on it: no c++
    out = _build_ext(tmp_path, env)
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode != 0 and len(lines) <= 3, lines
    assert lines[-1].startswith("fastfreq build: no C++ compiler found") and "FASTFREQ_EXT=0" in lines[-1]


def test_failing_compile_says_so_and_names_the_fallback(tmp_path):
    """A compiler that fails: a progress line first, and the output ends in
    the one line that names the pure-PyTorch install."""
    out = _build_ext(tmp_path, {**os.environ, "CXX": shutil.which("false")})
    lines = out.stdout.strip().splitlines() + out.stderr.strip().splitlines()
    assert out.returncode != 0
    assert any(ln.startswith("fastfreq build: compiling fastfreq._C") for ln in lines), lines
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("fastfreq build: compiling fastfreq._C failed") and "FASTFREQ_EXT=0" in last


# ------------------------------------------------------------------ installed forms of the CLIs
def _readme_commands(text):
    """The command lines of the README's bash blocks (continuations joined)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [ln.split("#")[0].strip() for ln in joined.splitlines() if ln.split("#")[0].strip()]
    return lines


CHECKOUT_ONLY = ("make ", "pip install", "pytest ")


def test_docs_and_help_use_forms_that_work_after_pip_install():
    """`python -m train` / `python -m bench` work only from a checkout (after
    `pip install` the packages are fastfreq.train and fastfreq.bench)."""
    from bench.__main__ import parser as bench_parser
    from train.__main__ import parser as train_parser

    texts = {"README.md": open(os.path.join(ROOT, "README.md")).read(),
             "docs/results.md": open(os.path.join(ROOT, "docs", "results.md")).read(),
             "fastfreq-train --help": train_parser().format_help(),
             "fastfreq-bench --help": bench_parser().format_help()}
    for where, text in texts.items():
        # bench.gpu_check and train.campaign are the GPU machine's entry points, where the
        # checkout travels without being installed
        bad = re.findall(r"(?:python3? -m|torchrun[^\n]*?-m) (?:train|bench)\b(?!\.gpu_check|\.campaign)", text)
        assert not bad, f"{where}: {bad}"
    for cmd in _readme_commands(texts["README.md"]):
        if not cmd.startswith(CHECKOUT_ONLY):
            assert re.match(r"(fastfreq-[a-z]+|python -m fastfreq\.|torchrun .*-m fastfreq\.)",
                            cmd), cmd
