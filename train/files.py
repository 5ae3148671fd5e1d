"""Writing and reading the files of runs so that a fault never costs finished
work: every write goes through a temporary file of its own (unique per
process, so concurrent runs never share one) that replaces the target only
when complete; a failed write (a full disk, a read-only folder) names the file
and leaves the target as it was; a damaged result is named and set aside."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sys


class WriteError(OSError):
    """A file could not be written; the message names it (one line)."""


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:160]


def atomic_write(path: str, write, hint: str = "") -> None:
    """``write(tmp)`` writes the content to ``tmp`` (a fresh name beside
    ``path``), which then replaces ``path``. On any failure, interrupts
    included, the temporary is removed and ``path`` is untouched; an OSError
    or RuntimeError (torch.save's "file write failed") becomes a WriteError
    naming ``path`` and ending with ``hint``."""
    tmp = f"{path}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, (OSError, RuntimeError)) and not isinstance(exc, WriteError):
            raise WriteError(f"{path}: could not write it ({_reason(exc)})"
                             + (f"; {hint}" if hint else "")) from exc
        raise


def write_json(obj, path: str, hint: str = "") -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
    atomic_write(path, write, hint)


def free_name(base: str) -> str:
    """``base``, or ``base.1``, ``base.2`` ... : the first that does not exist."""
    name, k = base, 0
    while os.path.exists(name):
        k += 1
        name = f"{base}.{k}"
    return name


def read_results(path: str, set_aside: bool = True):
    """The dict in a ``results.json``; None when the file is damaged (not
    JSON, truncated, empty): it is then renamed ``<path>.corrupt`` (with
    ``set_aside``) and a one-line warning names it."""
    try:
        with open(path) as f:
            res = json.load(f)
        if not isinstance(res, dict):
            raise ValueError(f"a JSON {type(res).__name__}, not an object")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        what = f"damaged ({type(exc).__name__}: {_reason(exc)})"
        if set_aside:
            aside = free_name(path + ".corrupt")
            os.replace(path, aside)
            warn(f"{path}: {what}; set aside as {aside}, the run is evaluated again")
        else:
            warn(f"{path}: {what}; left out (`sweep` sets it aside and evaluates the run again)")
        return None
    return res


def keep_beside(path: str, suffix: str = ".prev") -> str | None:
    """Copy an existing ``path`` to a free ``path<suffix>[.k]`` (returned), so
    that a new version of it does not replace the old one silently."""
    if not os.path.exists(path):
        return None
    aside = free_name(path + suffix)
    shutil.copy2(path, aside)
    return aside


@contextlib.contextmanager
def exclusive(folder: str, name: str = ".build.lock"):
    """Hold an exclusive lock on ``folder`` (flock on ``folder/name``, released
    by the kernel if the process dies): a second process waits here until
    the first is done."""
    fd = os.open(os.path.join(folder, name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def warn(msg: str) -> None:
    """One line on stderr (a CLI warning, not a Python traceback-style warning)."""
    print(f"warning: {msg}", file=sys.stderr, flush=True)
