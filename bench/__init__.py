# One copy of this package per process: it is fastfreq.bench when installed
# (pyproject's package-dir) and bench in a checkout. Loading it under both names
# would make two copies of every class (an isinstance or a pickle across them
# fails), so the second name is refused.
import sys as _sys

_OTHER = {"bench": "fastfreq.bench", "fastfreq.bench": "bench"}.get(__name__)
if _OTHER in _sys.modules:
    raise ImportError(f"{__name__}: already imported as {_OTHER!r} in this process; import it one "
                      f"way (installed: fastfreq.bench, in a checkout: bench), not both")
