"""Argument checks shared by the reference, the torch API and the modules.

Every check raises ``ValueError``/``TypeError`` naming the argument, the value
received and what was expected.
"""
from __future__ import annotations

import math
import numbers
import re

import numpy as np
import torch

from .constants import BACKENDS, BAND_IDS, MAX_NFD_BANDS, RADIUS_SCALE_RANGE, SIGMA_MAX

_CONFIG_RE = re.compile(r"^LMH=([01])([01])([01])$")


def image_size(H, W) -> None:
    for name, v in (("H", H), ("W", W)):
        # SymInt: sizes traced by torch.compile / AOT autograd
        if not isinstance(v, (numbers.Integral, torch.SymInt)) or v < 2:
            raise ValueError(f"{name}: image sizes must be integers >= 2, got {v!r}")


def real_device(device, name: str) -> None:
    """Refuse the meta device: it has shapes but no values, and every check
    and kernel here reads values."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}: expected a device such as 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "meta":
        raise ValueError(f"{name}: got the meta device (shapes only, no data); expected a "
                         "device that holds values, such as 'cpu' or 'cuda'")


def finite_float(v, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    return v


def nonneg_float(v, name: str) -> float:
    v = finite_float(v, name)
    if v < 0:
        raise ValueError(f"{name}: expected a value >= 0, got {v}")
    return v


def positive_float(v, name: str) -> float:
    v = finite_float(v, name)
    if v <= 0:
        raise ValueError(f"{name}: expected a value > 0, got {v}")
    return v


def sigma(v, name: str = "sigma") -> float:
    """NFD noise strength in [0, SIGMA_MAX] (larger overflows float32)."""
    v = nonneg_float(v, name)
    if v > SIGMA_MAX:
        raise ValueError(f"{name}: expected a value in [0, {SIGMA_MAX:g}] (the noise is computed "
                         f"in float32), got {v:g}")
    return v


def radius_scale(v, name: str = "radius_scale") -> float:
    v = positive_float(v, name)
    lo, hi = RADIUS_SCALE_RANGE
    if not lo <= v <= hi:
        raise ValueError(f"{name}: expected a value in [{lo:g}, {hi:g}] (beyond it every mask "
                         f"is flat on images up to 64x64), got {v:g}")
    return v


def unit_range(r, name: str) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with 0 <= lo <= hi <= 1."""
    if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) != 2:
        raise ValueError(f"{name}: expected a range (lo, hi) with 0 <= lo <= hi <= 1, got {r!r}")
    lo, hi = (finite_float(a, name) for a in r)
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"{name}: expected a range (lo, hi) with 0 <= lo <= hi <= 1, got {r!r}")
    return lo, hi


def probability(v, name: str = "p") -> float:
    v = finite_float(v, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {v}")
    return v


def backend_name(backend) -> str:
    """One of ``BACKENDS``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    return backend


def generator(g, name: str = "generator"):
    """None or a ``torch.Generator``."""
    if g is not None and not isinstance(g, torch.Generator):
        raise TypeError(f"{name}: expected a torch.Generator, got {type(g).__name__}")
    return g


def band_id(band) -> int:
    """A single band given as a letter 'L'/'M'/'H' or an id 0/1/2."""
    if isinstance(band, str):
        if band not in BAND_IDS:
            raise ValueError(f"band: expected one of 'L', 'M', 'H' or 0, 1, 2, got {band!r}")
        return BAND_IDS[band]
    if isinstance(band, bool) or not isinstance(band, numbers.Integral) or not 0 <= band <= 2:
        raise ValueError(f"band: expected one of 'L', 'M', 'H' or 0, 1, 2, got {band!r}")
    return int(band)


def nfd_bands(bands) -> tuple[tuple[float, float], ...]:
    """NFD band edges: a non-empty sequence of ``(a, b)`` pairs with a < b."""
    try:
        pairs = tuple((float(a), float(b)) for a, b in bands)
    except (TypeError, ValueError):
        raise ValueError(f"nfd_bands: expected a sequence of (a, b) pairs, got {bands!r}") from None
    if not pairs:
        raise ValueError("nfd_bands: expected at least one (a, b) pair, got none")
    if len(pairs) > MAX_NFD_BANDS:
        raise ValueError(f"nfd_bands: at most {MAX_NFD_BANDS} bands are supported, got {len(pairs)}")
    for a, b in pairs:
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise ValueError(f"nfd_bands: each pair needs finite edges a < b, got ({a}, {b})")
    return pairs


def label_config(config):
    """Parse ``"LMH=abc"`` (a, b, c in {0, 1}) or ``"learnable"``."""
    if config == "learnable":
        return "learnable"
    m = _CONFIG_RE.match(config) if isinstance(config, str) else None
    if m is None:
        raise ValueError(
            f"config: expected 'LMH=abc' with a, b, c in {{0, 1}} (e.g. 'LMH=011') "
            f"or 'learnable', got {config!r}")
    return tuple(int(d) for d in m.groups())


def ps_requested(band, alpha) -> bool:
    if (band is None) != (alpha is None):
        raise ValueError("band, alpha: power suppression needs both (or neither), "
                         f"got band={'None' if band is None else 'given'}, "
                         f"alpha={'None' if alpha is None else 'given'}")
    return band is not None


# ---------------------------------------------------------------------------
# NumPy-side checks (the reference)
# ---------------------------------------------------------------------------
def np_images(x) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x: expected floating-point images, got dtype {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"x: expected shape (B, C, H, W), got {x.shape}")
    image_size(x.shape[2], x.shape[3])
    return x.astype(np.float64)


def np_unit_interval(v, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"{name}: expected values in [0, 1], got min {a.min()}, max {a.max()}")
    return a


def np_band_alpha(band, alpha, batch: int | None = None):
    """``band`` -> int array in {0,1,2}; ``alpha`` -> float array in [0,1],
    both of shape ``(batch,)`` (scalars are broadcast)."""
    if isinstance(band, str):
        band = band_id(band)
    band = np.asarray(band)
    if band.dtype.kind not in "iu":
        raise TypeError(f"band: expected integer band ids, got dtype {band.dtype}")
    if np.any((band < 0) | (band > 2)):
        raise ValueError(f"band: expected ids in {{0, 1, 2}}, got {np.unique(band).tolist()}")
    alpha = np_unit_interval(alpha, "alpha")
    if batch is None:
        batch = max(band.size if band.ndim else 1, alpha.size if alpha.ndim else 1)
    for name, a in (("band", band), ("alpha", alpha)):
        if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != batch):
            raise ValueError(f"{name}: expected a scalar or shape ({batch},), got {a.shape}")
    return np.broadcast_to(band, (batch,)).astype(np.int64), np.broadcast_to(alpha, (batch,))


def np_alpha_r(alpha_r, n: int, batch: int | None = None) -> np.ndarray:
    a = np_unit_interval(alpha_r, "alpha_r")
    if a.ndim != 2 or a.shape[1] != n or (batch is not None and a.shape[0] != batch):
        want = f"({batch if batch is not None else 'B'}, {n})"
        raise ValueError(f"alpha_r: expected shape {want}, got {a.shape}")
    return a


def np_noise(noise, shape) -> np.ndarray:
    g = np.asarray(noise, dtype=np.float64)
    if g.shape != tuple(shape):
        raise ValueError(f"noise: expected the half-spectrum shape {tuple(shape)}, got {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("noise: expected finite values, got NaN or Inf")
    return g
