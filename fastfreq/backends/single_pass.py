"""The ``single_pass`` backend: the compiled op ``fastfreq::spectral_augment_fused``
(csrc/fft/plane.h), which reads each plane once, runs its forward FFT, the
per-frequency augmentation and the inverse FFT in registers and shared memory
and writes it once. On CPU tensors the same code runs block by block on the
host. Sides up to ``SINGLE_PASS_MAX_SIDE``."""
from __future__ import annotations

from .ext import spectral_augment_single_pass as spectral_augment  # noqa: F401
