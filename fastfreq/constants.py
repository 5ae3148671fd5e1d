"""The numbers every implementation shares, in one place.

Python (the reference, the torch code, the Triton kernel) imports them from
here; the C++/CUDA header ``csrc/spectral_common.h`` holds the same values,
and ``tests/test_constants.py`` checks that the two agree.
"""
from __future__ import annotations

#: The paper's five NFD bands for 40x40 images, as ``(a, b)`` edges of eq. 13.
PAPER_BANDS: tuple[tuple[float, float], ...] = ((0, 9), (10, 13), (14, 17), (18, 20), (21, 29))
#: The backend names the functional API and the modules take ("auto" first).
#: "single_pass" is the opt-in single-pass kernel (CPU and CUDA tensors):
#: ``auto`` does not pick it until it has passed the test matrix on a GPU.
BACKENDS = ("auto", "numpy", "torch", "cpp", "cuda", "triton", "single_pass")
#: Largest H and W the single-pass op takes (``kMaxLine`` in csrc/fft/plane.h).
SINGLE_PASS_MAX_SIDE = 64
#: Band ids of the power-suppression masks.
BAND_IDS = {"L": 0, "M": 1, "H": 2}
#: Dir threshold relative to the plane's L1 norm: eps = DIR_EPS_REL * sum |x|
#: (see docs/paper-notes.md).
DIR_EPS_REL = 1e-6
#: Most NFD bands the compiled kernels take.
MAX_NFD_BANDS = 16
#: Normals per Philox4x32-10 call: the noise of a half-spectrum row is drawn in
#: row-aligned groups of this many bins (see fastfreq.philox).
PHILOX_LANES = 4
#: Largest NFD sigma accepted: the noise variance ``sigma (1 - M)`` and the
#: noise itself stay far inside float32 (larger values overflowed to inf/NaN).
SIGMA_MAX = 1e30
#: Accepted ``radius_scale`` range: beyond it every mask is flat on any image
#: up to 64x64 anyway, and ``r / radius_scale`` would leave float32's range.
RADIUS_SCALE_RANGE = (1e-3, 1e3)
#: Images are computed in float32 (float64 for float64 images), and ``max |x|``
#: must stay below ``FLOAT32_SUM_LIMIT / (H * W)`` (``FLOAT64_SUM_LIMIT`` for
#: float64; checked with ``check_values``, the default). The bound is not the
#: FFT's sum ``|Y| <= sum |x|`` (that would allow 3e38) but the NFD direction:
#: the compiled kernels form ``|Y|^2`` (csrc/spectral_common.h ``augment_bin``,
#: Triton's ``_add_along_dir``), which overflowed above ``|Y|`` of 1.8e19 and
#: dropped the noise without an error while the old limit, 1e38, accepted the
#: image. ``|Y| <= sum |x| <= 5e18`` keeps ``|Y|^2 <= 2.5e37``, 14x inside
#: float32's 3.4e38 (the gain is at most 1, and the noise is added after the
#: square); float64 alike (``|Y|^2 <= 1e300``).
FLOAT32_SUM_LIMIT = 5e18
FLOAT64_SUM_LIMIT = 1e150
#: The Philox noise of a ``seed`` is drawn in float32 for every image dtype
#: (float64 included). The kernels' normals (polynomial log/sin/cos) and
#: ``fastfreq.philox``'s (libm, what the numpy and torch backends replay) differ
#: by at most this much (measured: 1.6e-6 over 5 M draws); a float64 output
#: therefore differs between backends by at most ``sqrt(sigma)`` times it.
NOISE_DRAW_BOUND = 4e-6
