// Host side of the single-pass op fastfreq::spectral_augment_fused, shared by
// its CPU (csrc/cpu/single_pass.cpp) and CUDA (csrc/cuda/single_pass_kernel.cu)
// implementations: argument checks, the compile-time shapes, the block
// geometry and the per-launch Batch. The transform itself is csrc/fft/plane.h.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>

#include "fft/plane.h"
#include "spectral_checks.h"

namespace fastfreq {
namespace single_pass {

// Threads per block the geometry aims at (and the kernel's launch bound).
constexpr int kTargetThreads = 128;

// Blocks per SM that the registers must allow (__launch_bounds__): 32x32 and
// 40x40 3 blocks (<= 168 registers a thread), 64x64 2 (<= 255). The shared
// memory of planes_per_block planes allows that many on a 228 kB (Hopper) and
// a 164 kB (A100) SM. 32x32 needs 148-168 registers (bench aot, sm_90/sm_80),
// more than the 128 a 4-block bound allows. At least 8 warps per SM each
// (bench aot --gate).
constexpr int min_blocks_per_sm(int HC, int WC) {
  return (HC == 64 || WC == 64) ? 2 : 3;
}

// Planes per block: as many as fill kTargetThreads with their lines.
inline int planes_per_block(int H, int W) {
  return std::max(1, kTargetThreads / plane::lines_per_plane(H, W));
}

// f(Int<H>, Int<W>) for the sizes with a compile-time (register-resident)
// transform, f(Int<0>, Int<0>) for every other size up to kMaxLine. float64
// always takes the run-time form (its lines would not fit in registers).
template <typename Acc, typename F>
void with_shape(int H, int W, F&& f) {
  using fft::Int;
  constexpr bool fixed = !std::is_same_v<Acc, double>;
  if constexpr (fixed) {
    if (H == 32 && W == 32) return f(Int<32>{}, Int<32>{});
    if (H == 40 && W == 40) return f(Int<40>{}, Int<40>{});
    if (H == 64 && W == 64) return f(Int<64>{}, Int<64>{});
  }
  f(Int<0>{}, Int<0>{});
}

// The op's arguments, checked, converted to the compute type and made
// contiguous (kept alive here for the launch).
struct Prepared {
  SpectralParams p;
  at::Tensor band, alpha, alpha_r, noise, seed, rows, out;
};

inline void check_sides(const SpectralParams& p) {
  FF_CHECK(p.H <= plane::kMaxLine && p.W <= plane::kMaxLine,
           "fastfreq: the single-pass op takes sides up to ", plane::kMaxLine, ", got ", p.H,
           "x", p.W, " (use the spectral_augment op)");
}

inline Prepared prepare(const at::Tensor& x, const c10::optional<at::Tensor>& band,
                        const c10::optional<at::Tensor>& alpha,
                        const c10::optional<at::Tensor>& alpha_r,
                        const c10::optional<at::Tensor>& noise,
                        const c10::optional<at::Tensor>& seed, at::ArrayRef<double> nfd_edges,
                        double sigma, double radius_scale) {
  Prepared pr;
  pr.p = check_and_pack(x, band, alpha, alpha_r, noise, seed, nfd_edges.vec(), sigma, radius_scale);
  check_sides(pr.p);
  const auto dt = compute_dtype(x);
  if (pr.p.has_ps) {
    pr.band = band->contiguous();
    pr.alpha = alpha->to(dt).contiguous();
  }
  if (pr.p.has_nfd) pr.alpha_r = alpha_r->to(dt).contiguous();
  if (noise.has_value()) pr.noise = noise->to(dt).contiguous();
  if (seed.has_value()) pr.seed = seed->contiguous();
  // contiguous output (the kernel writes unit-stride rows), as the other ops
  pr.out = at::empty(x.sizes(), x.options());
  return pr;
}

// fastfreq::spectral_augment_fused_rows: the per-image parameters are the rows
// of fastfreq::draw_params, read by the kernel itself (no band/alpha/alpha_r
// tensors cut out of them first); checked by check_rows_and_pack.
inline Prepared prepare_rows(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& seed,
                             bool has_ps, bool has_nfd, at::ArrayRef<double> nfd_edges,
                             double sigma, double radius_scale) {
  Prepared pr;
  pr.p = check_rows_and_pack(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma, radius_scale);
  check_sides(pr.p);
  pr.rows = rows.to(compute_dtype(x)).contiguous();
  if (has_nfd) pr.seed = seed.contiguous();
  pr.out = at::empty(x.sizes(), x.options());
  return pr;
}

// The kernel reads rows with unit stride: other layouts (channels_last,
// transposed) are copied first; batch, channel and row strides are read in
// place (slices, expanded batches).
inline at::Tensor unit_stride_rows(const at::Tensor& x) {
  return x.size(3) <= 1 || x.stride(3) == 1 ? x : x.contiguous();
}

template <typename In, typename Acc>
plane::Batch<In, Acc> make_batch(const at::Tensor& x, const Prepared& pr, const int64_t* seed) {
  TORCH_INTERNAL_ASSERT(x.size(3) <= 1 || x.stride(3) == 1);
  plane::Batch<In, Acc> bt;
  bt.x = x.data_ptr<In>();
  bt.out = pr.out.data_ptr<In>();
  for (int d = 0; d < 3; ++d) {
    bt.xs[d] = x.stride(d);
    bt.os[d] = pr.out.stride(d);
  }
  bt.planes = x.size(0) * x.size(1);
  bt.p = pr.p;
  if (pr.p.has_ps && !pr.rows.defined()) {
    bt.band = pr.band.data_ptr<int64_t>();
    bt.alpha = pr.alpha.data_ptr<Acc>();
  }
  if (pr.rows.defined()) {
    bt.rows = pr.rows.data_ptr<Acc>();
    bt.row_len = pr.rows.size(1);
  } else if (pr.p.has_nfd) {
    bt.alpha_r = pr.alpha_r.data_ptr<Acc>();
  }
  if (pr.noise.defined()) bt.noise = pr.noise.data_ptr<Acc>();
  bt.seed = seed;
  return bt;
}

}  // namespace single_pass
}  // namespace fastfreq
