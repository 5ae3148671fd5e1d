"""Import layering: runtime code computes nothing with the test oracle, no
package reaches into a private module of a package below it, and train/ and
bench/ load under one name per process."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# where each checkout folder lives once installed (pyproject's package-dir)
INSTALLED = {"fastfreq": "fastfreq", "train": "fastfreq.train", "bench": "fastfreq.bench"}
# the modules that may import the reference: itself, the backend that IS the
# reference (backend="numpy"), the demo whose job is the equivalence table,
# the package's public re-export of the module, and the benchmarks (they
# measure errors against it)
ORACLE_USERS = {"fastfreq.reference", "fastfreq.backends.numpy_ref", "fastfreq.demo", "fastfreq"}


def _modules():
    """(installed module name, is a package __init__, path) of every runtime module."""
    for top, name in INSTALLED.items():
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT / top).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if parts and parts[-1].startswith("test_"):
                continue
            yield ".".join([name, *parts]), path.name == "__init__.py", path


def _imports(mod: str, is_pkg: bool, path: Path):
    """Absolute names of everything ``path`` imports (``from a import b`` gives a.b)."""
    package = mod if is_pkg else mod.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            elif base.split(".")[0] in ("train", "bench"):  # checkout names
                base = INSTALLED[base.split(".")[0]] + base[len(base.split(".")[0]):]
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _is_module(parts) -> bool:
    """Whether fastfreq.a._b names a module or package (a file of the checkout),
    a compiled extension included."""
    folder = ROOT.joinpath(*parts[:-1])
    return (folder / f"{parts[-1]}.py").exists() or (folder / parts[-1]).is_dir() \
        or any(folder.glob(f"{parts[-1]}.*.so"))


def test_runtime_code_does_not_use_the_reference():
    users = {mod for mod, is_pkg, path in _modules()
             if not mod.startswith("fastfreq.bench")
             and any(n == "fastfreq.reference" for n in _imports(mod, is_pkg, path))}
    assert users <= ORACLE_USERS, f"import the test oracle: {sorted(users - ORACLE_USERS)}"


def test_no_private_module_of_a_package_below():
    """A private module (``_name``) is imported only from inside the package that
    holds it (a subpackage using its parent's helpers is fine; the parent
    reaching into a subpackage's private module is not)."""
    leaks = []
    for mod, is_pkg, path in _modules():
        for name in _imports(mod, is_pkg, path):
            parts = name.split(".")
            for i, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__") and parts[0] == "fastfreq":
                    if not _is_module(parts[:i + 1]):
                        break  # a private name inside a module, not a private module
                    owner = ".".join(parts[:i])
                    if not (mod == owner or mod.startswith(owner + ".")):
                        leaks.append(f"{mod} imports {'.'.join(parts[:i + 1])}")
                    break
    assert not leaks, leaks


@pytest.mark.parametrize("pkg", ["train", "bench"])
def test_train_and_bench_load_under_one_name(pkg):
    code = f"import fastfreq.{pkg}\nimport {pkg}\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert out.returncode != 0 and f"already imported as 'fastfreq.{pkg}'" in out.stderr, out.stderr
