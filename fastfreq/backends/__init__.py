"""The backends and what the rest of fastfreq may use of their shared
contract (``_contract`` is private to this package: the modules outside it
import these names from here)."""
from ._autograd import NumpyFn
from ._contract import bad_images, draw_seed, kernel_seed

__all__ = ["NumpyFn", "bad_images", "draw_seed", "kernel_seed"]
