// CPU implementation: ATen rfft2 -> one fused pass over the half spectrum
// (gain, control mask, Philox noise, Dir) -> ATen irfft2.
// Images run in parallel. The gain and noise scale depend on the image but not
// on the channel, so each image evaluates them once into a per-thread scratch
// row of H*(W/2+1) values (in cache; no mask tensor is materialised) and the
// channel loops then stream over the spectrum without branches.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

#include "../spectral_checks.h"

namespace fastfreq {
namespace {

// Standard normal draws for the half-spectrum elements [first, first + count)
// of the whole batch. `scratch` holds count + 8 floats. The loop over Philox
// groups is kept free of branches so that the compiler can vectorise it.
void fill_normals(int64_t first, int64_t count, uint64_t seed, float* out, float* scratch) {
  const int64_t g0 = first >> 2, groups = ((first + count + 3) >> 2) - g0;
  for (int64_t j = 0; j < groups; ++j) {
    const uint64_t g = static_cast<uint64_t>(g0 + j);
    const U32x4 u = philox4x32_10(static_cast<uint32_t>(g), static_cast<uint32_t>(g >> 32), seed);
    box_muller(u.x, u.y, scratch[4 * j], scratch[4 * j + 1]);
    box_muller(u.z, u.w, scratch[4 * j + 2], scratch[4 * j + 3]);
  }
  std::copy_n(scratch + (first - 4 * g0), count, out);
}

// sum |x| with independent partial sums (vectorises without -ffast-math).
template <typename T>
T l1_norm(const T* x, int64_t n) {
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

// Hermitian rule on one plane's draws: rows r > H/2 of the self-conjugate
// columns take row H - r.
template <typename T>
void apply_hermitian_rule(T* g, int H, int W, int Wh) {
  for (int r = H / 2 + 1; r < H; ++r) {
    g[static_cast<int64_t>(r) * Wh] = g[static_cast<int64_t>(H - r) * Wh];
    if (W % 2 == 0) g[static_cast<int64_t>(r) * Wh + W / 2] = g[static_cast<int64_t>(H - r) * Wh + W / 2];
  }
}

template <typename T>
void augment_images(at::Tensor& spec, const at::Tensor& xf, const SpectralParams& p,
                    const int64_t* band, const T* alpha, const T* alpha_r, const T* noise,
                    const int64_t* seed) {
  const int64_t B = spec.size(0);
  const int H = p.H, W = p.W, Wh = p.Wh, C = p.C;
  const int64_t bins = static_cast<int64_t>(H) * Wh, pixels = static_cast<int64_t>(H) * W;
  auto* Y = reinterpret_cast<T*>(spec.data_ptr<c10::complex<T>>());
  const T* x = xf.data_ptr<T>();
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    // The curves depend only on the radius: evaluate the three suppression
    // masks and the NFD hills once per thread; each image then mixes them
    // with its own alpha / alpha_r in branch-free (vectorised) loops.
    std::vector<T> curves(p.has_ps ? 3 * bins : 0), hills(p.has_nfd ? p.n_bands * bins : 0);
    for (int r = 0; r < H; ++r) {
      for (int k = 0; k < Wh; ++k) {
        const T s = bin_radius<T>(r, k, H);
        const int64_t i = static_cast<int64_t>(r) * Wh + k;
        for (int j = 0; p.has_ps && j < 3; ++j)
          curves[j * bins + i] = band_curve(j, s * static_cast<T>(p.inv_radius_scale));
        for (int j = 0; p.has_nfd && j < p.n_bands; ++j)
          hills[j * bins + i] = nfd_hill(s, static_cast<T>(p.band_a[j]), static_cast<T>(p.band_b[j]));
      }
    }
    std::vector<T> gain(bins, T(1)), scale(bins, T(0)), g(bins, T(0));
    std::vector<float> draws(seed != nullptr ? bins : 0), scratch(seed != nullptr ? bins + 8 : 0);
    for (int64_t b = begin; b < end; ++b) {
      if (p.has_ps) {
        const int band_b = static_cast<int>(band[b]);
        const T alpha_b = alpha[b];
        TORCH_CHECK(band_b >= 0 && band_b <= 2, "fastfreq: band ids must be in {0, 1, 2}, got ",
                    band_b);
        TORCH_CHECK(alpha_b >= T(0) && alpha_b <= T(1), "fastfreq: alpha must be in [0, 1], got ",
                    alpha_b);
        const T* m = curves.data() + band_b * bins;
        for (int64_t i = 0; i < bins; ++i) gain[i] = gain_from_mask(alpha_b, m[i]);
      }
      if (p.has_nfd) {
        const T* ar = alpha_r + b * p.n_bands;
        for (int j = 0; j < p.n_bands; ++j)
          TORCH_CHECK(ar[j] >= T(0) && ar[j] <= T(1), "fastfreq: alpha_r must be in [0, 1], got ",
                      ar[j]);
        std::fill(scale.begin(), scale.end(), T(0));
        for (int j = 0; j < p.n_bands; ++j) {
          const T* h = hills.data() + j * bins;
          for (int64_t i = 0; i < bins; ++i) scale[i] += ar[j] * h[i];
        }
        for (int64_t i = 0; i < bins; ++i) scale[i] = std_from_control(p.sigma, scale[i]);
      }
      for (int c = 0; c < C; ++c) {
        const int64_t plane = b * C + c;
        const T* xp = x + plane * pixels;
        const T eps = l1_norm(xp, pixels) * static_cast<T>(kDirEpsRel);
        if (p.has_nfd) {
          if (noise != nullptr) {
            std::copy_n(noise + plane * bins, bins, g.data());
          } else {
            fill_normals(plane * bins, bins, static_cast<uint64_t>(*seed), draws.data(),
                         scratch.data());
            std::copy_n(draws.data(), bins, g.data());
          }
          apply_hermitian_rule(g.data(), H, W, Wh);
        }
        T* Yp = Y + 2 * plane * bins;
        for (int64_t i = 0; i < bins; ++i)
          augment_bin(Yp[2 * i], Yp[2 * i + 1], gain[i], scale[i] * g[i], eps);
      }
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
  at::Tensor spec = at::fft_rfft2(xf).contiguous();
  const at::Tensor band_c = p.has_ps ? band->contiguous() : at::Tensor();
  const at::Tensor alpha_c = p.has_ps ? alpha->to(dt).contiguous() : at::Tensor();
  const at::Tensor ar_c = p.has_nfd ? alpha_r->to(dt).contiguous() : at::Tensor();
  const at::Tensor noise_c = noise.has_value() ? noise->to(dt).contiguous() : at::Tensor();
  const int64_t seed_v = seed.has_value() ? seed->item<int64_t>() : 0;
  AT_DISPATCH_FLOATING_TYPES(dt, "fastfreq_spectral_augment_cpu", [&] {
    augment_images<scalar_t>(
        spec, xf, p, p.has_ps ? band_c.data_ptr<int64_t>() : nullptr,
        p.has_ps ? alpha_c.data_ptr<scalar_t>() : nullptr,
        p.has_nfd ? ar_c.data_ptr<scalar_t>() : nullptr,
        noise.has_value() ? noise_c.data_ptr<scalar_t>() : nullptr,
        seed.has_value() ? &seed_v : nullptr);
  });
  return at::fft_irfft2(spec, std::vector<int64_t>{p.H, p.W}).to(x.scalar_type());
}

at::Tensor philox_normal_cpu(const at::Tensor& seed, at::IntArrayRef shape) {
  TORCH_CHECK(seed.scalar_type() == at::kLong && seed.numel() == 1,
              "fastfreq: seed must be an int64 tensor with one element");
  for (auto d : shape) TORCH_CHECK(d >= 0, "fastfreq: shape must be non-negative, got ", shape);
  at::Tensor out = at::empty(shape, seed.options().dtype(at::kFloat));
  const uint64_t s = static_cast<uint64_t>(seed.item<int64_t>());
  float* o = out.data_ptr<float>();
  at::parallel_for(0, out.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(end - begin + 8);
    fill_normals(begin, end - begin, s, o + begin, scratch.data());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastfreq, CPU, m) {
  m.impl("spectral_augment", &spectral_augment_cpu);
  m.impl("philox_normal", &philox_normal_cpu);
}

}  // namespace fastfreq
