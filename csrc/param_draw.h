// Per-image augmentation parameters drawn from a Philox key, without the host.
//
// The modules' sampling rules (fastfreq/transforms.py) as counter-based draws:
// image i (image 0 for every image under same_on_batch) takes the Philox4x32-10
// words of counter (i, 0, stream) with the 64-bit key `seed`, stream 1 for
// power suppression and stream 2 for NFD (the noise uses stream 0, so a
// parameter draw never meets a noise counter). From a word w the draws use
// its top 24 bits, u24 = w >> 8, so every integer decision is exact and the
// uniform u24 * 2^-24 is exact in float32:
//   stream 1: x: applied  = u24 < ps_thr          (ps_thr = round(p * 2^24))
//             y: band     = ps_band_ids[(u24 * n_ps_bands) >> 24]
//             z: alpha    = alpha_lo + alpha_span * u  (0 where not applied)
//   stream 2: x: applied  = u24 < nfd_thr
//             y: j        = (u24 * n_bands) >> 24      (the U(0, 1) band)
//             z: alpha_r[j] = u
//             w: alpha_r[k] = bit k of w, k != j       (0 or 1, probability 1/2)
// which is Section 3.3's rule for alpha_r. One row of the output holds
//   [ps_applied, band, alpha, nfd_applied, alpha_r[0 .. n_bands-1]] (float32).
// fastfreq/philox.py (torch ops) and fastfreq/reference.py (NumPy, written
// separately) compute the same rows; tests compare all of them bit for bit.
#pragma once

#include <cstdint>

#include "spectral_common.h"

namespace fastfreq {

constexpr int kParamHead = 4;  // ps_applied, band, alpha, nfd_applied
constexpr uint32_t kParamStreamPs = 1, kParamStreamNfd = 2;
constexpr int kMaxPsBands = 8;  // band ids a suppression draw picks among (repeats weight a band)

struct DrawSettings {
  uint32_t ps_thr = 0;    // round(ps_p * 2^24): applied when u24 < ps_thr
  int n_ps_bands = 1;     // 1..kMaxPsBands band ids to choose from
  int ps_band_ids[kMaxPsBands] = {};
  float alpha_lo = 0.0f, alpha_span = 1.0f;
  uint32_t nfd_thr = 0;   // round(nfd_p * 2^24)
  int n_bands = 0;        // NFD bands (0: no NFD columns)
  bool same_on_batch = false;
};

FF_HD uint32_t top24(uint32_t w) { return w >> 8; }

// (u24 * n) >> 24 in [0, n): a uniform pick among n (exact integer arithmetic)
FF_HD int pick_of(uint32_t w, int n) {
  return static_cast<int>((static_cast<uint64_t>(top24(w)) * static_cast<uint64_t>(n)) >> 24);
}

FF_HD float unit24(uint32_t w) { return static_cast<float>(top24(w)) * 5.9604644775390625e-08f; }

// lo + span * u, rounded after the product and after the sum (no fused
// multiply-add), as the torch and NumPy versions compute it
FF_HD float lo_plus_span(float lo, float span, float u) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(lo, __fmul_rn(span, u));
#else
  const volatile float prod = span * u;  // keeps a contracting compiler honest
  return lo + prod;
#endif
}

// The row of image `image` (out has kParamHead + s.n_bands floats).
FF_HD void draw_image_params(int64_t image, uint64_t seed, const DrawSettings& s, float* out) {
  const uint64_t i = s.same_on_batch ? 0 : static_cast<uint64_t>(image);
  const uint32_t c0 = static_cast<uint32_t>(i), c1 = static_cast<uint32_t>(i >> 32);
  const U32x4 a = philox4x32_10(c0, c1, seed, kParamStreamPs);
  const bool ps_on = top24(a.x) < s.ps_thr;
  int pick = pick_of(a.y, s.n_ps_bands);
  pick = pick < 0 ? 0 : (pick >= s.n_ps_bands ? s.n_ps_bands - 1 : pick);  // (never: pick < n)
  out[0] = ps_on ? 1.0f : 0.0f;
  // the id by comparison in an unrolled loop, not s.ps_band_ids[pick]: any
  // run-time index into the kernel-parameter struct (the plain index, or this
  // loop left rolled) copies it to the stack (64 B frame in draw_params_kernel)
  int band = s.ps_band_ids[0];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 1; k < kMaxPsBands; ++k) band = k == pick ? s.ps_band_ids[k] : band;
  out[1] = static_cast<float>(band);
  out[2] = ps_on ? lo_plus_span(s.alpha_lo, s.alpha_span, unit24(a.z)) : 0.0f;
  const U32x4 b = philox4x32_10(c0, c1, seed, kParamStreamNfd);
  out[3] = top24(b.x) < s.nfd_thr ? 1.0f : 0.0f;
  const int j = s.n_bands > 0 ? pick_of(b.y, s.n_bands) : 0;
  const float u = unit24(b.z);
  for (int k = 0; k < s.n_bands; ++k)
    out[kParamHead + k] = k == j ? u : static_cast<float>((b.w >> k) & 1u);
}

// ---------------------------------------------------------------- reading a row
// How every op that takes the rows instead of band/alpha/alpha_r reads one
// (the cpp pass, the cuFFT path's bin kernel, the single-pass kernel; in T,
// the op's compute type). A band is a float: one outside [0, 2], NaN
// included, reads as -1 (which the range checks then call bad).
template <typename T>
FF_HD int64_t row_band(const T* row) {
  return (row[1] >= T(0) && row[1] <= T(2)) ? static_cast<int64_t>(row[1]) : int64_t(-1);
}
template <typename T>
FF_HD T row_alpha(const T* row) { return row[2]; }
template <typename T>
FF_HD bool row_nfd(const T* row) { return row[3] != T(0); }
// the control weights alpha_r (n_bands of them)
template <typename T>
FF_HD const T* row_weights(const T* row) { return row + kParamHead; }

// An image whose row leaves it unchanged: no noise drawn (or no NFD in the
// call) and gain 1 (suppression not drawn, or alpha 0, with a valid band).
// Its output is its input, bit for bit. An image with bad values is never one
// (it becomes NaN).
template <typename T>
FF_HD bool row_is_identity(const T* row, bool has_ps, bool has_nfd) {
  if (has_nfd && row_nfd(row)) return false;
  return !has_ps || (row_band(row) >= 0 && row_alpha(row) == T(0));
}

}  // namespace fastfreq
