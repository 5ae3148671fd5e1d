// CPU implementation: ATen rfft2 -> one fused pass over the half spectrum
// (gain, control mask, Philox noise, Dir) -> ATen irfft2, chunk by chunk of
// images per thread so that the spectrum stays in cache.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <type_traits>
#include <vector>

#include "../spectral_checks.h"

namespace fastfreq {
namespace {

// The hot loops are compiled for AVX-512, AVX2 and the baseline, and the
// loader picks the best the CPU has (GCC/Clang function multi-versioning).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FF_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FF_CPU_CLONES
#endif

// Standard normal draws for the half-spectrum elements [first, first + count)
// of the whole batch. `scratch` holds count + 8 floats. The loop over Philox
// groups is kept free of branches so that the compiler can vectorise it.
FF_CPU_CLONES void fill_normals(int64_t first, int64_t count, uint64_t seed, float* out,
                                float* scratch) {
  const int64_t g0 = first >> 2, groups = ((first + count + 3) >> 2) - g0;
  for (int64_t j = 0; j < groups; ++j)
    philox_normals4(static_cast<uint64_t>(g0 + j), seed, scratch + 4 * j);
  std::copy_n(scratch + (first - 4 * g0), count, out);
}

// sum |x| with independent partial sums (vectorises without -ffast-math).
template <typename T>
inline T l1_norm_impl(const T* x, int64_t n) {
  constexpr int kLanes = 8;
  T part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) part[l] += std::abs(x[i + l]);
  T total = T(0);
  for (; i < n; ++i) total += std::abs(x[i]);
  for (int l = 0; l < kLanes; ++l) total += part[l];
  return total;
}
FF_CPU_CLONES float l1_norm(const float* x, int64_t n) { return l1_norm_impl(x, n); }
FF_CPU_CLONES double l1_norm(const double* x, int64_t n) { return l1_norm_impl(x, n); }

// One plane's bins: Y = gain X + scale g Dir(gain X) (interleaved complex).
template <typename T>
inline void apply_bins_impl(T* Y, const T* gain, const T* scale, const T* g, T eps, int64_t n) {
  for (int64_t i = 0; i < n; ++i) augment_bin(Y[2 * i], Y[2 * i + 1], gain[i], scale[i] * g[i], eps);
}
FF_CPU_CLONES void apply_bins(float* Y, const float* gain, const float* scale, const float* g,
                              float eps, int64_t n) {
  apply_bins_impl(Y, gain, scale, g, eps, n);
}
FF_CPU_CLONES void apply_bins(double* Y, const double* gain, const double* scale, const double* g,
                              double eps, int64_t n) {
  apply_bins_impl(Y, gain, scale, g, eps, n);
}

// The Hermitian rule (canonical_row) on one plane's draws, in place: only the
// self-conjugate columns k = 0 and k = W/2 (even W) have rows that move.
template <typename T>
void apply_hermitian_rule(T* g, int H, int W, int Wh) {
  for (int k = 0; k < Wh; k += (W % 2 == 0 && W / 2 > 0) ? W / 2 : Wh) {
    for (int r = 0; r < H; ++r) {
      const int src = canonical_row(r, k, H, W);
      if (src != r) g[static_cast<int64_t>(r) * Wh + k] = g[static_cast<int64_t>(src) * Wh + k];
    }
  }
}

// Per-thread state of the fused pass. The curves depend only on the radius:
// the three suppression masks and the NFD hills are evaluated once per thread
// into cache-resident rows of H*(W/2+1) values, and each image mixes them with
// its own alpha / alpha_r in branch-free (vectorised) loops. No mask tensor is
// materialised.
template <typename T>
class Augmenter {
 public:
  // rows (or null): the draw_params rows in T, row_len each, read instead of
  // band/alpha/alpha_r
  Augmenter(const SpectralParams& p, const int64_t* band, const T* alpha, const T* alpha_r,
            const T* noise, const int64_t* seed, const T* rows = nullptr, int64_t row_len = 0)
      : p_(p), band_(band), alpha_(alpha), alpha_r_(alpha_r), noise_(noise), seed_(seed),
        rows_(rows), row_len_(row_len),
        bins_(static_cast<int64_t>(p.H) * p.Wh), pixels_(static_cast<int64_t>(p.H) * p.W),
        curves_(p.has_ps ? 3 * bins_ : 0), hills_(p.has_nfd ? p.n_bands * bins_ : 0),
        gain_(bins_, T(1)), scale_(bins_, T(0)), g_(bins_, T(0)),
        draws_(seed && !std::is_same_v<T, float> ? bins_ : 0), scratch_(seed ? bins_ + 8 : 0) {
    for (int r = 0; r < p.H; ++r) {
      for (int k = 0; k < p.Wh; ++k) {
        const T s = bin_radius<T>(r, k, p.H);
        const int64_t i = static_cast<int64_t>(r) * p.Wh + k;
        for (int j = 0; p.has_ps && j < 3; ++j)
          curves_[j * bins_ + i] = band_curve(j, s * static_cast<T>(p.inv_radius_scale));
        for (int j = 0; p.has_nfd && j < p.n_bands; ++j)
          hills_[j * bins_ + i] = nfd_hill(s, static_cast<T>(p.band_a[j]), static_cast<T>(p.band_b[j]));
      }
    }
  }

  // Image b: Y points at its C half-spectrum planes (interleaved complex), x
  // at its C input planes. Never called for an image that its row says no
  // transform drew (augment_chunks copies those instead).
  void image(int64_t b, T* Y, const T* x) {
    // Out-of-range parameters (possible when Python skipped its value checks)
    // make the whole image NaN, as on every backend; nothing is read with them.
    bool bad = false;
    const T* row = rows_ != nullptr ? rows_ + b * row_len_ : nullptr;
    T alpha_b = T(0);
    if (p_.has_ps) {
      const int64_t band_b = row == nullptr ? band_[b] : row_band(row);
      alpha_b = row == nullptr ? alpha_[b] : row_alpha(row);
      bad = !(band_b >= 0 && band_b <= 2 && alpha_b >= T(0) && alpha_b <= T(1));
      if (!bad) {
        const T* m = curves_.data() + band_b * bins_;
        for (int64_t i = 0; i < bins_; ++i) gain_[i] = gain_from_mask(alpha_b, m[i]);
      }
    }
    const bool nfd = p_.has_nfd && (row == nullptr || row_nfd(row));
    if (p_.has_nfd && !nfd) {
      // NFD not drawn for this image: noise std 0 (the bin is g X + 0)
      std::fill(scale_.begin(), scale_.end(), T(0));
      std::fill(g_.begin(), g_.end(), T(0));
    }
    if (nfd) {
      const T* ar = row == nullptr ? alpha_r_ + b * p_.n_bands : row_weights(row);
      for (int j = 0; j < p_.n_bands; ++j) bad |= !(ar[j] >= T(0) && ar[j] <= T(1));
      if (!bad) {
        std::fill(scale_.begin(), scale_.end(), T(0));
        for (int j = 0; j < p_.n_bands; ++j) {
          const T* h = hills_.data() + j * bins_;
          for (int64_t i = 0; i < bins_; ++i) scale_[i] = control_step(scale_[i], ar[j], h[i]);
        }
        for (int64_t i = 0; i < bins_; ++i) scale_[i] = std_from_control(p_.sigma, scale_[i]);
      }
    }
    if (bad) {
      std::fill(Y, Y + 2 * p_.C * bins_, std::numeric_limits<T>::quiet_NaN());
      return;
    }
    for (int c = 0; c < p_.C; ++c) {
      const int64_t plane = b * p_.C + c;
      const T eps = l1_norm(x + c * pixels_, pixels_) * static_cast<T>(kDirEpsRel);
      if (nfd) {
        if (noise_ != nullptr) {
          std::copy_n(noise_ + plane * bins_, bins_, g_.data());
        } else {
          // row by row: each row starts a Philox group (noise_index)
          float* dst = draws_.data();
          if constexpr (std::is_same_v<T, float>) dst = g_.data();  // the draws land in g
          for (int r = 0; r < p_.H; ++r)
            fill_normals(noise_index(plane * p_.H + r, 0, p_.Wh), p_.Wh,
                         static_cast<uint64_t>(*seed_), dst + static_cast<int64_t>(r) * p_.Wh,
                         scratch_.data());
          if constexpr (!std::is_same_v<T, float>) std::copy_n(draws_.data(), bins_, g_.data());
        }
        apply_hermitian_rule(g_.data(), p_.H, p_.W, p_.Wh);
      }
      apply_bins(Y + 2 * c * bins_, gain_.data(), scale_.data(), g_.data(), eps, bins_);
    }
  }

 private:
  const SpectralParams& p_;
  const int64_t* band_;
  const T* alpha_;
  const T* alpha_r_;
  const T* noise_;
  const int64_t* seed_;
  const T* rows_;
  int64_t row_len_;
  int64_t bins_, pixels_;
  std::vector<T> curves_, hills_, gain_, scale_, g_;
  std::vector<float> draws_, scratch_;
};

// The images `todo` (positions in the chunk xs, which starts at image b0) go
// through the FFTs as one sub-batch; every other image of the chunk is its
// input, bit for bit. (With torch 2.14's MKL FFTs a sub-batch gives each image
// the same bits as the whole chunk; tests/test_draws.py checks the rows op bit
// for bit against the autograd path, which transforms the whole batch.)
template <typename T>
void augment_subset(Augmenter<T>& aug, const at::Tensor& xs, at::Tensor dst,
                    const std::vector<int64_t>& todo, int64_t b0, const SpectralParams& p,
                    const std::vector<int64_t>& size2d) {
  const int64_t n = xs.size(0);
  const int64_t image_len = static_cast<int64_t>(p.C) * p.H * p.W;
  const int64_t plane_bins = static_cast<int64_t>(p.H) * p.Wh;
  const T* x = xs.data_ptr<T>();
  T* d = dst.data_ptr<T>();
  size_t j = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (j < todo.size() && todo[j] == i) {
      ++j;
    } else {
      std::copy_n(x + i * image_len, image_len, d + i * image_len);
    }
  }
  if (todo.empty()) return;
  const int64_t m = static_cast<int64_t>(todo.size());
  at::Tensor sub = at::empty({m, p.C, p.H, p.W}, xs.options());
  T* s = sub.data_ptr<T>();
  for (int64_t k = 0; k < m; ++k) std::copy_n(x + todo[k] * image_len, image_len, s + k * image_len);
  at::Tensor spec = at::fft_rfft2(sub).contiguous();
  auto* Y = reinterpret_cast<T*>(spec.data_ptr<c10::complex<T>>());
  for (int64_t k = 0; k < m; ++k)
    aug.image(b0 + todo[k], Y + 2 * k * p.C * plane_bins, s + k * image_len);
  at::fft_irfft2_out(sub, spec, size2d);  // sub's input is no longer read
  for (int64_t k = 0; k < m; ++k) std::copy_n(s + k * image_len, image_len, d + todo[k] * image_len);
}

// Images are processed in chunks small enough to stay in a core's cache:
// rfft2 of the chunk, the fused pass, irfft2 straight into the output. Each
// thread runs its own chunks (ATen runs the FFTs serially inside the parallel
// region), so the spectrum never makes a round trip through main memory.
constexpr int64_t kChunkBytes = 256 * 1024;

template <typename T>
void augment_chunks(const at::Tensor& xf, at::Tensor& out, const SpectralParams& p,
                    const int64_t* band, const T* alpha, const T* alpha_r, const T* noise,
                    const int64_t* seed, const T* rows = nullptr, int64_t row_len = 0) {
  const int64_t B = xf.size(0);
  const int64_t image_bytes = static_cast<int64_t>(p.C) * p.H * p.W * sizeof(T);
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / image_bytes);
  const int64_t n_chunks = (B + chunk - 1) / chunk;
  const std::vector<int64_t> size2d{p.H, p.W};
  // One worker per intra-op thread (ATen's OpenMP pool: the extension is
  // built with -fopenmp against torch's own libgomp); workers claim chunks
  // from a shared counter, so a thread whose core is busy with another
  // process simply takes fewer chunks. Inside the parallel region ATen runs
  // the FFTs and copies serially (no nested regions, no barrier spinning).
  std::atomic<int64_t> next_chunk{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n_chunks, at::get_num_threads()));
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    // the ATen FFTs below run on the pool's threads, which do not inherit the
    // calling thread's dispatch state: without this guard they would go
    // through autograd when x requires grad (and fft_irfft2_out refuses that)
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    Augmenter<T> aug(p, band, alpha, alpha_r, noise, seed, rows, row_len);
    const int64_t image_len = static_cast<int64_t>(p.C) * p.H * p.W;
    std::vector<int64_t> todo;
    todo.reserve(static_cast<size_t>(chunk));
    for (int64_t ci = next_chunk++; ci < n_chunks; ci = next_chunk++) {
      const int64_t b0 = ci * chunk, n = std::min(chunk, B - b0);
      const at::Tensor xs = xf.narrow(0, b0, n);
      if (rows != nullptr) {
        // rows given: the images that no transform drew skip the FFTs (copied
        // from the input); the others go through them as a sub-batch
        todo.clear();
        for (int64_t i = 0; i < n; ++i)
          if (!row_is_identity(rows + (b0 + i) * row_len, p.has_ps, p.has_nfd)) todo.push_back(i);
        if (static_cast<int64_t>(todo.size()) < n) {
          augment_subset(aug, xs, out.narrow(0, b0, n), todo, b0, p, size2d);
          continue;
        }
      }
      at::Tensor spec = at::fft_rfft2(xs).contiguous();
      auto* Y = reinterpret_cast<T*>(spec.data_ptr<c10::complex<T>>());
      const T* x = xs.data_ptr<T>();
      const int64_t plane_bins = static_cast<int64_t>(p.H) * p.Wh;
      for (int64_t i = 0; i < n; ++i)
        aug.image(b0 + i, Y + 2 * i * p.C * plane_bins, x + i * image_len);
      at::Tensor dst = out.narrow(0, b0, n);
      at::fft_irfft2_out(dst, spec, size2d);
    }
  });
}

at::Tensor spectral_augment_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& band,
                                const c10::optional<at::Tensor>& alpha,
                                const c10::optional<at::Tensor>& alpha_r,
                                const c10::optional<at::Tensor>& noise,
                                const c10::optional<at::Tensor>& seed,
                                at::ArrayRef<double> nfd_edges, double sigma,
                                double radius_scale) {
  const SpectralParams p = check_and_pack(x, band, alpha, alpha_r, noise, seed,
                                          nfd_edges.vec(), sigma, radius_scale);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options());
  const auto dt = compute_dtype(x);
  const at::Tensor xf = x.to(dt).contiguous();
  at::Tensor out = at::empty(xf.sizes(), xf.options());
  const at::Tensor band_c = p.has_ps ? band->contiguous() : at::Tensor();
  const at::Tensor alpha_c = p.has_ps ? alpha->to(dt).contiguous() : at::Tensor();
  const at::Tensor ar_c = p.has_nfd ? alpha_r->to(dt).contiguous() : at::Tensor();
  const at::Tensor noise_c = noise.has_value() ? noise->to(dt).contiguous() : at::Tensor();
  const int64_t seed_v = seed.has_value() ? seed->item<int64_t>() : 0;
  AT_DISPATCH_FLOATING_TYPES(dt, "fastfreq_spectral_augment_cpu", [&] {
    augment_chunks<scalar_t>(
        xf, out, p, p.has_ps ? band_c.data_ptr<int64_t>() : nullptr,
        p.has_ps ? alpha_c.data_ptr<scalar_t>() : nullptr,
        p.has_nfd ? ar_c.data_ptr<scalar_t>() : nullptr,
        noise.has_value() ? noise_c.data_ptr<scalar_t>() : nullptr,
        seed.has_value() ? &seed_v : nullptr);
  });
  return out.to(x.scalar_type());
}

// fastfreq::spectral_augment_rows on CPU: the cpp path with each image's
// parameters read from its draw_params row (an image without NFD drawn gets no
// noise; one that no transform drew is its input), so the sampled op is one
// call with no selection afterwards.
at::Tensor spectral_augment_rows_cpu(const at::Tensor& x, const at::Tensor& rows,
                                     const at::Tensor& seed, bool has_ps, bool has_nfd,
                                     at::ArrayRef<double> nfd_edges, double sigma,
                                     double radius_scale) {
  const SpectralParams p =
      check_rows_and_pack(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma, radius_scale);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options());
  const auto dt = compute_dtype(x);
  const at::Tensor xf = x.to(dt).contiguous();
  at::Tensor out = at::empty(xf.sizes(), xf.options());
  const at::Tensor rows_c = rows.to(dt).contiguous();
  const int64_t seed_v = p.has_nfd ? seed.item<int64_t>() : 0;
  AT_DISPATCH_FLOATING_TYPES(dt, "fastfreq_spectral_augment_rows_cpu", [&] {
    augment_chunks<scalar_t>(xf, out, p, nullptr, nullptr, nullptr, nullptr,
                             p.has_nfd ? &seed_v : nullptr, rows_c.data_ptr<scalar_t>(),
                             rows_c.size(1));
  });
  return out.to(x.scalar_type());
}

at::Tensor philox_normal_cpu(const at::Tensor& seed, at::IntArrayRef shape) {
  check_philox_args(seed, shape);
  at::Tensor out = at::empty(shape, seed.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const uint64_t s = static_cast<uint64_t>(seed.item<int64_t>());
  float* o = out.data_ptr<float>();
  const int64_t row_len = shape.empty() ? 1 : shape.back();
  const int64_t rows = out.numel() / row_len;
  const int64_t grain = std::max<int64_t>(1, (1 << 14) / row_len);
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> scratch(row_len + 8);
    for (int64_t r = r0; r < r1; ++r)
      fill_normals(noise_index(r, 0, row_len), row_len, s, o + r * row_len, scratch.data());
  });
  return out;
}

at::Tensor draw_params_cpu(const at::Tensor& seed, int64_t batch, double ps_p,
                           at::IntArrayRef ps_bands, double alpha_lo, double alpha_hi, double nfd_p,
                           int64_t n_bands, bool same_on_batch) {
  const DrawSettings s = pack_draw_settings(seed, batch, ps_p, ps_bands, alpha_lo, alpha_hi, nfd_p,
                                            n_bands, same_on_batch);
  const int64_t row = kParamHead + n_bands;
  at::Tensor out = at::empty({batch, row}, seed.options().dtype(at::kFloat));
  if (batch == 0) return out;
  const uint64_t key = static_cast<uint64_t>(seed.item<int64_t>());
  float* o = out.data_ptr<float>();
  at::parallel_for(0, batch, 4096, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) draw_image_params(b, key, s, o + b * row);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastfreq, CPU, m) {
  m.impl("spectral_augment", &spectral_augment_cpu);
  m.impl("spectral_augment_rows", &spectral_augment_rows_cpu);
  m.impl("philox_normal", &philox_normal_cpu);
  m.impl("draw_params", &draw_params_cpu);
}

}  // namespace fastfreq
