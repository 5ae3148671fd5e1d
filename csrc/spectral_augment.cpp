// Schema of the fused op; the CPU and CUDA files register implementations.
// The fake (meta) kernel is registered from Python (fastfreq/backends/ext.py).
#include <torch/extension.h>

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
}
