// CUDA implementation: cuFFT (through ATen, with its plan cache) for rfft2 and
// irfft2, plus ONE fused kernel over the half spectrum. One block per
// (image, channel) plane: the block reduces sum|x| for the Dir threshold, then
// its threads apply gain, control mask, Philox noise and Dir to the plane's
// bins. Everything runs on the current stream; nothing syncs with the host.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <vector>

#include "../spectral_checks.h"

namespace fastfreq {
namespace {

// Threads per block. The kernel works for any blockDim.x <= kThreads (the
// reduction treats missing threads as zeros); __launch_bounds__ makes a larger
// launch fail with an error instead of writing past `partial`.
constexpr int kThreads = 256;

// rows (or null): the draw_params rows in T, row_len each, read instead of
// band/alpha/alpha_r (csrc/param_draw.h): no noise where the row has no NFD
// drawn; an identity image's planes are left as they are (the op writes its
// input over them after the inverse FFT).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    augment_planes_kernel(T* __restrict__ Y, const T* __restrict__ x,
                          const int64_t* __restrict__ band, const T* __restrict__ alpha,
                          const T* __restrict__ alpha_r, const T* __restrict__ noise,
                          const int64_t* __restrict__ seed, SpectralParams p,
                          const T* __restrict__ rows, int64_t row_len) {
  const int64_t plane = blockIdx.x;
  const int64_t b = plane / p.C;
  const T* row = rows != nullptr ? rows + b * row_len : nullptr;
  // the same for every thread of the block: returns before any barrier
  if (row != nullptr && row_is_identity(row, p.has_ps, p.has_nfd)) return;
  const int H = p.H, W = p.W, Wh = p.Wh;
  const int64_t plane_px = static_cast<int64_t>(H) * W;
  const int64_t plane_bins = static_cast<int64_t>(H) * Wh;

  __shared__ T partial[kThreads];
  T acc = T(0);
  const T* xp = x + plane * plane_px;
  for (int64_t i = threadIdx.x; i < plane_px; i += blockDim.x) acc += fabs(xp[i]);
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride && threadIdx.x + stride < blockDim.x)
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  const T eps = partial[0] * static_cast<T>(kDirEpsRel);

  int band_b = 0;
  T alpha_b = T(0);
  bool bad = false;  // invalid parameters give NaN output rather than a device assert
  if (p.has_ps) {
    // compared before narrowing: 2**32 is not band 0
    const int64_t band_v = row == nullptr ? band[b] : row_band(row);
    alpha_b = row == nullptr ? alpha[b] : row_alpha(row);
    bad = !(band_v >= 0 && band_v <= 2 && alpha_b >= T(0) && alpha_b <= T(1));
    band_b = bad ? 0 : static_cast<int>(band_v);
  }
  const bool nfd = p.has_nfd && (row == nullptr || row_nfd(row));
  const T* ar = !nfd ? nullptr : row == nullptr ? alpha_r + b * p.n_bands : row_weights(row);
  for (int i = 0; ar != nullptr && i < p.n_bands; ++i) bad |= !(ar[i] >= T(0) && ar[i] <= T(1));
  const uint64_t seed_v = seed != nullptr ? static_cast<uint64_t>(*seed) : 0;
  const T inv_hw = T(1) / static_cast<T>(plane_px);

  T* Yp = Y + 2 * plane * plane_bins;
  for (int64_t i = threadIdx.x; i < plane_bins; i += blockDim.x) {
    const int r = static_cast<int>(i / Wh), k = static_cast<int>(i % Wh);
    const T s = bin_radius<T>(r, k, H);
    const T gain =
        p.has_ps ? gain_from_mask(alpha_b, band_curve(band_b, s * static_cast<T>(p.inv_radius_scale)))
                 : T(1);
    T n = T(0);
    if (nfd) {
      const int rc = canonical_row(r, k, H, W);
      const T g = noise != nullptr
                      ? noise[plane * plane_bins + static_cast<int64_t>(rc) * Wh + k]
                      : static_cast<T>(normal_at(noise_index(plane * H + rc, k, Wh), seed_v));
      T M = T(0);
      for (int j = 0; j < p.n_bands; ++j)
        M = control_step(M, ar[j],
                         nfd_hill(s, static_cast<T>(p.band_a[j]), static_cast<T>(p.band_b[j])));
      n = std_from_control(p.sigma, M) * g;
    }
    T re = Yp[2 * i], im = Yp[2 * i + 1];
    // 1/(H W) of the inverse FFT folded in (Dir is scale-invariant, so gain,
    // noise and eps scale together); the C2R below runs unnormalised
    augment_bin(re, im, gain * inv_hw, n * inv_hw, eps * inv_hw);
    if (bad) re = im = NAN;
    Yp[2 * i] = re;
    Yp[2 * i + 1] = im;
  }
}

__global__ void philox_normal_kernel(float* out, int64_t n, int64_t row_len, const int64_t* seed) {
  const uint64_t s = static_cast<uint64_t>(*seed);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = normal_at(noise_index(i / row_len, i % row_len, row_len), s);
}

at::Tensor spectral_augment_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& band,
                                 const c10::optional<at::Tensor>& alpha,
                                 const c10::optional<at::Tensor>& alpha_r,
                                 const c10::optional<at::Tensor>& noise,
                                 const c10::optional<at::Tensor>& seed,
                                 at::ArrayRef<double> nfd_edges, double sigma,
                                 double radius_scale) {
  const SpectralParams p = check_and_pack(x, band, alpha, alpha_r, noise, seed,
                                          nfd_edges.vec(), sigma, radius_scale);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options());
  const c10::cuda::CUDAGuard guard(x.device());
  const auto dt = compute_dtype(x);
  const at::Tensor xf = x.to(dt).contiguous();
  at::Tensor spec = at::fft_rfft2(xf).contiguous();
  const at::Tensor band_c = p.has_ps ? band->contiguous() : at::Tensor();
  const at::Tensor alpha_c = p.has_ps ? alpha->to(dt).contiguous() : at::Tensor();
  const at::Tensor ar_c = p.has_nfd ? alpha_r->to(dt).contiguous() : at::Tensor();
  const at::Tensor noise_c = noise.has_value() ? noise->to(dt).contiguous() : at::Tensor();
  const at::Tensor seed_c = seed.has_value() ? seed->contiguous() : at::Tensor();
  const int64_t planes = x.size(0) * x.size(1);
  FF_CHECK(planes < (int64_t(1) << 31), "fastfreq: too many planes for one launch: ", planes);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dt, "fastfreq_spectral_augment_cuda", [&] {
    augment_planes_kernel<scalar_t><<<static_cast<unsigned>(planes), kThreads, 0, stream>>>(
        reinterpret_cast<scalar_t*>(spec.data_ptr<c10::complex<scalar_t>>()),
        xf.data_ptr<scalar_t>(), p.has_ps ? band_c.data_ptr<int64_t>() : nullptr,
        p.has_ps ? alpha_c.data_ptr<scalar_t>() : nullptr,
        p.has_nfd ? ar_c.data_ptr<scalar_t>() : nullptr,
        noise.has_value() ? noise_c.data_ptr<scalar_t>() : nullptr,
        seed.has_value() ? seed_c.data_ptr<int64_t>() : nullptr, p, nullptr, 0);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  // norm="forward": the inverse is unnormalised (the kernel applied 1/(H W)),
  // which saves ATen's separate scaling pass over the output
  return at::fft_irfft2(spec, std::vector<int64_t>{p.H, p.W}, {-2, -1}, "forward")
      .to(x.scalar_type());
}

// One block per image: an image whose row is the identity gets its input back
// (out and x contiguous, in x's dtype); the others return at once.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    restore_identity_kernel(T* __restrict__ out, const T* __restrict__ x,
                            const float* __restrict__ rows, int64_t row_len, int64_t image_len,
                            bool has_ps, bool has_nfd) {
  const int64_t b = blockIdx.x;
  if (!row_is_identity(rows + b * row_len, has_ps, has_nfd)) return;
  for (int64_t i = threadIdx.x; i < image_len; i += blockDim.x)
    out[b * image_len + i] = x[b * image_len + i];
}

// fastfreq::spectral_augment_rows on CUDA: the cuFFT path with each image's
// parameters read from its draw_params row on the device. Kernels: rfft2, the
// bin kernel, irfft2, the identity restore (plus dtype casts for half and
// bfloat16 inputs); no second call, no selection, no host sync.
at::Tensor spectral_augment_rows_cuda(const at::Tensor& x, const at::Tensor& rows,
                                      const at::Tensor& seed, bool has_ps, bool has_nfd,
                                      at::ArrayRef<double> nfd_edges, double sigma,
                                      double radius_scale) {
  const SpectralParams p =
      check_rows_and_pack(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma, radius_scale);
  if (x.numel() == 0) return at::empty(x.sizes(), x.options());
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t planes = x.size(0) * x.size(1);
  FF_CHECK(planes < (int64_t(1) << 31), "fastfreq: too many planes for one launch: ", planes);
  const auto dt = compute_dtype(x);
  const at::Tensor xf = x.to(dt).contiguous();
  at::Tensor spec = at::fft_rfft2(xf).contiguous();
  const at::Tensor rows_f = rows.contiguous();  // float32 (checked)
  const at::Tensor rows_c = rows_f.to(dt);      // exact for float64
  const at::Tensor seed_c = p.has_nfd ? seed.contiguous() : at::Tensor();
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dt, "fastfreq_spectral_augment_rows_cuda", [&] {
    augment_planes_kernel<scalar_t><<<static_cast<unsigned>(planes), kThreads, 0, stream>>>(
        reinterpret_cast<scalar_t*>(spec.data_ptr<c10::complex<scalar_t>>()),
        xf.data_ptr<scalar_t>(), nullptr, nullptr, nullptr, nullptr,
        p.has_nfd ? seed_c.data_ptr<int64_t>() : nullptr, p, rows_c.data_ptr<scalar_t>(),
        rows_c.size(1));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  at::Tensor out = at::fft_irfft2(spec, std::vector<int64_t>{p.H, p.W}, {-2, -1}, "forward")
                       .to(x.scalar_type())
                       .contiguous();
  const at::Tensor xc = x.contiguous();
  const int64_t image_len = x.numel() / x.size(0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "fastfreq_restore_identity_cuda", [&] {
    restore_identity_kernel<scalar_t><<<static_cast<unsigned>(x.size(0)), kThreads, 0, stream>>>(
        out.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), rows_f.data_ptr<float>(),
        rows_f.size(1), image_len, p.has_ps, p.has_nfd);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor philox_normal_cuda(const at::Tensor& seed, at::IntArrayRef shape) {
  check_philox_args(seed, shape);
  const c10::cuda::CUDAGuard guard(seed.device());
  at::Tensor out = at::empty(shape, seed.options().dtype(at::kFloat));
  const int64_t n = out.numel();
  if (n == 0) return out;
  const int blocks = static_cast<int>(std::min<int64_t>((n + 255) / 256, 65535));
  const int64_t row_len = shape.empty() ? 1 : shape.back();
  philox_normal_kernel<<<blocks, 256, 0, at::cuda::getCurrentCUDAStream()>>>(
      out.data_ptr<float>(), n, row_len, seed.contiguous().data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// One thread per image; the key is read on the device (no host sync).
__global__ void draw_params_kernel(float* out, int64_t batch, const int64_t* seed, DrawSettings s) {
  const uint64_t key = static_cast<uint64_t>(*seed);
  const int64_t row = kParamHead + s.n_bands;
  for (int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; b < batch;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x)
    draw_image_params(b, key, s, out + b * row);
}

at::Tensor draw_params_cuda(const at::Tensor& seed, int64_t batch, double ps_p,
                            at::IntArrayRef ps_bands, double alpha_lo, double alpha_hi, double nfd_p,
                            int64_t n_bands, bool same_on_batch) {
  const DrawSettings s = pack_draw_settings(seed, batch, ps_p, ps_bands, alpha_lo, alpha_hi, nfd_p,
                                            n_bands, same_on_batch);
  const c10::cuda::CUDAGuard guard(seed.device());
  at::Tensor out = at::empty({batch, kParamHead + n_bands}, seed.options().dtype(at::kFloat));
  if (batch == 0) return out;
  const int blocks = static_cast<int>(std::min<int64_t>((batch + 127) / 128, 65535));
  draw_params_kernel<<<blocks, 128, 0, at::cuda::getCurrentCUDAStream()>>>(
      out.data_ptr<float>(), batch, seed.contiguous().data_ptr<int64_t>(), s);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastfreq, CUDA, m) {
  m.impl("spectral_augment", &spectral_augment_cuda);
  m.impl("spectral_augment_rows", &spectral_augment_rows_cuda);
  m.impl("philox_normal", &philox_normal_cuda);
  m.impl("draw_params", &draw_params_cuda);
}

}  // namespace fastfreq
