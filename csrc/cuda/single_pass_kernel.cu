// CUDA implementation of the single-pass op fastfreq::spectral_augment_fused:
// ONE kernel reads each image once, runs the forward 2D FFT, the per-frequency
// augmentation and the inverse 2D FFT in registers and shared memory
// (csrc/fft/plane.h), and writes it once. No temporary in global memory, no
// host sync; the Philox key is read on the device.
//
// A block holds G planes (single_pass::planes_per_block, fewer when the
// device's shared memory per block is smaller); its threads run the
// five phases with a barrier between them.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "../single_pass.h"

namespace fastfreq {
namespace {

using plane::Geometry;

template <int HC, int WC, typename In, typename Acc>
__global__ void __launch_bounds__(single_pass::kTargetThreads,
                                  single_pass::min_blocks_per_sm(HC, WC))
    single_pass_kernel(const plane::Batch<In, Acc> bt, const Geometry geo) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const plane::RawSmem<Acc> sm{reinterpret_cast<Acc*>(smem_raw)};
  const int64_t block = blockIdx.x;
  const int t = static_cast<int>(threadIdx.x);
  plane::phase_rows_forward<HC, WC>(t, block, geo, bt, sm);
  __syncthreads();
  plane::phase_columns_forward<HC, WC>(t, block, geo, bt, sm);
  __syncthreads();
  plane::phase_bins<HC, WC>(t, block, geo, bt, sm);
  __syncthreads();
  plane::phase_columns_inverse<HC, WC>(t, block, geo, bt, sm);
  __syncthreads();
  plane::phase_rows_inverse<HC, WC>(t, block, geo, bt, sm);
}

template <int HC, int WC, typename In, typename Acc>
void launch(const plane::Batch<In, Acc>& bt, int H, int W, int64_t planes,
            const at::Device& dev) {
  auto kernel = single_pass_kernel<HC, WC, In, Acc>;
  int optin = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev.index()));
  // fewer planes per block where the device has less shared memory per block
  Geometry geo = plane::make_geometry(H, W, single_pass::planes_per_block(H, W));
  while (geo.G > 1 && static_cast<int64_t>(geo.smem_words) * sizeof(Acc) > optin)
    geo = plane::make_geometry(H, W, geo.G - 1);
  const size_t bytes = static_cast<size_t>(geo.smem_words) * sizeof(Acc);
  FF_CHECK(bytes <= static_cast<size_t>(optin), "fastfreq: a ", H, "x", W,
           " plane needs ", static_cast<int64_t>(bytes), " B of shared memory, the device allows ",
           optin, " B per block (use the spectral_augment op)");
  if (bytes > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  const int64_t blocks = (planes + geo.G - 1) / geo.G;
  FF_CHECK(blocks < (int64_t(1) << 31), "fastfreq: too many planes for one launch: ", planes);
  kernel<<<static_cast<unsigned>(blocks), geo.threads, bytes, at::cuda::getCurrentCUDAStream()>>>(
      bt, geo);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor run_cuda(const at::Tensor& x, const single_pass::Prepared& pr) {
  if (x.numel() == 0) return pr.out;
  const int H = pr.p.H, W = pr.p.W;
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t* seed_ptr = pr.seed.defined() ? pr.seed.data_ptr<int64_t>() : nullptr;
  const at::Tensor xu = single_pass::unit_stride_rows(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastfreq_single_pass_cuda", [&] {
    using In = scalar_t;
    using Acc = std::conditional_t<std::is_same_v<In, double>, double, float>;
    const auto bt = single_pass::make_batch<In, Acc>(xu, pr, seed_ptr);
    single_pass::with_shape<Acc>(H, W, [&](auto hc, auto wc) {
      launch<decltype(hc)::value, decltype(wc)::value>(bt, H, W, planes, x.device());
    });
  });
  return pr.out;
}

at::Tensor single_pass_cuda(const at::Tensor& x, const c10::optional<at::Tensor>& band,
                            const c10::optional<at::Tensor>& alpha,
                            const c10::optional<at::Tensor>& alpha_r,
                            const c10::optional<at::Tensor>& noise,
                            const c10::optional<at::Tensor>& seed, at::ArrayRef<double> nfd_edges,
                            double sigma, double radius_scale) {
  const c10::cuda::CUDAGuard guard(x.device());
  return run_cuda(x, single_pass::prepare(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma,
                                          radius_scale));
}

// The parameters as draw_params rows, read by the kernel: with the draw, a
// module forward is two kernels, and images no transform drew are copied.
at::Tensor single_pass_rows_cuda(const at::Tensor& x, const at::Tensor& rows,
                                 const at::Tensor& seed, bool has_ps, bool has_nfd,
                                 at::ArrayRef<double> nfd_edges, double sigma,
                                 double radius_scale) {
  const c10::cuda::CUDAGuard guard(x.device());
  return run_cuda(x, single_pass::prepare_rows(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma,
                                               radius_scale));
}

}  // namespace

// Whether this build has a kernel image the device can run (SASS for its
// architecture family or PTX it can JIT): cudaFuncGetAttributes fails with
// cudaErrorNoKernelImageForDevice otherwise.
bool cuda_kernel_image_ok(int64_t device) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count) {
    cudaGetLastError();
    return false;
  }
  int prev = 0;
  cudaGetDevice(&prev);
  cudaSetDevice(static_cast<int>(device));
  cudaFuncAttributes attr;
  const cudaError_t err = cudaFuncGetAttributes(&attr, single_pass_kernel<0, 0, float, float>);
  cudaGetLastError();  // clear the sticky-free error state for the caller
  cudaSetDevice(prev);
  return err == cudaSuccess;
}

TORCH_LIBRARY_IMPL(fastfreq, CUDA, m) {
  m.impl("spectral_augment_fused", &single_pass_cuda);
  m.impl("spectral_augment_fused_rows", &single_pass_rows_cuda);
}

}  // namespace fastfreq
