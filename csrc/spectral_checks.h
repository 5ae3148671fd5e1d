// Host-side argument checks shared by the CPU and CUDA implementations of
// fastfreq::spectral_augment. The Python wrappers check first with friendlier
// messages; these TORCH_CHECKs make sure no bad input reaches a kernel.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "param_draw.h"
#include "spectral_common.h"

namespace fastfreq {

// Error messages are built with std::to_string / snprintf and string
// concatenation, never with c10::str's std::ostream: on the GPU machine
// (PyTorch 2.11 wheel, extension built by the system g++ 13) inserting a
// number into an ostream from this library segfaulted inside libstdc++'s
// locale facets, so every failing check with a number in its message crashed
// the process instead of raising.
namespace msg {
inline std::string piece(const char* s) { return s; }
inline std::string piece(const std::string& s) { return s; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
std::string piece(T v) {
  return std::to_string(v);
}
template <typename T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
std::string piece(T v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}
inline std::string piece(at::ScalarType t) { return c10::toString(t); }
inline std::string piece(at::IntArrayRef a) {
  std::string s = "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  return s + "]";
}
inline std::string piece(const at::Device& d) { return d.str(); }
template <typename... A>
std::string cat(const A&... a) {
  return (std::string() + ... + piece(a));
}
}  // namespace msg

// TORCH_CHECK with an ostream-free message (see msg above).
#define FF_CHECK(cond, ...) TORCH_CHECK(cond, ::fastfreq::msg::cat(__VA_ARGS__))

inline SpectralParams check_and_pack(const at::Tensor& x, const c10::optional<at::Tensor>& band,
                                     const c10::optional<at::Tensor>& alpha,
                                     const c10::optional<at::Tensor>& alpha_r,
                                     const c10::optional<at::Tensor>& noise,
                                     const c10::optional<at::Tensor>& seed,
                                     const std::vector<double>& nfd_edges, double sigma,
                                     double radius_scale) {
  FF_CHECK(x.dim() == 4, "fastfreq: x must have shape (B, C, H, W), got ", x.sizes());
  FF_CHECK(at::isFloatingType(x.scalar_type()),
           "fastfreq: x must be a floating-point tensor, got ", x.scalar_type());
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  FF_CHECK(H >= 2 && W >= 2, "fastfreq: H and W must be >= 2, got ", H, "x", W);
  FF_CHECK(H < (1 << 20) && W < (1 << 20), "fastfreq: image size too large: ", H, "x", W);
  FF_CHECK(band.has_value() == alpha.has_value(),
           "fastfreq: band and alpha must be given together");
  auto same_device = [&](const at::Tensor& t, const char* name) {
    FF_CHECK(t.device() == x.device(), "fastfreq: ", name, " is on ", t.device(),
             " but x is on ", x.device());
  };
  SpectralParams p;
  p.H = static_cast<int>(H);
  p.W = static_cast<int>(W);
  p.Wh = static_cast<int>(W / 2 + 1);
  p.C = static_cast<int>(C);
  if (band.has_value()) {
    same_device(*band, "band");
    same_device(*alpha, "alpha");
    FF_CHECK(band->scalar_type() == at::kLong && band->dim() == 1 && band->size(0) == B,
             "fastfreq: band must be int64 of shape (", B, "), got ", band->scalar_type(), " ",
             band->sizes());
    FF_CHECK(at::isFloatingType(alpha->scalar_type()) && alpha->dim() == 1 &&
                 alpha->size(0) == B,
             "fastfreq: alpha must be floating of shape (", B, "), got ", alpha->scalar_type(),
             " ", alpha->sizes());
    p.has_ps = true;
  }
  FF_CHECK(std::isfinite(radius_scale) && radius_scale > 0,
           "fastfreq: radius_scale must be finite and > 0, got ", radius_scale);
  p.inv_radius_scale = 1.0 / radius_scale;
  if (alpha_r.has_value()) {
    same_device(*alpha_r, "alpha_r");
    FF_CHECK(nfd_edges.size() % 2 == 0 && !nfd_edges.empty(),
             "fastfreq: nfd_edges must hold (a, b) pairs, got ", nfd_edges.size(), " values");
    const int64_t n = static_cast<int64_t>(nfd_edges.size() / 2);
    FF_CHECK(n <= kMaxNfdBands, "fastfreq: at most ", kMaxNfdBands, " NFD bands, got ", n);
    FF_CHECK(at::isFloatingType(alpha_r->scalar_type()) && alpha_r->dim() == 2 &&
                 alpha_r->size(0) == B && alpha_r->size(1) == n,
             "fastfreq: alpha_r must be floating of shape (", B, ", ", n, "), got ",
             alpha_r->scalar_type(), " ", alpha_r->sizes());
    FF_CHECK(std::isfinite(sigma) && sigma >= 0, "fastfreq: sigma must be finite and >= 0, got ",
             sigma);
    FF_CHECK(noise.has_value() != seed.has_value(),
             "fastfreq: NFD needs exactly one of noise and seed");
    if (noise.has_value()) {
      same_device(*noise, "noise");
      FF_CHECK(at::isFloatingType(noise->scalar_type()) &&
                   noise->sizes() == at::IntArrayRef({B, C, H, W / 2 + 1}),
               "fastfreq: noise must be floating of shape (", B, ", ", C, ", ", H, ", ",
               W / 2 + 1, "), got ", noise->scalar_type(), " ", noise->sizes());
    } else {
      same_device(*seed, "seed");
      FF_CHECK(seed->scalar_type() == at::kLong && seed->numel() == 1,
               "fastfreq: seed must be an int64 tensor with one element, got ",
               seed->scalar_type(), " ", seed->sizes());
    }
    p.n_bands = static_cast<int>(n);
    for (int64_t i = 0; i < n; ++i) {
      const double a = nfd_edges[2 * i], b = nfd_edges[2 * i + 1];
      FF_CHECK(std::isfinite(a) && std::isfinite(b) && a < b,
               "fastfreq: NFD band ", i, " needs finite edges a < b, got (", a, ", ", b, ")");
      p.band_a[i] = a;
      p.band_b[i] = b;
    }
    p.sigma = sigma;
    p.has_nfd = true;
  }
  return p;
}

inline void check_philox_args(const at::Tensor& seed, at::IntArrayRef shape) {
  FF_CHECK(seed.scalar_type() == at::kLong && seed.numel() == 1,
           "fastfreq: seed must be an int64 tensor with one element, got ", seed.scalar_type(),
           " ", seed.sizes());
  for (auto d : shape) FF_CHECK(d >= 0, "fastfreq: shape must be non-negative, got ", shape);
}

// fastfreq::draw_params arguments -> DrawSettings (every value checked: the
// Python modules validate first, with their own messages).
inline DrawSettings pack_draw_settings(const at::Tensor& seed, int64_t batch, double ps_p,
                                       at::IntArrayRef ps_bands, double alpha_lo, double alpha_hi,
                                       double nfd_p, int64_t n_bands, bool same_on_batch) {
  FF_CHECK(seed.scalar_type() == at::kLong && seed.numel() == 1,
           "fastfreq: seed must be an int64 tensor with one element, got ", seed.scalar_type(),
           " ", seed.sizes());
  FF_CHECK(batch >= 0, "fastfreq: batch must be non-negative, got ", batch);
  FF_CHECK(ps_p >= 0.0 && ps_p <= 1.0, "fastfreq: ps_p must be in [0, 1], got ", ps_p);
  FF_CHECK(nfd_p >= 0.0 && nfd_p <= 1.0, "fastfreq: nfd_p must be in [0, 1], got ", nfd_p);
  FF_CHECK(!ps_bands.empty() && ps_bands.size() <= static_cast<size_t>(kMaxPsBands),
           "fastfreq: ps_bands must hold 1 to ", kMaxPsBands, " band ids, got ", ps_bands);
  FF_CHECK(alpha_lo >= 0.0 && alpha_lo <= alpha_hi && alpha_hi <= 1.0,
           "fastfreq: alpha range must satisfy 0 <= lo <= hi <= 1, got ", alpha_lo, ", ", alpha_hi);
  FF_CHECK(n_bands >= 0 && n_bands <= kMaxNfdBands, "fastfreq: n_bands must be in [0, ",
           kMaxNfdBands, "], got ", n_bands);
  DrawSettings s;
  s.ps_thr = static_cast<uint32_t>(ps_p * 16777216.0 + 0.5);
  s.nfd_thr = static_cast<uint32_t>(nfd_p * 16777216.0 + 0.5);
  s.n_ps_bands = static_cast<int>(ps_bands.size());
  for (size_t k = 0; k < ps_bands.size(); ++k) {
    FF_CHECK(ps_bands[k] >= 0 && ps_bands[k] <= 2, "fastfreq: ps_bands must be ids in {0, 1, 2}, got ",
             ps_bands);
    s.ps_band_ids[k] = static_cast<int>(ps_bands[k]);
  }
  s.alpha_lo = static_cast<float>(alpha_lo);
  s.alpha_span = static_cast<float>(alpha_hi) - static_cast<float>(alpha_lo);
  s.n_bands = static_cast<int>(n_bands);
  s.same_on_batch = same_on_batch;
  return s;
}

// Float32 compute for reduced and single precision, float64 for double.
inline at::ScalarType compute_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// The ops that take their per-image parameters as the rows of
// fastfreq::draw_params, (B, kParamHead + n_bands) float32, instead of
// band/alpha/alpha_r tensors (spectral_augment_rows on CPU,
// spectral_augment_fused_rows): the rows' own checks, then the explicit op's
// (alpha_r is a view of the rows). has_ps and has_nfd say which transforms the
// call may apply; each image's row says which it does.
inline SpectralParams check_rows_and_pack(const at::Tensor& x, const at::Tensor& rows,
                                          const at::Tensor& seed, bool has_ps, bool has_nfd,
                                          at::ArrayRef<double> nfd_edges, double sigma,
                                          double radius_scale) {
  FF_CHECK(x.dim() == 4, "fastfreq: x must have shape (B, C, H, W), got ", x.sizes());
  FF_CHECK(nfd_edges.size() % 2 == 0, "fastfreq: nfd_edges must hold (a, b) pairs, got ",
           static_cast<int64_t>(nfd_edges.size()), " values");
  const int64_t n = static_cast<int64_t>(nfd_edges.size() / 2);
  FF_CHECK(rows.device() == x.device(), "fastfreq: rows is on ", rows.device(), " but x is on ",
           x.device());
  FF_CHECK(rows.scalar_type() == at::kFloat && rows.dim() == 2 && rows.size(0) == x.size(0) &&
               rows.size(1) == kParamHead + n,
           "fastfreq: rows must be float32 of shape (", x.size(0), ", ", kParamHead + n,
           ") (fastfreq::draw_params), got ", rows.scalar_type(), " ", rows.sizes());
  const c10::optional<at::Tensor> none;
  SpectralParams p = check_and_pack(
      x, none, none, has_nfd ? c10::optional<at::Tensor>(rows.narrow(1, kParamHead, n)) : none,
      none, has_nfd ? c10::optional<at::Tensor>(seed) : none, nfd_edges.vec(), sigma,
      radius_scale);
  p.has_ps = has_ps;
  return p;
}

}  // namespace fastfreq
