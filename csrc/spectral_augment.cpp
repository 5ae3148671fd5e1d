// Schemas of the ops; the CPU and CUDA files register implementations.
// The fake (meta) kernels are registered from Python (fastfreq/backends/ext.py).
//  spectral_augment        ATen's FFTs around one fused per-bin pass
//                          (csrc/cpu/spectral_augment_kernel.cpp, csrc/cuda/...)
//  spectral_augment_fused  the single-pass op: each plane read once, its 2D
//                          FFTs in registers and shared memory, written once
//                          (csrc/fft/plane.h, csrc/cpu/single_pass.cpp,
//                          csrc/cuda/single_pass_kernel.cu)
#include <torch/extension.h>

#include <string>
#include <tuple>

#include "spectral_common.h"

TORCH_LIBRARY(fastfreq, m) {
  m.def(
      "spectral_augment(Tensor x, Tensor? band, Tensor? alpha, Tensor? alpha_r, "
      "Tensor? noise, Tensor? seed, float[] nfd_edges, float sigma, float radius_scale) -> Tensor");
  m.def(
      "spectral_augment_fused(Tensor x, Tensor? band, Tensor? alpha, Tensor? alpha_r, "
      "Tensor? noise, Tensor? seed, float[] nfd_edges, float sigma, float radius_scale) -> Tensor");
  m.def("philox_normal(Tensor seed, int[] shape) -> Tensor");
}

namespace fastfreq {
bool built_with_cuda() {
#ifdef FASTFREQ_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// The architectures the CUDA part was compiled for, as one token
// ("targets_80_90ptx" for 8.0;9.0+PTX; empty without CUDA).
#define FASTFREQ_STR2(x) #x
#define FASTFREQ_STR(x) FASTFREQ_STR2(x)
std::string cuda_archs() {
#ifdef FASTFREQ_CUDA_TARGETS
  return FASTFREQ_STR(FASTFREQ_CUDA_TARGETS);  // "targets_80_90ptx" (setup.py targets_macro)
#else
  return "";
#endif
}

#ifdef FASTFREQ_WITH_CUDA
bool cuda_kernel_image_ok(int64_t device);  // csrc/cuda/single_pass_kernel.cu
#else
bool cuda_kernel_image_ok(int64_t) { return false; }
#endif

void register_single_pass_tests(pybind11::module& m);  // csrc/cpu/single_pass.cpp
}  // namespace fastfreq

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("built_with_cuda", &fastfreq::built_with_cuda,
        "Whether the CUDA implementation was compiled into this build");
  m.def("cuda_archs", &fastfreq::cuda_archs,
        "The CUDA architectures this build was compiled for (TORCH_CUDA_ARCH_LIST form)");
  m.def("cuda_kernel_image_ok", &fastfreq::cuda_kernel_image_ok, pybind11::arg("device"),
        "Whether this build holds a kernel image that CUDA device `device` can run");
  fastfreq::register_single_pass_tests(m);
  // The header's Philox and uniform mapping, exposed so that tests compare
  // fastfreq/philox.py with the compiled code bit for bit.
  m.def(
      "philox_words",
      [](int64_t counter, int64_t seed) {
        const uint64_t c = static_cast<uint64_t>(counter);
        const auto u = fastfreq::philox4x32_10(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32),
                                               static_cast<uint64_t>(seed));
        return std::make_tuple(u.x, u.y, u.z, u.w);
      },
      "Philox4x32-10 words of counter (counter, 0, 0, 0) and the 64-bit key seed");
  m.def("uint_to_unit", &fastfreq::uint_to_unit, "uint32 -> [0, 1) as tl.rand does");
  m.def(
      "normal_at",
      [](int64_t index, int64_t seed) { return fastfreq::normal_at(index, static_cast<uint64_t>(seed)); },
      "The normal draw at a stream position (what the CUDA kernel draws per bin)");
}
