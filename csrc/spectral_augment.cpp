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

#include "spectral_checks.h"
#include "spectral_common.h"

TORCH_LIBRARY(fastfreq, m) {
  m.def(
      "spectral_augment(Tensor x, Tensor? band, Tensor? alpha, Tensor? alpha_r, "
      "Tensor? noise, Tensor? seed, float[] nfd_edges, float sigma, float radius_scale) -> Tensor");
  m.def(
      "spectral_augment_fused(Tensor x, Tensor? band, Tensor? alpha, Tensor? alpha_r, "
      "Tensor? noise, Tensor? seed, float[] nfd_edges, float sigma, float radius_scale) -> Tensor");
  // the single-pass op with its parameters as draw_params rows (see below),
  // read by the kernel; no autograd formula: spectral_augment_sampled takes
  // it only where no gradient is wanted
  m.def(
      "spectral_augment_fused_rows(Tensor x, Tensor rows, Tensor seed, bool has_ps, bool has_nfd, "
      "float[] nfd_edges, float sigma, float radius_scale) -> Tensor");
  // the same for the cpp/cuda path (ATen's FFTs around one pass over the
  // bins): spectral_augment with each image's parameters read from its row
  m.def(
      "spectral_augment_rows(Tensor x, Tensor rows, Tensor seed, bool has_ps, bool has_nfd, "
      "float[] nfd_edges, float sigma, float radius_scale) -> Tensor");
  m.def("philox_normal(Tensor seed, int[] shape) -> Tensor");
  // per-image parameters drawn from a Philox key (csrc/param_draw.h): a
  // (batch, 4 + n_bands) float32 tensor on seed's device
  m.def(
      "draw_params(Tensor seed, int batch, float ps_p, int[] ps_bands, float alpha_lo, "
      "float alpha_hi, float nfd_p, int n_bands, bool same_on_batch) -> Tensor");
  // one call per module forward: the draw, the augmentation (single_pass:
  // spectral_augment_fused) and the per-image selection; returns
  // (output, the drawn rows)
  m.def(
      "spectral_augment_sampled(Tensor x, Tensor seed, float ps_p, int[] ps_bands, "
      "float alpha_lo, float alpha_hi, float nfd_p, float[] nfd_edges, float sigma, "
      "float radius_scale, bool same_on_batch, bool single_pass) -> (Tensor, Tensor)");
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

namespace {
using AugmentFn = at::Tensor(const at::Tensor&, const c10::optional<at::Tensor>&,
                             const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
                             const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
                             at::ArrayRef<double>, double, double);
using DrawFn = at::Tensor(const at::Tensor&, int64_t, double, at::IntArrayRef, double, double, double,
                          int64_t, bool);

// Device-independent: every piece goes through the dispatcher (the CPU or
// CUDA kernels, their autograd formulas), so gradients reach x as through
// spectral_augment, and nothing here reads a value on the host.
std::tuple<at::Tensor, at::Tensor> spectral_augment_sampled(
    const at::Tensor& x, const at::Tensor& seed, double ps_p, at::IntArrayRef ps_bands,
    double alpha_lo, double alpha_hi, double nfd_p, at::ArrayRef<double> nfd_edges, double sigma,
    double radius_scale, bool same_on_batch, bool single_pass) {
  FF_CHECK(x.dim() == 4, "fastfreq: x must be (B, C, H, W), got ", x.sizes());
  FF_CHECK(nfd_edges.size() % 2 == 0, "fastfreq: nfd_edges must hold (a, b) pairs, got ",
           static_cast<int64_t>(nfd_edges.size()), " values");
  FF_CHECK(seed.device() == x.device(), "fastfreq: seed must be on x's device");
  const int64_t n_bands = static_cast<int64_t>(nfd_edges.size() / 2);
  static const auto draw = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("fastfreq::draw_params", "")
                               .typed<DrawFn>();
  at::Tensor rows = draw.call(seed, x.size(0), ps_p, ps_bands, alpha_lo, alpha_hi, nfd_p, n_bands,
                              same_on_batch);
  const bool use_ps = ps_p > 0.0, use_nfd = nfd_p > 0.0 && sigma > 0.0 && n_bands > 0;
  if (!use_ps && !use_nfd) return {x.clone(), rows};
  static const auto fused = c10::Dispatcher::singleton()
                                .findSchemaOrThrow("fastfreq::spectral_augment_fused", "")
                                .typed<AugmentFn>();
  static const auto unfused = c10::Dispatcher::singleton()
                                  .findSchemaOrThrow("fastfreq::spectral_augment", "")
                                  .typed<AugmentFn>();
  // without a gradient to x (single_pass, and the cuFFT/cpp path, on CPU and
  // CUDA): one op reads the rows; no band/alpha/alpha_r cut out of them, no
  // selection afterwards (an image without NFD drawn gets no noise, one that
  // no transform drew is its input); the same values as below
  const bool no_grad = !(at::GradMode::is_enabled() && x.requires_grad());
  if (no_grad) {
    using RowsFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool, bool,
                              at::ArrayRef<double>, double, double);
    static const auto fused_rows = c10::Dispatcher::singleton()
                                       .findSchemaOrThrow("fastfreq::spectral_augment_fused_rows", "")
                                       .typed<RowsFn>();
    static const auto unfused_rows = c10::Dispatcher::singleton()
                                         .findSchemaOrThrow("fastfreq::spectral_augment_rows", "")
                                         .typed<RowsFn>();
    const auto& op_rows = single_pass ? fused_rows : unfused_rows;
    return {op_rows.call(x, rows, seed, use_ps, use_nfd, nfd_edges, sigma, radius_scale), rows};
  }
  // with a gradient to x: through the ops with autograd formulas, then the
  // per-image selection
  const auto& op = single_pass ? fused : unfused;
  const auto none = c10::optional<at::Tensor>();
  const auto band = use_ps ? c10::optional<at::Tensor>(rows.select(1, 1).to(at::kLong)) : none;
  // alpha is 0 where suppression was not drawn: the gain is then exactly 1
  const auto alpha = use_ps ? c10::optional<at::Tensor>(rows.select(1, 2)) : none;
  const auto alpha_r =
      use_nfd ? c10::optional<at::Tensor>(rows.narrow(1, kParamHead, n_bands)) : none;
  at::Tensor out = op.call(x, band, alpha, alpha_r, none, use_nfd ? c10::optional<at::Tensor>(seed) : none,
                           nfd_edges, sigma, radius_scale);
  auto per_image = [&](int col) { return rows.select(1, col).to(at::kBool).view({-1, 1, 1, 1}); };
  // images a transform did not draw come back as they were
  if (use_nfd && nfd_p < 1.0) {
    const at::Tensor rest =
        use_ps ? at::where(per_image(0), op.call(x, band, alpha, none, none, none, nfd_edges, sigma,
                                                 radius_scale),
                           x)
               : x;
    out = at::where(per_image(3), out, rest);
  } else if (!use_nfd) {
    out = at::where(per_image(0), out, x);
  }
  return {out, rows};
}
}  // namespace
}  // namespace fastfreq

TORCH_LIBRARY_IMPL(fastfreq, CompositeImplicitAutograd, m) {
  m.impl("spectral_augment_sampled", &fastfreq::spectral_augment_sampled);
}

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
