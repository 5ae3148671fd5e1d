"""Progress for long loops: a tqdm bar on a terminal; in a log file (stderr
not a terminal, e.g. `... > log 2>&1` or a batch job) a plain line every
``FASTFREQ_PROGRESS_S`` seconds (default 10) and one at the end, so a log
shows that work is going on from the first seconds."""
from __future__ import annotations

import os
import sys
import time


class _Lines:
    """Iterate and print ``desc: i/total unit (rate/s, elapsed) postfix`` lines."""

    def __init__(self, iterable, desc: str = "", total: int | None = None, unit: str = "it",
                 interval: float | None = None, stream=None, **_ignored):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.interval = float(os.environ.get("FASTFREQ_PROGRESS_S", "10")) if interval is None else interval
        self.stream = stream or sys.stderr
        self.postfix = ""

    def set_postfix(self, **kw):
        self.postfix = " ".join(f"{k}={v}" for k, v in kw.items())

    def _line(self, n: int, t0: float):
        dt = time.perf_counter() - t0
        of = f"/{self.total}" if self.total is not None else ""
        rate = f"{n / dt:.1f} {self.unit}/s" if dt > 0 else "-"
        print(f"{self.desc}: {n}{of} {self.unit} ({rate}, {dt:.0f} s) {self.postfix}".rstrip(),
              file=self.stream, flush=True)

    def __iter__(self):
        t0 = last = time.perf_counter()
        n = 0
        for item in self.iterable:
            yield item
            n += 1
            now = time.perf_counter()
            if now - last >= self.interval:
                self._line(n, t0)
                last = now
        self._line(n, t0)

    def __len__(self):
        return self.total


def progress(iterable, **kwargs):
    """A tqdm bar when stderr is a terminal (and tqdm is installed: the GPU
    check runs on interpreters that may lack it), else periodic lines."""
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(iterable, **kwargs)
    return _Lines(iterable, **kwargs)
