// CPU implementation of the single-pass op: every block of the CUDA launch is
// run on the host, its threads one after another within each phase, in the
// phase order the kernel's barriers impose. Same code as the GPU
// (csrc/fft/plane.h); the tests use it to check the GPU's index maps and
// shared-memory use on the CPU (single_pass_check below).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <limits>
#include <vector>

#include "../single_pass.h"

namespace fastfreq {
namespace {

using plane::Geometry;

template <int HC, int WC, typename In, typename Acc, typename Smem>
void run_block(int64_t blk, const Geometry& geo, const plane::Batch<In, Acc>& bt, Smem sm) {
  for (int ph = 0; ph < plane::kPhases; ++ph)
    for (int t = 0; t < geo.threads; ++t) plane::run_phase<HC, WC>(ph, t, blk, geo, bt, sm);
}

at::Tensor run_cpu(const at::Tensor& x, const single_pass::Prepared& pr) {
  if (x.numel() == 0) return pr.out;
  const int64_t seed_v = pr.seed.defined() ? pr.seed.item<int64_t>() : 0;
  const int H = pr.p.H, W = pr.p.W;
  const Geometry geo = plane::make_geometry(H, W, single_pass::planes_per_block(H, W));
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t blocks = (planes + geo.G - 1) / geo.G;
  const at::Tensor xu = single_pass::unit_stride_rows(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastfreq_single_pass_cpu", [&] {
    using In = scalar_t;
    using Acc = std::conditional_t<std::is_same_v<In, double>, double, float>;
    const auto bt = single_pass::make_batch<In, Acc>(xu, pr, &seed_v);
    single_pass::with_shape<Acc>(H, W, [&](auto hc, auto wc) {
      constexpr int HC = decltype(hc)::value, WC = decltype(wc)::value;
      at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
        std::vector<Acc> smem(geo.smem_words);
        for (int64_t blk = b0; blk < b1; ++blk)
          run_block<HC, WC>(blk, geo, bt, plane::RawSmem<Acc>{smem.data()});
      });
    });
  });
  return pr.out;
}

at::Tensor single_pass_cpu(const at::Tensor& x, const c10::optional<at::Tensor>& band,
                           const c10::optional<at::Tensor>& alpha,
                           const c10::optional<at::Tensor>& alpha_r,
                           const c10::optional<at::Tensor>& noise,
                           const c10::optional<at::Tensor>& seed, at::ArrayRef<double> nfd_edges,
                           double sigma, double radius_scale) {
  return run_cpu(x, single_pass::prepare(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma,
                                         radius_scale));
}

at::Tensor single_pass_rows_cpu(const at::Tensor& x, const at::Tensor& rows, const at::Tensor& seed,
                                bool has_ps, bool has_nfd, at::ArrayRef<double> nfd_edges,
                                double sigma, double radius_scale) {
  return run_cpu(x, single_pass::prepare_rows(x, rows, seed, has_ps, has_nfd, nfd_edges, sigma,
                                              radius_scale));
}

// ------------------------------------------------------------ test hooks
// Shared memory that records, per phase, which thread wrote and read each
// word: two threads writing one word, a thread reading a word another thread
// wrote (or writing one another thread read) in the same phase, and reads of
// words nobody wrote in an earlier phase are what a GPU race check would flag.
struct Tracker {
  std::vector<int> writer, reader;  // this phase: -1 none, -2 several readers
  std::vector<char> written;        // in any earlier phase
  int64_t write_conflicts = 0, read_hazards = 0, uninitialised_reads = 0;
  explicit Tracker(int words) : writer(words, -1), reader(words, -1), written(words, 0) {}
  void next_phase() {
    for (size_t i = 0; i < writer.size(); ++i) {
      if (writer[i] != -1) written[i] = 1;
      writer[i] = reader[i] = -1;
    }
  }
  void on_read(int i, int tid) {
    if (writer[i] != -1 && writer[i] != tid) ++read_hazards;
    if (writer[i] == -1 && !written[i]) ++uninitialised_reads;
    reader[i] = (reader[i] == -1 || reader[i] == tid) ? tid : -2;
  }
  void on_write(int i, int tid) {
    if (writer[i] != -1 && writer[i] != tid) ++write_conflicts;
    if (reader[i] != -1 && reader[i] != tid) ++read_hazards;
    writer[i] = tid;
  }
};

template <typename T>
struct CheckedSmem {
  T* p;
  Tracker* tr;
  int tid;
  T ld(int i) const {
    tr->on_read(i, tid);
    return p[i];
  }
  void st(int i, T v) const {
    tr->on_write(i, tid);
    p[i] = v;
  }
};

// The op on CPU tensors with every shared access tracked; also returns the
// counts above and the geometry. planes_per_block <= 0 takes the default.
std::tuple<at::Tensor, std::map<std::string, int64_t>> single_pass_check(
    const at::Tensor& x, const c10::optional<at::Tensor>& band,
    const c10::optional<at::Tensor>& alpha, const c10::optional<at::Tensor>& alpha_r,
    const c10::optional<at::Tensor>& noise, const c10::optional<at::Tensor>& seed,
    std::vector<double> nfd_edges, double sigma, double radius_scale, int64_t planes_per_block) {
  FF_CHECK(x.device().is_cpu(), "single_pass_check: x must be a CPU tensor");
  single_pass::Prepared pr =
      single_pass::prepare(x, band, alpha, alpha_r, noise, seed, nfd_edges, sigma, radius_scale);
  const int H = pr.p.H, W = pr.p.W;
  const int G = planes_per_block > 0 ? static_cast<int>(planes_per_block)
                                     : single_pass::planes_per_block(H, W);
  const Geometry geo = plane::make_geometry(H, W, G);
  const int64_t seed_v = pr.seed.defined() ? pr.seed.item<int64_t>() : 0;
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t blocks = (planes + geo.G - 1) / geo.G;
  std::map<std::string, int64_t> counts{{"write_conflicts", 0}, {"read_hazards", 0},
                                        {"uninitialised_reads", 0}, {"threads", geo.threads},
                                        {"planes_per_block", geo.G}, {"smem_words", geo.smem_words},
                                        {"row_stride", geo.S}, {"plane_stride", geo.plane_stride}};
  const at::Tensor xu = single_pass::unit_stride_rows(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastfreq_single_pass_check", [&] {
    using Acc = scalar_t;
    const auto bt = single_pass::make_batch<scalar_t, Acc>(xu, pr, &seed_v);
    single_pass::with_shape<Acc>(H, W, [&](auto hc, auto wc) {
      constexpr int HC = decltype(hc)::value, WC = decltype(wc)::value;
      std::vector<Acc> smem(geo.smem_words, std::numeric_limits<Acc>::quiet_NaN());
      for (int64_t blk = 0; blk < blocks; ++blk) {
        Tracker tr(geo.smem_words);
        auto at = [&](int t) { return CheckedSmem<Acc>{smem.data(), &tr, t}; };
        for (int ph = 0; ph < plane::kPhases; ++ph) {
          if (ph > 0) tr.next_phase();
          for (int t = 0; t < geo.threads; ++t) plane::run_phase<HC, WC>(ph, t, blk, geo, bt, at(t));
        }
        counts["write_conflicts"] += tr.write_conflicts;
        counts["read_hazards"] += tr.read_hazards;
        counts["uninitialised_reads"] += tr.uninitialised_reads;
      }
    });
  });
  return {pr.out, counts};
}

// The half spectrum that phases A and B leave in shared memory (what rfft2
// gives), for the tests: x (B, C, H, W) float32/float64 CPU -> complex
// (B, C, H, W/2+1).
at::Tensor single_pass_rfft2(const at::Tensor& x) {
  FF_CHECK(x.device().is_cpu() && x.dim() == 4 &&
               (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
           "single_pass_rfft2: x must be a (B, C, H, W) float32/float64 CPU tensor");
  single_pass::Prepared pr = single_pass::prepare(x, {}, {}, {}, {}, {}, {}, 1.0, 1.0);
  const int H = pr.p.H, W = pr.p.W, Wh = W / 2 + 1;
  const Geometry geo = plane::make_geometry(H, W, single_pass::planes_per_block(H, W));
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t blocks = (planes + geo.G - 1) / geo.G;
  at::Tensor spec = at::empty({x.size(0), x.size(1), H, Wh},
                              x.options().dtype(x.scalar_type() == at::kDouble ? at::kComplexDouble
                                                                               : at::kComplexFloat));
  const at::Tensor xu = single_pass::unit_stride_rows(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastfreq_single_pass_rfft2", [&] {
    using Acc = scalar_t;
    auto bt = single_pass::make_batch<scalar_t, Acc>(xu, pr, nullptr);
    bt.copy_identity = false;
    auto* out = spec.data_ptr<c10::complex<Acc>>();
    single_pass::with_shape<Acc>(H, W, [&](auto hc, auto wc) {
      constexpr int HC = decltype(hc)::value, WC = decltype(wc)::value;
      std::vector<Acc> smem(geo.smem_words);
      const plane::RawSmem<Acc> sm{smem.data()};
      const int im = geo.H * geo.S;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        for (int ph = 0; ph < 2; ++ph)
          for (int t = 0; t < geo.threads; ++t) plane::run_phase<HC, WC>(ph, t, blk, geo, bt, sm);
        for (int g = 0; g < geo.G && blk * geo.G + g < planes; ++g)
          for (int r = 0; r < H; ++r)
            for (int k = 0; k < Wh; ++k) {
              const int a = g * geo.plane_stride + plane::perm_row(r, H) * geo.S + k;
              out[((blk * geo.G + g) * H + r) * Wh + k] = {smem[a], smem[a + im]};
            }
      }
    });
  });
  return spec;
}

// One line through the FFT codelets: z (n, 2) float32/float64 as (re, im)
// pairs; compile_time picks fft_ct<n> (for the sizes listed below) over fft_rt.
template <int N, typename T>
bool ct_line(T* z, int n, bool inverse) {
  if (n != N) return false;
  auto* c = reinterpret_cast<fft::Cpx<T>*>(z);
  if (inverse) fft::fft_ct<N, 1>(c); else fft::fft_ct<N, -1>(c);
  return true;
}

template <typename T, int... N>
bool ct_any(T* z, int n, bool inverse, std::integer_sequence<int, N...>) {
  return (ct_line<N + 1>(z, n, inverse) || ...);
}

// compile-time lengths instantiated on the host: 1..16 and the lengths of the
// kernel's specialisations (32, 40, 64) with their neighbours and odd radices
template <typename T>
bool ct_listed(T* z, int n, bool inverse) {
  return ct_any(z, n, inverse, std::make_integer_sequence<int, 16>{}) ||
         ct_line<20>(z, n, inverse) || ct_line<24>(z, n, inverse) || ct_line<27>(z, n, inverse) ||
         ct_line<30>(z, n, inverse) || ct_line<32>(z, n, inverse) || ct_line<36>(z, n, inverse) ||
         ct_line<40>(z, n, inverse) || ct_line<45>(z, n, inverse) || ct_line<48>(z, n, inverse) ||
         ct_line<49>(z, n, inverse) || ct_line<60>(z, n, inverse) || ct_line<61>(z, n, inverse) ||
         ct_line<63>(z, n, inverse) || ct_line<64>(z, n, inverse);
}

constexpr int kHostLineCap = 128;

at::Tensor fft_line(const at::Tensor& z_in, bool inverse, bool compile_time) {
  FF_CHECK(z_in.device().is_cpu() && z_in.dim() == 2 && z_in.size(1) == 2 &&
               (z_in.scalar_type() == at::kFloat || z_in.scalar_type() == at::kDouble),
           "fft_line: z must be an (n, 2) float32/float64 CPU tensor");
  const int n = static_cast<int>(z_in.size(0));
  FF_CHECK(n >= 1 && n <= kHostLineCap, "fft_line: 1 <= n <= ", kHostLineCap, ", got ", n);
  at::Tensor z = z_in.contiguous().clone();
  bool done = false;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "fastfreq_fft_line", [&] {
    auto* p = z.data_ptr<scalar_t>();
    if (compile_time) {
      done = ct_listed(p, n, inverse);
    } else {
      auto* c = reinterpret_cast<fft::Cpx<scalar_t>*>(p);
      if (inverse) fft::fft_rt<1, kHostLineCap>(c, n); else fft::fft_rt<-1, kHostLineCap>(c, n);
      done = true;
    }
  });
  FF_CHECK(done, "fft_line: no compile-time instantiation for n = ", n);
  return z;
}

}  // namespace

void register_single_pass_tests(pybind11::module& m) {
  m.def("fft_line", &fft_line, "One line through the FFT codelets (tests)", pybind11::arg("z"),
        pybind11::arg("inverse"), pybind11::arg("compile_time"));
  m.def("single_pass_rfft2", &single_pass_rfft2,
        "The half spectrum the single-pass kernel's phases A and B leave in shared memory (tests)");
  m.def("single_pass_check", &single_pass_check,
        "The single-pass op on CPU with every shared-memory access tracked (tests)");
}

TORCH_LIBRARY_IMPL(fastfreq, CPU, m) {
  m.impl("spectral_augment_fused", &single_pass_cpu);
  m.impl("spectral_augment_fused_rows", &single_pass_rows_cpu);
}

}  // namespace fastfreq
