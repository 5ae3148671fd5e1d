// The single-pass plane transform: each (image, channel) plane is read once,
// transformed forward, augmented (spectral_common.h), transformed back and
// written once, with its half spectrum kept in one block's shared memory.
//
// The work is five phases, each a function of (thread index, block's shared
// buffer), separated by a block barrier. The CUDA kernel runs them with
// threadIdx.x; the CPU runs every thread of a block phase by phase in order
// (the `single_pass` backend on CPU tensors, and the tests, which also check
// that no two threads touch the same shared word within a phase).
//
//  A  rows forward:  thread l of a plane loads rows 2l and 2l+1 as one complex
//                    line z = x[2l] + i x[2l+1] (sum |x| for the Dir threshold
//                    on the way), FFTs it, splits the two real rows' spectra
//                    for k = 0..W/2 and writes them to shared memory. Planes
//                    that nothing changes are copied to the output here.
//  B  columns fwd:   thread j FFTs half-spectrum column j; thread 0 packs the
//                    two real columns k = 0 and k = W/2 into one complex line
//                    and splits their spectra after the FFT. Thread 0 also
//                    turns the plane's partial sums into its Dir threshold.
//  C  bins:          the block's threads share out (row, group of four bins)
//                    items, each over every plane of the block: gain and
//                    noise std once per image, then per plane the noise
//                    (Philox groups of four, drawn only where the std is
//                    non-zero), Dir and 1/(HW).
//  D  columns inv:   thread j inverse-FFTs column j (thread 0 again packs the
//                    two real columns, taking rows r > H/2 of them as the
//                    conjugates of rows H - r: the Hermitian rule).
//  E  rows inverse:  thread l rebuilds the full spectrum of rows 2l, 2l+1 from
//                    the half spectrum, inverse-FFTs it and stores both rows.
//
// Splitting the columns' forward pass, the per-bin math and the inverse pass
// into three phases keeps one line (plus its FFT) live per thread at a time:
// the register peak is one FFT, not an FFT plus the noise and gain state.
//
// Shared layout per plane: re and im as two H x S float arrays. Row r of the
// image is stored at shared row perm(r) = r/2 (even r) or ceil(H/2) + r/2 (odd
// r), so that the row threads of phases A/E write and read consecutive shared
// rows; S is odd and chosen with the plane stride so that both the row
// threads (stride S) and the column threads (stride 1) of a warp hit 32
// distinct banks (make_geometry).
#pragma once

#include "../param_draw.h"
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

// Shared-memory row of image row r, and its inverse.
FF_HD int perm_row(int r, int H) { return (r >> 1) + ((r & 1) ? ceil_half(H) : 0); }
FF_HD int row_of_perm(int sr, int H) {
  const int h = ceil_half(H);
  return sr < h ? 2 * sr : 2 * (sr - h) + 1;
}

// Bins per group of the Philox draw (philox_normals4: four normals per call).
constexpr int kGroup = 4;
FF_HD int groups_per_row(int Wh) { return (Wh + kGroup - 1) / kGroup; }

// Everything about the launch that is the same for every plane.
struct Geometry {
  int H = 0, W = 0, Wh = 0;
  int L = 0;             // threads per plane
  int G = 0;             // planes per block
  int S = 0;             // shared row stride (words)
  int plane_stride = 0;  // words per plane in shared memory
  int partial_off = 0;   // offset of the per-thread |x| partial sums
  int eps_off = 0;       // offset of the per-plane Dir thresholds
  int smem_words = 0;    // whole block, in words of the compute type
  int threads = 0;
};

// Row stride S >= W/2+1, odd, with L (S - 1) = 0 mod 32, and a plane stride
// P = L S mod 32: then thread t = g L + l of a warp addresses word
// g P + l S + k (rows) or g P + rr S + j (columns), and both are distinct mod
// 32 across the warp's 32 threads (when L divides into a warp evenly; other L
// at most 2-way).
FF_HD Geometry make_geometry(int H, int W, int G) {
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
  int P = 2 * H * S;
  const int want = (g.L * S) % 32;
  while (P % 32 != want) ++P;
  g.plane_stride = P;
  g.partial_off = G * P;
  g.threads = G * g.L;
  g.eps_off = g.partial_off + g.threads;
  g.smem_words = g.eps_off + G;
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
  // or, instead of band/alpha/alpha_r: the rows of fastfreq::draw_params
  // ([ps_applied, band, alpha, nfd_applied, alpha_r...], row_len each, in the
  // compute type): an image without NFD drawn gets no noise, and one that no
  // transform drew is copied through, not transformed
  const Acc* rows = nullptr;
  int64_t row_len = 0;
};

// Per image: the parameters, or `bad` when any is out of range (the image
// then comes back all NaN, as on every backend).
template <typename Acc>
struct ImageParams {
  int band = 0;
  Acc alpha = Acc(0);
  const Acc* ar = nullptr;
  bool bad = false;
  bool nfd = false;       // NFD applies to this image (every image of an NFD call without rows)
  bool identity = false;
};

template <typename In, typename Acc>
FF_HD ImageParams<Acc> image_params(const Batch<In, Acc>& bt, int64_t plane) {
  ImageParams<Acc> ip;
  const SpectralParams& p = bt.p;
  const int64_t b = plane / p.C;
  const Acc* row = bt.rows != nullptr ? bt.rows + b * bt.row_len : nullptr;
  if (p.has_ps) {
    // compared before narrowing: 2**32 is not band 0 (a row's band is a float:
    // out of range, NaN included, reads as -1)
    const int64_t band_v = row == nullptr ? bt.band[b] : row_band(row);
    ip.alpha = row == nullptr ? bt.alpha[b] : row_alpha(row);
    ip.bad = !(band_v >= 0 && band_v <= 2 && ip.alpha >= Acc(0) && ip.alpha <= Acc(1));
    ip.band = ip.bad ? 0 : static_cast<int>(band_v);
  }
  ip.nfd = p.has_nfd && (row == nullptr || row_nfd(row));
  if (ip.nfd) {
    ip.ar = row == nullptr ? bt.alpha_r + b * p.n_bands : row_weights(row);
    for (int i = 0; i < p.n_bands; ++i) ip.bad |= !(ip.ar[i] >= Acc(0) && ip.ar[i] <= Acc(1));
  }
  ip.identity = bt.copy_identity && !ip.bad && !ip.nfd && ip.alpha == Acc(0);
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

// Which plane and line a thread of a row or column phase works on; active is
// false for threads past the block's planes or the plane's lines.
struct Line {
  int g = 0, i = 0;
  int64_t plane = 0;
  bool active = false;
};
template <typename In, typename Acc>
FF_HD Line line_of(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt, int lines) {
  Line ln;
  ln.g = tid / geo.L;
  ln.i = tid % geo.L;
  ln.plane = block * geo.G + ln.g;
  ln.active = ln.g < geo.G && ln.plane < bt.planes && ln.i < lines;
  return ln;
}

// ---------------------------------------------------------------- phase A
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_rows_forward(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt,
                              const Smem& sm) {
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W), Wh = W / 2 + 1;
  const Line ln = line_of(tid, block, geo, bt, ceil_half(H));
  Acc l1 = Acc(0);
  if (ln.active) {
    const int l = ln.i;
    const ImageParams<Acc> ip = image_params(bt, ln.plane);
    const int64_t b = ln.plane / bt.p.C, c = ln.plane % bt.p.C;
    const int r0 = 2 * l;
    const bool has_r1 = r0 + 1 < H;
    const In* x0 = bt.x + b * bt.xs[0] + c * bt.xs[1] + r0 * bt.xs[2];
    Cpx<Acc> z[line_cap<WC>()];
    load_row_pair<WC>(z, x0, has_r1 ? x0 + bt.xs[2] : x0, W, has_r1, l1);
    if (ip.identity) {
      In* o0 = bt.out + b * bt.os[0] + c * bt.os[1] + r0 * bt.os[2];
      store_row_pair<WC>(z, o0, o0 + bt.os[2], W, has_r1);
    } else {
      line_fft<WC, -1>(z, W);
      const int base = ln.g * geo.plane_stride;
      const int row_a = base + l * geo.S, row_b = base + (l + ceil_half(H)) * geo.S;
      const int im = geo.H * geo.S;
FF_UNROLL
      for (int k = 0; k < Wh; ++k) {
        const Cpx<Acc> zk = z[k], zm = z[(W - k) % W];
        // A = (Z[k] + conj Z[-k]) / 2, B = (Z[k] - conj Z[-k]) / 2i; real at
        // k = 0 and k = W/2, where only the real parts are stored
        const Acc ar_ = Acc(0.5) * (zk.re + zm.re), ai = Acc(0.5) * (zk.im - zm.im);
        const Acc br = Acc(0.5) * (zk.im + zm.im), bi = Acc(0.5) * (zm.re - zk.re);
        const bool real_bin = k == 0 || 2 * k == W;
        sm.st(row_a + k, ar_);
        if (!real_bin) sm.st(row_a + im + k, ai);
        if (has_r1) {
          sm.st(row_b + k, br);
          if (!real_bin) sm.st(row_b + im + k, bi);
        }
      }
    }
  }
  if (tid < geo.threads) sm.st(geo.partial_off + tid, l1);
}

// ---------------------------------------------------------------- phase B
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_columns_forward(int tid, int64_t block, const Geometry& geo,
                                 const Batch<In, Acc>& bt, const Smem& sm) {
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W);
  const Line ln = line_of(tid, block, geo, bt, ceil_half(W));
  if (!ln.active) return;
  const ImageParams<Acc> ip = image_params(bt, ln.plane);
  if (ip.identity) return;
  const int j = ln.i;
  const int base = ln.g * geo.plane_stride, im = geo.H * geo.S;
  const bool packed = j == 0;                 // columns 0 and W/2 (even W), both real
  const int kn = (W % 2 == 0) ? W / 2 : -1;  // the second real column, if any
  if (packed && bt.p.has_nfd) {
    Acc l1 = Acc(0);
    for (int i = 0; i < geo.L; ++i) l1 += sm.ld(geo.partial_off + ln.g * geo.L + i);
    sm.st(geo.eps_off + ln.g, l1 * static_cast<Acc>(kDirEpsRel));
  }
  Cpx<Acc> z[line_cap<HC>()];
FF_UNROLL
  for (int r = 0; r < H; ++r) {
    const int a = base + perm_row(r, H) * geo.S;
    if (packed) {
      z[r] = {sm.ld(a), kn > 0 ? sm.ld(a + kn) : Acc(0)};
    } else {
      z[r] = {sm.ld(a + j), sm.ld(a + im + j)};
    }
  }
  line_fft<HC, -1>(z, H);
FF_UNROLL
  for (int r = 0; r < H; ++r) {
    const int a = base + perm_row(r, H) * geo.S;
    if (packed) {
      // the two real columns' spectra: X0 = (Z[r] + conj Z[-r]) / 2,
      // XN = (Z[r] - conj Z[-r]) / 2i
      const Cpx<Acc> zr = z[r], zm = z[(H - r) % H];
      sm.st(a, Acc(0.5) * (zr.re + zm.re));
      sm.st(a + im, Acc(0.5) * (zr.im - zm.im));
      if (kn > 0) {
        sm.st(a + kn, Acc(0.5) * (zr.im + zm.im));
        sm.st(a + im + kn, Acc(0.5) * (zm.re - zr.re));
      }
    } else {
      sm.st(a + j, z[r].re);
      sm.st(a + im + j, z[r].im);
    }
  }
}

// ---------------------------------------------------------------- phase C
// Eq. 5's gain at radius s (1 without PS).
template <typename Acc>
FF_HD Acc bin_gain(const SpectralParams& p, const ImageParams<Acc>& ip, Acc s) {
  return p.has_ps
             ? gain_from_mask(ip.alpha, band_curve(ip.band, s * static_cast<Acc>(p.inv_radius_scale)))
             : Acc(1);
}

// Whether phase C computes bin (r, k): every half-spectrum bin except rows
// r > H/2 of the self-conjugate columns (k = 0, k = W/2), which phase D takes
// as conjugates of rows H - r.
FF_HD bool computed_bin(int r, int k, int H, int W, int Wh) {
  return k < Wh && !(((k == 0) || (2 * k == W)) && 2 * r > H);
}

// An item is (shared row sr, group of four bins) of EVERY plane of the block:
// the gain and the noise std depend on the image, not the channel, so they
// are computed once per image and reused for its channels (the curves and
// the per-band std are most of this phase's arithmetic). A warp's threads
// take consecutive shared rows (stride S, odd: distinct banks).
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_bins(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt,
                      const Smem& sm) {
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W), Wh = W / 2 + 1;
  const SpectralParams& p = bt.p;
  const int items = groups_per_row(Wh) * H;
  const int im = geo.H * geo.S;
  const Acc inv_hw = Acc(1) / static_cast<Acc>(H * W);
  for (int item = tid; item < items; item += geo.threads) {
    const int sr = item % H, grp = item / H;
    const int r = row_of_perm(sr, H), k0 = kGroup * grp;
    Acc s[kGroup], gain[kGroup], sd[kGroup];
    bool comp[kGroup];
FF_UNROLL
    for (int e = 0; e < kGroup; ++e) {
      comp[e] = computed_bin(r, k0 + e, H, W, Wh);
      s[e] = bin_radius<Acc>(r, k0 + e, H);
      gain[e] = sd[e] = Acc(0);
    }
    ImageParams<Acc> ip;
    int64_t image = -1;
    for (int g = 0; g < geo.G; ++g) {
      const int64_t plane = block * geo.G + g;
      if (plane >= bt.planes) break;
      if (plane / p.C != image) {  // a new image: its gain and noise std
        image = plane / p.C;
        ip = image_params(bt, plane);
FF_UNROLL
        for (int e = 0; e < kGroup; ++e) {
          gain[e] = bin_gain(p, ip, s[e]);
          sd[e] = (ip.nfd && !ip.bad && comp[e]) ? noise_std(p, ip.ar, s[e]) : Acc(0);
        }
      }
      if (ip.identity) continue;
      const int a = g * geo.plane_stride + sr * geo.S + k0;
      const Acc eps = p.has_nfd ? sm.ld(geo.eps_off + g) : Acc(0);
      Acc n[kGroup];
      bool any = false;
FF_UNROLL
      for (int e = 0; e < kGroup; ++e) {
        n[e] = sd[e];
        any |= sd[e] > Acc(0);
      }
      if (any && bt.noise != nullptr) {
FF_UNROLL
        for (int e = 0; e < kGroup; ++e)
          if (sd[e] > Acc(0)) n[e] *= bt.noise[(plane * H + canonical_row(r, k0 + e, H, W)) * Wh + k0 + e];
      } else if (any) {
        // the group's four normals: stream positions noise_index(row, 4 grp + e)
        float gz[kGroup];
        philox_normals4(static_cast<uint64_t>(noise_index(plane * H + r, k0, Wh)) >> 2,
                        static_cast<uint64_t>(*bt.seed), gz);
FF_UNROLL
        for (int e = 0; e < kGroup; ++e) n[e] *= static_cast<Acc>(gz[e]);
      }
FF_UNROLL
      for (int e = 0; e < kGroup; ++e) {
        if (!comp[e]) continue;
        // gain, noise and Dir, with 1/(H W) of the inverse folded in (Dir is
        // scale-invariant: gain, noise and threshold scale together)
        Acc re = sm.ld(a + e), imv = sm.ld(a + im + e);
        augment_bin(re, imv, gain[e] * inv_hw, n[e] * inv_hw, eps * inv_hw);
        if (ip.bad) re = imv = Acc(NAN);
        sm.st(a + e, re);
        sm.st(a + im + e, imv);
      }
    }
  }
}

// ---------------------------------------------------------------- phase D
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_columns_inverse(int tid, int64_t block, const Geometry& geo,
                                 const Batch<In, Acc>& bt, const Smem& sm) {
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W);
  const Line ln = line_of(tid, block, geo, bt, ceil_half(W));
  if (!ln.active) return;
  const ImageParams<Acc> ip = image_params(bt, ln.plane);
  if (ip.identity) return;
  const int j = ln.i;
  const int base = ln.g * geo.plane_stride, im = geo.H * geo.S;
  const bool packed = j == 0;
  const int kn = (W % 2 == 0) ? W / 2 : -1;
  Cpx<Acc> z[line_cap<HC>()];
  if (packed) {
    // z = X0 + i XN from rows r <= H/2; rows r > H/2 are the conjugates of
    // rows H - r, and the self-conjugate rows are real
FF_UNROLL
    for (int r = 0; r <= H / 2; ++r) {
      const int a = base + perm_row(r, H) * geo.S;
      const int rm = (H - r) % H;
      const Cpx<Acc> x0 = {sm.ld(a), sm.ld(a + im)};
      const Cpx<Acc> xn = kn > 0 ? Cpx<Acc>{sm.ld(a + kn), sm.ld(a + im + kn)} : Cpx<Acc>{Acc(0), Acc(0)};
      if (rm == r) {
        z[r] = {x0.re, xn.re};
      } else {
        z[r] = {x0.re - xn.im, x0.im + xn.re};   // x0 + i xn
        z[rm] = {x0.re + xn.im, xn.re - x0.im};  // conj(x0) + i conj(xn)
      }
    }
  } else {
FF_UNROLL
    for (int r = 0; r < H; ++r) {
      const int a = base + perm_row(r, H) * geo.S;
      z[r] = {sm.ld(a + j), sm.ld(a + im + j)};
    }
  }
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

// ---------------------------------------------------------------- phase E
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void phase_rows_inverse(int tid, int64_t block, const Geometry& geo, const Batch<In, Acc>& bt,
                              const Smem& sm) {
  const int H = line_len<HC>(geo.H), W = line_len<WC>(geo.W), Wh = W / 2 + 1;
  const Line ln = line_of(tid, block, geo, bt, ceil_half(H));
  if (!ln.active) return;
  const ImageParams<Acc> ip = image_params(bt, ln.plane);
  if (ip.identity) return;
  const int l = ln.i, r0 = 2 * l;
  const bool has_r1 = r0 + 1 < H;
  const int base = ln.g * geo.plane_stride, im = geo.H * geo.S;
  const int row_a = base + l * geo.S, row_b = base + (l + ceil_half(H)) * geo.S;
  Cpx<Acc> z[line_cap<WC>()];
FF_UNROLL
  for (int k = 0; k < Wh; ++k) {
    const bool real_bin = k == 0 || 2 * k == W;
    const Acc ar_ = sm.ld(row_a + k);
    const Acc ai = real_bin ? Acc(0) : sm.ld(row_a + im + k);
    const Acc br = has_r1 ? sm.ld(row_b + k) : Acc(0);
    const Acc bi = (has_r1 && !real_bin) ? sm.ld(row_b + im + k) : Acc(0);
    z[k] = {ar_ - bi, ai + br};                       // A + i B
    if (!real_bin) z[W - k] = {ar_ + bi, br - ai};    // conj(A) + i conj(B)
  }
  line_fft<WC, 1>(z, W);
  const int64_t b = ln.plane / bt.p.C, c = ln.plane % bt.p.C;
  In* o0 = bt.out + b * bt.os[0] + c * bt.os[1] + r0 * bt.os[2];
  store_row_pair<WC>(z, o0, o0 + bt.os[2], W, has_r1);
}

// Phase `which` (0..kPhases-1) of one thread: the CPU runner and the test
// hooks step through them; the kernel calls the five functions itself with a
// barrier between them.
constexpr int kPhases = 5;
template <int HC, int WC, typename In, typename Acc, typename Smem>
FF_HD void run_phase(int which, int tid, int64_t block, const Geometry& geo,
                     const Batch<In, Acc>& bt, const Smem& sm) {
  switch (which) {
    case 0: phase_rows_forward<HC, WC>(tid, block, geo, bt, sm); break;
    case 1: phase_columns_forward<HC, WC>(tid, block, geo, bt, sm); break;
    case 2: phase_bins<HC, WC>(tid, block, geo, bt, sm); break;
    case 3: phase_columns_inverse<HC, WC>(tid, block, geo, bt, sm); break;
    default: phase_rows_inverse<HC, WC>(tid, block, geo, bt, sm); break;
  }
}

}  // namespace plane
}  // namespace fastfreq
