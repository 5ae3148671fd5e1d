"""fastfreq: frequency-domain augmentation and frequency analysis of CNNs.

Implements Power Suppression, Attended Power Suppression, Noise in Frequency
Domain and Point Detection Maps from "Exploring Frequency Domain
Interpretation of Convolutional Neural Networks" as batched PyTorch ops, with
a NumPy reference (``fastfreq.reference``) that every backend is tested
against.
"""
from . import masks, reference
from .functional import BACKENDS, SizeWarning, nfd, power_suppress, resolve_backend, spectral_augment
from .constants import PAPER_BANDS
from .transforms import NFD, PowerSuppression, SpectralAugment, batch_params

__version__ = "0.1.0"

__all__ = ["BACKENDS", "NFD", "PAPER_BANDS", "PowerSuppression", "SizeWarning", "SpectralAugment",
           "batch_params", "masks", "nfd", "power_suppress", "reference", "resolve_backend",
           "spectral_augment"]
