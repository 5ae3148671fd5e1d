"""The data folder that travels to a GPU machine inside the checkout (issue 25).

A GPU machine here sees only the checkout (at most 64 MiB in all, ignored
folders included when named), never ``../shared``. This module builds an
ignored folder, ``data/gpu/`` by default, from the shared data:

* the CIFAR-10 JPEG archive and its builder script, copied as they are (the
  archive is 19 MB; decoded, CIFAR-10 would be 184 MB). The builder writes
  ``data/gpu.decoded/cifar-10-batches-py/`` on first use, on the GPU machine
  (beside the folder, so that a decoded copy never travels with it);
* ``cifar10c/``: the first N test images of the real CIFAR-10-C sample, all
  19 corruptions x 5 severities, in the CIFAR-10-C layout. The sample does not
  compress (noise-like pixels), so N is the largest number whose files fit what
  the budget leaves: 64 MiB minus the rest of the checkout, a reserve for
  later commits, the archive and the script;
* ``manifest.json`` (what was copied, N, the byte count) and ``code.json``
  (the commit and a SHA-256 of every source file, so that a run on a machine
  without the git metadata still records which code trained it).

    fastfreq-train gpu-data --shared ../shared/data          # builds data/gpu/
    fastfreq-train gpu-data --stamp-only                     # refresh code.json after a commit
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from .data import ALL_19, CIFAR10C, DataError, load_cifar10

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join("data", "gpu")  # /data/ is git-ignored
CHECKOUT_LIMIT = 64 * 2**20                # what travels to the GPU machine, in all
RESERVE = 2 * 2**20                        # room for results and docs committed after the build
ARCHIVE = "cifar10-jpeg.tar.gz"
BUILDER = "build_cifar10.py"
SAMPLE = "CIFAR-10-C-sample"
C_DIR = "cifar10c"
MANIFEST = "manifest.json"
CODE = "code.json"
MANIFEST_RESERVE = 8192                    # manifest.json and code.json together stay below this
NPY_HEADER = 128                           # np.save's header for these shapes (checked after writing)
# one test image in all 19 corruptions x 5 severities, plus its 5 labels
BYTES_PER_IMAGE = len(ALL_19) * 5 * 32 * 32 * 3 + 5
# what code.json fingerprints: everything that decides what a run computes
CODE_PATHS = ("fastfreq", "train", "csrc", "setup.py")


def _git(root: str, *args) -> str | None:
    try:
        p = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def checkout_bytes(root: str = ROOT) -> int:
    """Bytes of the files that travel with the checkout besides carried
    folders: tracked files and untracked ones that git does not ignore."""
    listing = _git(root, "ls-files", "-co", "--exclude-standard", "-z")
    if listing is None:
        raise ValueError(f"checkout: {root} is not a git checkout (git ls-files failed); pass --budget-mib "
                         "with the bytes this folder may use")
    return sum(os.path.getsize(os.path.join(root, f)) for f in listing.split("\0")
               if f and os.path.isfile(os.path.join(root, f)))


def images_that_fit(budget_bytes: int, fixed_bytes: int, available: int) -> int:
    """The largest N <= available whose C subset fits beside ``fixed_bytes``."""
    headers = (len(ALL_19) + 1) * NPY_HEADER
    return max(0, min(available, (budget_bytes - fixed_bytes - headers) // BYTES_PER_IMAGE))


def folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(shared: str, dest: str, budget_bytes: int, n_images: int | None = None) -> dict:
    """Write the folder ``dest`` (replacing an older one only once the new one
    is complete) holding at most ``budget_bytes``; returns its manifest."""
    sample = os.path.join(shared, SAMPLE)
    for need in (os.path.join(shared, ARCHIVE), os.path.join(shared, BUILDER), os.path.join(sample, "labels.npy")):
        if not os.path.exists(need):
            raise DataError(f"shared: {need} missing; expected the shared data folder "
                            f"({ARCHIVE}, {BUILDER}, {SAMPLE}/)")
    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1):
        raise ValueError(f"n_images: expected a positive int, got {n_images!r}")
    src = CIFAR10C(sample)
    fixed = sum(os.path.getsize(os.path.join(shared, f)) for f in (ARCHIVE, BUILDER)) + MANIFEST_RESERVE
    n = images_that_fit(budget_bytes, fixed, src.n)
    if n < 1:
        raise ValueError(f"budget: {budget_bytes} bytes hold the archive and builder ({fixed} bytes with "
                         f"the manifest) but not one CIFAR-10-C image ({BYTES_PER_IMAGE} bytes)")
    if n_images is not None:
        if n_images > n:
            raise ValueError(f"n_images: {n_images} CIFAR-10-C images do not fit the budget "
                             f"({budget_bytes} bytes); at most {n}")
        n = n_images
    tmp = dest.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, C_DIR))
    for f in (ARCHIVE, BUILDER):
        shutil.copyfile(os.path.join(shared, f), os.path.join(tmp, f))
    for name in ALL_19:
        arr = src.load(name)
        rows = np.concatenate([arr[s * src.n: s * src.n + n] for s in range(5)])
        np.save(os.path.join(tmp, C_DIR, f"{name}.npy"), rows)
    labels = np.concatenate([np.load(os.path.join(sample, "labels.npy"))[s * src.n: s * src.n + n]
                             for s in range(5)])
    np.save(os.path.join(tmp, C_DIR, "labels.npy"), labels)
    manifest = {"format": 1, "n_c_images": n, "n_c_source": src.n, "corruptions": list(ALL_19),
                "archive_sha256": _sha256(os.path.join(tmp, ARCHIVE)), "budget_bytes": budget_bytes,
                "source": os.path.abspath(shared)}
    write_stamp(tmp)
    manifest["bytes"] = 0
    while True:  # the folder's size, manifest included: stable once its digits are
        _write_json(manifest, os.path.join(tmp, MANIFEST))
        used = folder_bytes(tmp)
        if used == manifest["bytes"]:
            break
        manifest["bytes"] = used
    if used > budget_bytes:  # the arithmetic above is exact: this is a bug, not bad input
        shutil.rmtree(tmp)
        raise RuntimeError(f"gpu data: {used} bytes written, over the budget of {budget_bytes}")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return manifest


def _write_json(obj, path: str):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- code identity
def _code_files(root: str) -> list[str]:
    listing = _git(root, "ls-files", "-co", "--exclude-standard", "-z", "--", *CODE_PATHS)
    if listing is None:
        raise ValueError(f"stamp: {root} is not a git checkout; code.json is made where git is")
    return sorted(f for f in listing.split("\0") if f)


def write_stamp(folder: str, root: str = ROOT) -> dict:
    """``folder/code.json``: HEAD, whether the source files differ from it, and
    each source file's SHA-256 (what a machine without git compares)."""
    files = _code_files(root)
    head = (_git(root, "rev-parse", "HEAD") or "").strip()
    dirty = bool((_git(root, "status", "--porcelain", "--", *CODE_PATHS) or "").strip())
    stamp = {"commit": head, "dirty": dirty,
             "files": {f: _sha256(os.path.join(root, f)) for f in files if os.path.exists(os.path.join(root, f))}}
    _write_json(stamp, os.path.join(folder, CODE))
    return stamp


def code_identity(folder: str | None, root: str = ROOT) -> dict:
    """``{"commit", "dirty", "how"}`` of the code running now: from git where
    the checkout has its metadata, else from ``folder/code.json`` after
    checking every fingerprinted file against it. ValueError when neither
    says which commit this is (a result must name the code that made it)."""
    top = (_git(root, "rev-parse", "--show-toplevel") or "").strip()
    head = _git(root, "rev-parse", "HEAD") if top and os.path.realpath(top) == os.path.realpath(root) else None
    if head:
        dirty = bool((_git(root, "status", "--porcelain", "--", *CODE_PATHS) or "").strip())
        return {"commit": head.strip(), "dirty": dirty, "how": "git"}
    path = os.path.join(folder, CODE) if folder else None
    if not path or not os.path.exists(path):
        raise ValueError(f"code: no git metadata here and no {path or CODE}; run `fastfreq-train gpu-data "
                         "--stamp-only` in the checkout before sending it")
    with open(path) as f:
        stamp = json.load(f)
    changed = [p for p, sha in stamp["files"].items()
               if not os.path.exists(os.path.join(root, p)) or _sha256(os.path.join(root, p)) != sha]
    if changed:
        raise ValueError(f"code: {len(changed)} source files differ from {path} (made at commit "
                         f"{stamp['commit'][:12]}), e.g. {', '.join(changed[:3])}; run `python -m train "
                         "gpu-data --stamp-only` after the last commit")
    return {"commit": stamp["commit"], "dirty": stamp["dirty"], "how": f"stamp {CODE}"}


# ---------------------------------------------------------------- loaders
class GpuData:
    """Reads a folder made by :func:`build` (or one laid out the same way with
    ``cifar-10-batches-py/`` already in it)."""

    def __init__(self, root: str = DEFAULT_DIR):
        self.root = root
        path = os.path.join(root, MANIFEST)
        if not os.path.exists(path):
            raise DataError(f"data: {path} missing; build the folder with `fastfreq-train gpu-data "
                            "--shared ../shared/data`")
        with open(path) as f:
            self.manifest = json.load(f)
        self.c_root = os.path.join(root, C_DIR)

    @property
    def cifar_root(self) -> str:
        """The folder holding ``cifar-10-batches-py/``: the data folder's own
        when it has one, else ``<folder>.decoded`` beside it, decoded from the
        archive by the copied builder on first use. Beside, not inside: the
        184 MB decoded copy must not travel when the folder is carried. Decoded
        into a temporary folder and renamed when complete, so an interrupted
        decode is redone."""
        if os.path.exists(os.path.join(self.root, "cifar-10-batches-py", "test_batch")):
            return self.root
        decoded = self.root.rstrip("/") + ".decoded"
        if not os.path.exists(os.path.join(decoded, "cifar-10-batches-py", "test_batch")):
            builder = os.path.join(self.root, BUILDER)
            if not os.path.exists(builder):
                raise DataError(f"data: neither {self.root}/cifar-10-batches-py/ nor {builder} is there")
            tmp = decoded + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run([sys.executable, builder, tmp], check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(decoded, ignore_errors=True)
            os.replace(tmp, decoded)
        return decoded

    def cifar10(self):
        """``(train images, train labels, test images, test labels)`` (uint8 NCHW, int64)."""
        xtr, ytr = load_cifar10(self.cifar_root, "train")
        xte, yte = load_cifar10(self.cifar_root, "test")
        return xtr, ytr, xte, yte

    def cifar10c(self, test_labels=None) -> CIFAR10C:
        """The real CIFAR-10-C subset; with ``test_labels``, checked to be the
        first N test images (the sample was made from that test_batch order)."""
        cset = CIFAR10C(self.c_root)
        if cset.n != self.manifest["n_c_images"]:
            raise DataError(f"{self.c_root}: holds {cset.n} images per severity, the manifest says "
                            f"{self.manifest['n_c_images']}")
        if test_labels is not None:
            first = np.asarray(test_labels[:cset.n])
            if len(first) < cset.n or not np.array_equal(cset.labels[:cset.n], first):
                raise DataError(f"{self.c_root}: its labels are not those of the first {cset.n} test "
                                "images; the CIFAR-10 copy and the CIFAR-10-C subset come from different "
                                "test_batch orders")
        return cset

    def identity(self) -> dict:
        """What a result depends on in this folder (compared across runs)."""
        return {"archive_sha256": self.manifest.get("archive_sha256"), "n_c_images": self.manifest["n_c_images"]}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="fastfreq-train gpu-data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(ap)
    return run_cli(ap.parse_args(argv))


def add_arguments(ap):
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"),
                    help="the shared data folder (cifar10-jpeg.tar.gz, build_cifar10.py, CIFAR-10-C-sample/) "
                    "(default: %(default)s)")
    ap.add_argument("--dest", default=os.path.join(ROOT, DEFAULT_DIR), help="folder to build (git-ignored) (default: %(default)s)")
    ap.add_argument("--budget-mib", type=float,
                    help="bytes this folder may use, in MiB (default: 64 MiB minus the rest of the checkout "
                    "minus a 2 MiB reserve)")
    ap.add_argument("--n-images", type=int, help="CIFAR-10-C images per corruption and severity "
                    "(default: as many as fit)")
    ap.add_argument("--stamp-only", action="store_true", help="only rewrite <dest>/code.json")


def run_cli(a) -> int:
    if a.stamp_only:
        if not os.path.exists(os.path.join(a.dest, MANIFEST)):
            raise ValueError(f"dest: {a.dest} is not a built data folder")
        s = write_stamp(a.dest)
        print(f"wrote {os.path.join(a.dest, CODE)}: commit {s['commit'][:12]}"
              + (" with uncommitted source changes" if s["dirty"] else ""))
        return 0
    if a.budget_mib is not None:
        if not a.budget_mib > 0:
            raise ValueError(f"--budget-mib: expected a positive number, got {a.budget_mib}")
        budget, rest = int(a.budget_mib * 2**20), None
    else:
        rest = checkout_bytes()
        budget = CHECKOUT_LIMIT - rest - RESERVE
    m = build(a.shared, a.dest, budget, a.n_images)
    print(f"wrote {a.dest}: {m['n_c_images']} CIFAR-10-C images x 19 corruptions x 5 severities, "
          f"{m['bytes'] / 2**20:.2f} MiB of a {budget / 2**20:.2f} MiB budget"
          + (f" (checkout {rest / 2**20:.2f} MiB + reserve {RESERVE / 2**20:.0f} MiB)" if rest is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
