// The single-pass plane transform: each (image, channel) plane is read once,
// transformed forward, augmented (spectral_common.h), transformed back and
// written once, with the spectrum kept in one block's shared memory.
//
// The work is three phases, each a function of (thread index, block's shared
// buffer), separated by a block barrier. The CUDA kernel runs them with
// threadIdx.x; the CPU runs every thread of a block phase by phase in order
// (the `fused` backend on CPU tensors, and the tests, which also check that no
// two threads touch the same shared word within a phase).
//
//  A  rows:    thread l of a plane loads rows 2l and 2l+1 as one complex line
//              z = x[2l] + i x[2l+1] (sum |x| for the Dir threshold on the way),
//              FFTs it, splits the two real rows' spectra for k = 0..W/2, and
//              writes them to shared memory; with NFD it also writes the scaled
//              noise of its two rows (Philox groups of four, drawn only where
//              the noise std is non-zero).
//  B  columns: thread j FFTs half-spectrum column j (thread 0 packs the two
//              real columns k = 0 and k = W/2 into one complex line), applies
//              gain, noise and Dir per bin, inverse-FFTs the column and writes
//              it back.
//  C  rows:    thread l rebuilds the full spectrum of rows 2l, 2l+1 from the
//              half spectrum (Hermitian), inverse-FFTs it, stores both rows.
//
// Shared layout per plane: re, im (and the scaled noise) as H x S float
// arrays. Row r of the image is stored at row perm(r) = r/2 (even r) or
// ceil(H/2) + r/2 (odd r), so that the row threads of phase A/C write and read
// consecutive shared rows; S is odd and chosen with the plane stride so that
// both the row threads (stride S) and the column threads (stride 1) of a warp
// hit 32 distinct banks (see SmemLayout).
#pragma once

#include "../spectral_common.h"
#include "fft_line.h"

namespace fastfreq {
namespace plane {

using fft::Cpx;

// Longest line the in-kernel transform takes (run-time sizes keep their
// lines in arrays of this capacity).
constexpr int kMaxLine = 64;

FF_HD int ceil_half(int n) { return (n + 1) / 2; }

// Lines per plane and phase: ceil(H/2) packed row pairs, ceil(W/2) columns.
FF_HD int lines_per_plane(int H, int W) {
  const int a = ceil_half(H), b = ceil_half(W);
  return a > b ? a : b;
}

// Shared-memory row of image row r.
FF_HD int perm_row(int r, int H) { return (r >> 1) + ((r & 1) ? ceil_half(H) : 0); }

// Everything about the launch that is the same for every plane.
struct Geometry {
  int H = 0, W = 0, Wh = 0;
  int L = 0;          // threads per plane
  int G = 0;          // planes per block
  int S = 0;          // shared row stride (words)
  int plane_stride = 0;  // words per plane in shared memory
  int noise_off = 0;     // offset of the noise array inside a plane (0: none)
  int partial_off = 0;   // offset of the per-thread |x| partial sums
  int smem_words = 0;    // whole block, in words of the compute type
  int threads = 0;
};

// Row stride S >= W/2+1, odd, with L (S - 1) = 0 mod 32, and a plane stride
// = L S mod 32: then thread t = g L + l of a warp addresses word
// g P + l S + k (rows) or g P + rr S + j (columns), and both are distinct mod
// 32 across the warp's 32 threads (when L divides into a warp evenly; other L
// at most 2-way).
FF_HD Geometry make_geometry(int H, int W, int G, bool with_noise) {
  Geometry g;
  g.H = H;
  g.W = W;
  g.Wh = W / 2 + 1;
  g.L = lines_per_plane(H, W);
  g.G = G;
  int S = g.Wh | 1;
  for (int tries = 0; tries < 32 && (g.L * (S - 1)) % 32 != 0; ++tries) S += 2;
  if ((g.L * (S - 1)) % 32 != 0) S = g.Wh | 1;  // no such S within reach: plain odd stride
  g.S = S;
  const int arrays = with_noise ? 3 : 2;
  int P = arrays * H * S;
  const int want = (g.L * S) % 32;
  while (P % 32 != want) ++P;
  g.plane_stride = P;
  g.noise_off = with_noise ? 2 * H * S : 0;
  g.partial_off = G * P;
  g.threads = G * g.L;
  g.smem_words = g.partial_off + g.threads;
  return g;
}

// Raw shared memory of Acc words (the kernel; the CPU backend's block buffer).
template <typename T>
struct RawSmem {
  T* p;
  FF_HD T ld(int i) const { return p[i]; }
  FF_HD void st(int i, T v) const { p[i] = v; }
};

// The parameters and tensors of one launch. Acc is the compute type (float,
// or double for double images); In the image element type.
template <typename In, typename Acc>
struct Batch {
  const In* x = nullptr;
  In* out = nullptr;
  int64_t xs[3] = {};   // strides of x (elements) over (B, C, H); W is unit-stride
  int64_t os[3] = {};   // strides of out
  int64_t planes = 0;   // B * C
  const int64_t* band = nullptr;
  const Acc* alpha = nullptr;
  const Acc* alpha_r = nullptr;
  const Acc* noise = nullptr;  // (B, C, H, W/2+1) contiguous, or null: Philox
  const int64_t* seed = nullptr;  // the Philox key, read where the kernel runs (no host sync)
  SpectralParams p;
  bool copy_identity = true;   // planes with gain 1 and no noise are copied through
};

// Per image: the parameters, or `bad` when any is out of range (the image
// then comes back all NaN, as on every backend).
template <typename Acc>
struct ImageParams {
  int band = 0;
  Acc alpha = Acc(0);
  const Acc* ar = nullptr;
  bool bad = false;
  bool identity = false;
};

template <typename In, typename Acc>
FF_HD ImageParams<Acc> image_params(const Batch<In, Acc>& bt, int64_t plane) {
  ImageParams<Acc> ip;
  const SpectralParams& p = bt.p;
  const int64_t b = plane / p.C;
  if (p.has_ps) {
    const int64_t band_v = bt.band[b];  // compared before narrowing: 2**32 is not band 0
    ip.alpha = bt.alpha[b];
    ip.bad = !(band_v >= 0 && band_v <= 2 && ip.alpha >= Acc(0) && ip.alpha <= Acc(1));
    ip.band = ip.bad ? 0 : static_cast<int>(band_v);
  }
  if (p.has_nfd) {
    ip.ar = bt.alpha_r + b * p.n_bands;
    for (int i = 0; i < p.n_bands; ++i) ip.bad |= !(ip.ar[i] >= Acc(0) && ip.ar[i] <= Acc(1));
  }
  ip.identity = bt.copy_identity && !ip.bad && !p.has_nfd && ip.alpha == Acc(0);
  return ip;
}

// Length of a line as a compile-time constant (N > 0) or at run time (N = 0).
template <int N>
FF_HD int line_len(int n) { return N > 0 ? N : n; }

template <int N, int Dir, typename Acc>
FF_HD void line_fft(Cpx<Acc>* z, int n) {
  if constexpr (N > 0) {
    fft::fft_ct<N, Dir>(z);
  } else {
    fft::fft_rt<Dir, kMaxLine>(z, n);
  }
}

template <int N>
constexpr int line_cap() { return N > 0 ? N : kMaxLine; }

// Eq. 11-14 at one bin: the scaled noise std sqrt(sigma (1 - M)) (0 without NFD).
template <typename Acc>
FF_HD Acc noise_std(const SpectralParams& p, const Acc* ar, Acc s) {
  Acc M = Acc(0);
  for (int j = 0; j < p.n_bands; ++j)
    M = control_step(M, ar[j], nfd_hill(s, static_cast<Acc>(p.band_a[j]), static_cast<Acc>(p.band_b[j])));
  return std_from_control(p.sigma, M);
}

// Rows x0 and x1 (x1 ignored without has_r1) into z = x0 + i x1, adding
// sum |x| to l1. Rows are unit-stride (the launcher copies other layouts):
// one base pointer and constant offsets; 64-bit addresses per element (a
// strided loop) cost the kernel about 100 registers.
template <int WC, typename In, typename Acc>
FF_HD void load_row_pair(Cpx<Acc>* z, const In* x0, const In* x1, int W, bool has_r1, Acc& l1) {
FF_UNROLL
  for (int n = 0; n < W; ++n) {
    const Acc a = static_cast<Acc>(x0[n]);
    const Acc v = has_r1 ? static_cast<Acc>(x1[n]) : Acc(0);
    l1 += (a < Acc(0) ? -a : a) + (v < Acc(0) ? -v : v);
    z[n] = {a, v};
  }
}

// The real and imaginary parts of z as rows o0 and o1 (o1 only with has_r1).
template <int WC, typename In, typename Acc>
FF_HD void store_row_pair(const Cpx<Acc>* z, In* o0, In* o1, int W, bool has_r1) {
FF_UNROLL
  for (int n = 0; n < W; ++n) {
    o0[n] = static_cast<In>(z[n].re);
    if (has_r1) o1[n] = static_cast<In>(z[n].im);
  }
}

// ---------------------------------------------------------------- phase A
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_rows_forward(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt,
                              const Smem& sm) {
  const int g = tid / geo.L, l = tid % geo.L;
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W), Wh = W / 2 + 1;
  const int64_t plane = block * geo.G + g;
  const bool active = g < geo.G && plane < bt.planes && l < ceil_half(H);
  Acc l1 = Acc(0);
  if (active) {
    const ImageParams<Acc> ip = image_params(bt, plane);
    const int64_t b = plane / bt.p.C, c = plane % bt.p.C;
    const int r0 = 2 * l, r1 = 2 * l + 1;
    const bool has_r1 = r1 < H;
    const In* x0 = bt.x + b * bt.xs[0] + c * bt.xs[1] + r0 * bt.xs[2];
    Cpx<Acc> z[line_cap<WC>()];
    load_row_pair<WC>(z, x0, has_r1 ? x0 + bt.xs[2] : x0, W, has_r1, l1);
    if (ip.identity) {
      In* o0 = bt.out + b * bt.os[0] + c * bt.os[1] + r0 * bt.os[2];
      store_row_pair<WC>(z, o0, o0 + bt.os[2], W, has_r1);
    } else {
      line_fft<WC, -1>(z, W);
      const int base = g * geo.plane_stride;
      const int row_a = base + l * geo.S, row_b = base + (l + ceil_half(H)) * geo.S;
      const int im = geo.H * geo.S;
FF_UNROLL
      for (int k = 0; k < Wh; ++k) {
        const Cpx<Acc> zk = z[k], zm = z[(W - k) % W];
        // A = (Z[k] + conj Z[-k]) / 2, B = (Z[k] - conj Z[-k]) / 2i; real at
        // k = 0 and k = W/2, where only the real parts are stored
        const Acc ar_ = Acc(0.5) * (zk.re + zm.re), ai = Acc(0.5) * (zk.im - zm.im);
        const Acc br = Acc(0.5) * (zk.im + zm.im), bi = Acc(0.5) * (zm.re - zk.re);
        sm.st(row_a + k, ar_);
        if (k != 0 && 2 * k != W) sm.st(row_a + im + k, ai);
        if (has_r1) {
          sm.st(row_b + k, br);
          if (k != 0 && 2 * k != W) sm.st(row_b + im + k, bi);
        }
      }
      if (bt.p.has_nfd && !ip.bad) {
        // the scaled noise of both rows, std * G, G drawn in Philox groups of
        // four bins (noise_index: every row starts a group)
        const int groups = (Wh + 3) / 4;
        for (int q = 0; q < (has_r1 ? 2 : 1); ++q) {
          const int r = r0 + q;
          const int srow = base + geo.noise_off + (q ? l + ceil_half(H) : l) * geo.S;
          for (int grp = 0; grp < groups; ++grp) {
            Acc sd[4];
            bool any = false;
FF_UNROLL
            for (int e = 0; e < 4; ++e) {
              const int k = 4 * grp + e;
              sd[e] = k < Wh ? noise_std(bt.p, ip.ar, bin_radius<Acc>(r, k, H)) : Acc(0);
              any |= sd[e] > Acc(0);
            }
            float gz[4] = {0.f, 0.f, 0.f, 0.f};
            if (bt.noise == nullptr && any)
              philox_normals4(static_cast<uint64_t>(noise_index(plane * H + r, 4 * grp, Wh)) >> 2,
                              static_cast<uint64_t>(*bt.seed), gz);
FF_UNROLL
            for (int e = 0; e < 4; ++e) {
              const int k = 4 * grp + e;
              if (k >= Wh) continue;
              Acc gv = static_cast<Acc>(gz[e]);
              if (bt.noise != nullptr)
                gv = bt.noise[(plane * H + canonical_row(r, k, H, W)) * Wh + k];
              sm.st(srow + k, sd[e] * gv);
            }
          }
        }
      }
    }
  }
  if (tid < geo.threads) sm.st(geo.partial_off + tid, l1);
}

// ---------------------------------------------------------------- phase B
// Gain, noise and Dir at bin (r, k), with 1/(H W) of the inverse folded in
// (Dir is scale-invariant: gain, noise and threshold scale together).
template <typename Acc>
FF_HD void bin_update(Cpx<Acc>& y, int r, int k, int H, const SpectralParams& p,
                      const ImageParams<Acc>& ip, Acc n, Acc eps, Acc inv_hw) {
  const Acc s = bin_radius<Acc>(r, k, H);
  const Acc gain =
      p.has_ps ? gain_from_mask(ip.alpha, band_curve(ip.band, s * static_cast<Acc>(p.inv_radius_scale)))
               : Acc(1);
  augment_bin(y.re, y.im, gain * inv_hw, n * inv_hw, eps * inv_hw);
  if (ip.bad) y.re = y.im = Acc(NAN);
}

template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_columns(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt,
                         const Smem& sm, Cpx<Acc>* dump = nullptr) {
  const int g = tid / geo.L, j = tid % geo.L;
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W);
  const int64_t plane = block * geo.G + g;
  if (!(g < geo.G && plane < bt.planes && j < ceil_half(W))) return;
  const ImageParams<Acc> ip = image_params(bt, plane);
  if (ip.identity) return;
  const SpectralParams& p = bt.p;
  Acc eps = Acc(0);
  if (p.has_nfd) {
    Acc l1 = Acc(0);
    for (int i = 0; i < geo.L; ++i) l1 += sm.ld(geo.partial_off + g * geo.L + i);
    eps = l1 * static_cast<Acc>(kDirEpsRel);
  }
  const Acc inv_hw = Acc(1) / static_cast<Acc>(H * W);
  const int base = g * geo.plane_stride, im = geo.H * geo.S;
  const bool packed = j == 0;              // columns 0 and W/2 (even W), both real
  const int kn = (W % 2 == 0) ? W / 2 : -1;  // the second real column, if any
  Cpx<Acc> z[line_cap<HC>()];
FF_UNROLL
  for (int r = 0; r < H; ++r) {
    const int a = base + perm_row(r, H) * geo.S;
    if (packed) {
      z[r] = {static_cast<Acc>(sm.ld(a)), kn > 0 ? static_cast<Acc>(sm.ld(a + kn)) : Acc(0)};
    } else {
      z[r] = {static_cast<Acc>(sm.ld(a + j)), static_cast<Acc>(sm.ld(a + im + j))};
    }
  }
  line_fft<HC, -1>(z, H);
  auto noise_at = [&](int r, int k) -> Acc {
    return p.has_nfd ? static_cast<Acc>(sm.ld(base + geo.noise_off + perm_row(r, H) * geo.S + k))
                     : Acc(0);
  };
  if (packed) {
    // split the two real columns' spectra (Hermitian in r: only r <= H/2 is
    // computed, the rest is its conjugate), update, and pack them again
FF_UNROLL
    for (int r = 0; r <= H / 2; ++r) {
      const int rm = (H - r) % H;
      const Cpx<Acc> zr = z[r], zm = z[rm];
      Cpx<Acc> x0 = {Acc(0.5) * (zr.re + zm.re), Acc(0.5) * (zr.im - zm.im)};
      Cpx<Acc> xn = {Acc(0.5) * (zr.im + zm.im), Acc(0.5) * (zm.re - zr.re)};
      if (dump != nullptr) {
        dump[r * (W / 2 + 1)] = x0;
        dump[rm * (W / 2 + 1)] = fft::conj(x0);
        if (kn > 0) {
          dump[r * (W / 2 + 1) + kn] = xn;
          dump[rm * (W / 2 + 1) + kn] = fft::conj(xn);
        }
        continue;
      }
      bin_update(x0, r, 0, H, p, ip, noise_at(r, 0), eps, inv_hw);
      if (kn > 0) bin_update(xn, r, kn, H, p, ip, noise_at(r, kn), eps, inv_hw);
      if (rm == r) {  // self-conjugate rows: the values are real
        z[r] = {x0.re, kn > 0 ? xn.re : Acc(0)};
      } else {
        z[r] = {x0.re - xn.im, x0.im + xn.re};   // x0 + i xn
        z[rm] = {x0.re + xn.im, xn.re - x0.im};  // conj(x0) + i conj(xn)
      }
    }
  } else {
FF_UNROLL
    for (int r = 0; r < H; ++r) {
      if (dump != nullptr) {
        dump[r * (W / 2 + 1) + j] = z[r];
        continue;
      }
      bin_update(z[r], r, j, H, p, ip, noise_at(r, j), eps, inv_hw);
    }
  }
  if (dump != nullptr) return;
  line_fft<HC, 1>(z, H);
FF_UNROLL
  for (int r = 0; r < H; ++r) {
    const int a = base + perm_row(r, H) * geo.S;
    if (packed) {
      sm.st(a, z[r].re);
      if (kn > 0) sm.st(a + kn, z[r].im);
    } else {
      sm.st(a + j, z[r].re);
      sm.st(a + im + j, z[r].im);
    }
  }
}

// ---------------------------------------------------------------- phase C
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_rows_inverse(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt,
                              const Smem& sm) {
  const int g = tid / geo.L, l = tid % geo.L;
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W), Wh = W / 2 + 1;
  const int64_t plane = block * geo.G + g;
  if (!(g < geo.G && plane < bt.planes && l < ceil_half(H))) return;
  const ImageParams<Acc> ip = image_params(bt, plane);
  if (ip.identity) return;
  const int r0 = 2 * l;
  const bool has_r1 = r0 + 1 < H;
  const int base = g * geo.plane_stride, im = geo.H * geo.S;
  const int row_a = base + l * geo.S, row_b = base + (l + ceil_half(H)) * geo.S;
  Cpx<Acc> z[line_cap<WC>()];
FF_UNROLL
  for (int k = 0; k < Wh; ++k) {
    const bool real_bin = k == 0 || 2 * k == W;
    const Acc ar_ = static_cast<Acc>(sm.ld(row_a + k));
    const Acc ai = real_bin ? Acc(0) : static_cast<Acc>(sm.ld(row_a + im + k));
    const Acc br = has_r1 ? static_cast<Acc>(sm.ld(row_b + k)) : Acc(0);
    const Acc bi = (has_r1 && !real_bin) ? static_cast<Acc>(sm.ld(row_b + im + k)) : Acc(0);
    z[k] = {ar_ - bi, ai + br};                       // A + i B
    if (!real_bin) z[W - k] = {ar_ + bi, br - ai};    // conj(A) + i conj(B)
  }
  line_fft<WC, 1>(z, W);
  const int64_t b = plane / bt.p.C, c = plane % bt.p.C;
  In* o0 = bt.out + b * bt.os[0] + c * bt.os[1] + r0 * bt.os[2];
  store_row_pair<WC>(z, o0, o0 + bt.os[2], W, has_r1);
}

}  // namespace plane
}  // namespace fastfreq
