// Per-frequency math of the fused spectral augmentation: the one C++ copy of
// each equation (Python's is fastfreq/equations.py). Everything here is a
// HOST_DEVICE inline function. The CPU kernel calls every function the CUDA
// kernel calls (canonical_row, band_curve, gain_from_mask, nfd_hill,
// control_step, std_from_control, augment_bin, philox4x32_10, box_muller),
// and normal_at, which only the GPU uses per bin, is exposed to the CPU tests
// (fastfreq._C.normal_at), so the CPU tests exercise the code the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FF_HD __host__ __device__ __forceinline__
#else
#define FF_HD inline
#endif

namespace fastfreq {

constexpr int kMaxNfdBands = 16;
// Dir threshold relative to the plane's L1 norm: eps = 1e-6 * sum |x|.
constexpr double kDirEpsRel = 1e-6;

// Everything about the frequency grid and the parameters that is the same for
// every plane; passed by value to the CUDA kernel.
struct SpectralParams {
  int H = 0, W = 0, Wh = 0;   // image size, half-spectrum width W/2+1
  int C = 0;                  // channels per image
  int n_bands = 0;            // NFD bands
  // in double: a float64 image's non-integer edges (equal-coverage bands) at
  // float64 accuracy; each kernel casts them to its compute type
  double band_a[kMaxNfdBands] = {};
  double band_b[kMaxNfdBands] = {};
  double sigma = 1.0;         // NFD maximum variance
  double inv_radius_scale = 1.0;
  bool has_ps = false, has_nfd = false;
};

// ---------------------------------------------------------------- grid
// Signed frequency index of row/column r in a length-n DFT (numpy fftfreq*n).
FF_HD int freq_index(int r, int n) { return 2 * r < n ? r : r - n; }

template <typename T>
FF_HD T bin_radius(int r, int k, int H) {
  const T ky = static_cast<T>(freq_index(r, H));
  const T kx = static_cast<T>(k);
  return std::sqrt(ky * ky + kx * kx);
}

// Hermitian rule: in the self-conjugate columns (k = 0, and k = W/2 for even
// W) a row r > H/2 uses the draw of row H - r.
FF_HD int canonical_row(int r, int k, int H, int W) {
  const bool self_conj = (k == 0) || (2 * k == W);
  return (self_conj && 2 * r > H) ? H - r : r;
}

// ---------------------------------------------------------------- curves
template <typename T>
FF_HD T m_step(T s) {  // eq. 2
  return s <= T(0) ? T(1) : (s <= T(3) ? T(1) - s / T(3) : T(0));
}

template <typename T>
FF_HD T m_hill(T s) {  // eq. 3
  return s <= T(0) ? T(0)
         : s <= T(3) ? s / T(3)
         : s <= T(8) ? T(1)
         : s <= T(11) ? T(1) - (s - T(8)) / T(3)
                      : T(0);
}

// Eq. 4; band 2 is read as m_step(s-1) + 1 - m_step(s-13) (high-pass).
template <typename T>
FF_HD T band_curve(int band, T s) {
  const T keep_dc = m_step(s - T(1));
  if (band == 0) return keep_dc + m_hill(s - T(1));
  if (band == 1) return keep_dc + m_hill(s - T(7));
  return keep_dc + T(1) - m_step(s - T(13));
}

// Eq. 5 gain from the mask value: 1 - alpha (1 - M).
template <typename T>
FF_HD T gain_from_mask(T alpha, T mask) {
  return T(1) - alpha * (T(1) - mask);
}

template <typename T>
FF_HD T nfd_hill(T s, T a, T b) {  // eq. 13
  if (s >= a - T(1) && s < a) return s - a + T(1);
  if (s >= a && s < b) return T(1);
  if (s >= b && s < b + T(1)) return b - s + T(1);
  return T(0);
}

// Eq. 11 standard deviation sqrt(sigma (1 - M)) from the control value M
// (1 - M clipped at 0).
template <typename T>
FF_HD T std_from_control(double sigma, T M) {
  const T v = static_cast<T>(sigma) * (T(1) - M);
  return std::sqrt(v > T(0) ? v : T(0));
}

// Eq. 14, M = sum_i alpha_r[i] M_i, accumulated one band at a time from 0
// (the same order on CPU and GPU): M <- control_step(M, alpha_r[i], M_i). The
// GPU evaluates M_i = nfd_hill(...) per bin; the CPU reads it from a
// per-thread table and runs the step over a whole row (vectorised).
template <typename T>
FF_HD T control_step(T M, T weight, T hill) {
  return M + weight * hill;
}

// Y = g X; Z = Y + n Dir(Y), with Dir(c) = c/|c| if |c| > eps else 1.
// n is the already scaled real noise R = sqrt(sigma (1-M)) G. Branch-free.
template <typename T>
FF_HD void augment_bin(T& re, T& im, T gain, T n, T eps) {
  const T yr = re * gain, yi = im * gain;
  const T mag = std::sqrt(yr * yr + yi * yi);
  const bool dir_defined = mag > eps;
  const T inv = T(1) / (dir_defined ? mag : T(1));
  re = yr + n * (dir_defined ? yr * inv : T(1));
  im = yi + n * (dir_defined ? yi * inv : T(0));
}

// ---------------------------------------------------------------- noise
// Counter-based Philox4x32-10 (Salmon et al., 2011) with the conventions of
// Triton's tl.randint4x / tl.randn4x: key = 64-bit seed, counter = (c, 0, 0, 0)
// for the noise.
struct U32x4 {
  uint32_t x, y, z, w;
};

// c2 (0 for the noise) is the third counter word: the per-image parameter
// draws (csrc/param_draw.h) use c2 = 1, 2 so they never meet a noise counter.
FF_HD U32x4 philox4x32_10(uint32_t c0, uint32_t c1, uint64_t seed, uint32_t c2 = 0) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  uint32_t x = c0, y = c1, z = c2, w = 0;
#pragma unroll
  for (int i = 0; i < 10; ++i) {
    const uint64_t pa = static_cast<uint64_t>(0xD2511F53u) * x;
    const uint64_t pb = static_cast<uint64_t>(0xCD9E8D57u) * z;
    const uint32_t nx = static_cast<uint32_t>(pb >> 32) ^ y ^ k0;
    const uint32_t nz = static_cast<uint32_t>(pa >> 32) ^ w ^ k1;
    y = static_cast<uint32_t>(pb);
    w = static_cast<uint32_t>(pa);
    x = nx;
    z = nz;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {x, y, z, w};
}

// uint32 -> [0, 1) as Triton's uint_to_uniform_float does.
FF_HD float uint_to_unit(uint32_t u) {
  int32_t v = static_cast<int32_t>(u);
  v = v < 0 ? -v - 1 : v;
  return static_cast<float>(v) * 4.6566127342e-10f;
}

FF_HD int32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(f);
#else
  int32_t i;
  std::memcpy(&i, &f, sizeof(i));
  return i;
#endif
}

FF_HD float bits_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof(f));
  return f;
#endif
}

// Natural log for normal positive floats (Cephes logf polynomial, about 1 ulp
// on [1e-7, 1]). Branch-free so that CPU loops vectorise; the CUDA kernel runs
// the same code, so CPU and GPU draws agree to rounding.
FF_HD float fast_log(float x) {
  const int32_t bits = float_bits(x);
  float e = static_cast<float>(((bits >> 23) & 0xff) - 126);
  float m = bits_float((bits & 0x807fffff) | 0x3f000000);  // [0.5, 1)
  // m < sqrt(1/2): use 2m - 1 and e - 1 (arithmetic select, no branch)
  const float small = static_cast<float>(m < 0.707106781186547524f);
  e -= small;
  m = m * (1.0f + small) - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y += -2.12194440e-4f * e;
  y += -0.5f * z;
  return m + y + 0.693359375f * e;
}

// cos(2 pi t) and sin(2 pi t) for t in [0, 1): quadrant reduction, then the
// Cephes minimax polynomials on [-pi/4, pi/4]. Branch-free.
FF_HD void fast_sincos_2pi(float t, float& c, float& s) {
  const int qi = static_cast<int>(4.0f * t + 0.5f);  // nearest quarter turn, 0..4 (t >= 0)
  const float x = 6.283185307179586f * (t - 0.25f * static_cast<float>(qi));
  const float z = x * x;
  const float sn = x + x * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
  const float cs = 1.0f - 0.5f * z +
                   z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                            4.166664568298827e-2f);
  // rotate (cos x, sin x) by qi quarter turns, written arithmetically (no
  // branches): odd turns swap the pair, the signs follow the quadrant
  const float swap = static_cast<float>(qi & 1);
  const float sign_c = 1.0f - 2.0f * static_cast<float>(((qi + 1) >> 1) & 1);
  const float sign_s = 1.0f - 2.0f * static_cast<float>((qi >> 1) & 1);
  c = sign_c * (swap * sn + (1.0f - swap) * cs);
  s = sign_s * (swap * cs + (1.0f - swap) * sn);
}

// Box-Muller on a pair of uniforms, with the mapping of tl.randn4x.
FF_HD void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  float u1 = uint_to_unit(a);
  u1 = u1 < 1e-7f ? 1e-7f : u1;
  const float r = std::sqrt(-2.0f * fast_log(u1));
  float c, s;
  fast_sincos_2pi(uint_to_unit(b), c, s);
  z0 = r * c;
  z1 = r * s;
}

// Noise streams are row-aligned: a row of n half-spectrum bins occupies
// philox_row_len(n) = 4 * ceil(n / 4) stream positions, so each row starts a
// Philox group (fastfreq/philox.py says the same in Python).
FF_HD int64_t philox_row_len(int64_t n) { return 4 * ((n + 3) / 4); }

// Stream position of bin k of row `row` (rows counted over (B, C, H) of the
// half spectrum, after the Hermitian rule).
FF_HD int64_t noise_index(int64_t row, int64_t k, int64_t n) { return row * philox_row_len(n) + k; }

// The four standard normal draws of Philox group g (stream positions 4g ..
// 4g + 3), with the lane order of tl.randn4x.
FF_HD void philox_normals4(uint64_t g, uint64_t seed, float z[4]) {
  const U32x4 u = philox4x32_10(static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32), seed);
  box_muller(u.x, u.y, z[0], z[1]);
  box_muller(u.z, u.w, z[2], z[3]);
}

// The standard normal draw at stream position `index`: lane index % 4 of
// Philox group index / 4. The CUDA kernel draws bin by bin, so only the
// Box-Muller pair that holds the lane is computed, and no array is indexed
// at run time (that put `z` on the stack: 16 B of local memory per thread);
// the CPU kernel fills whole rows with philox_normals4.
FF_HD float normal_at(int64_t index, uint64_t seed) {
  const uint64_t g = static_cast<uint64_t>(index) >> 2;
  const U32x4 u = philox4x32_10(static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32), seed);
  const int lane = static_cast<int>(index & 3);
  float z0, z1;
  if (lane < 2) {
    box_muller(u.x, u.y, z0, z1);
  } else {
    box_muller(u.z, u.w, z0, z1);
  }
  return (lane & 1) ? z1 : z0;
}

}  // namespace fastfreq
