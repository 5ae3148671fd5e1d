// Schema of the fused op; the CPU and CUDA files register implementations.
// The fake (meta) kernel is registered from Python (fastfreq/backends/ext.py).
#include <torch/extension.h>

#include <tuple>

#include "spectral_common.h"

TORCH_LIBRARY(fastfreq, m) {
  m.def(
      "spectral_augment(Tensor x, Tensor? band, Tensor? alpha, Tensor? alpha_r, "
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
}  // namespace fastfreq

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("built_with_cuda", &fastfreq::built_with_cuda,
        "Whether the CUDA implementation was compiled into this build");
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
