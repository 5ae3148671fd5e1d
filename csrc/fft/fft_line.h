// One-dimensional complex FFTs of one line held by one thread, written once
// as __host__ __device__ code so that the CPU tests run exactly what the GPU
// runs.
//
// Two forms share the radix codelets (butterfly<R>):
//  * fft_ct<N>: the length is a compile-time constant. Every loop is unrolled
//    through static_for, every index is a constant and every twiddle is a
//    constexpr literal, so a line of N complex values lives in registers (no
//    local memory: tests/test_aot.py checks the stack of the kernels that use
//    it). Mixed radix, decimation in time: radix 8, 4, 2 and an odd-radix
//    codelet for any odd prime (3, 5, 7, ...).
//  * fft_rt: any length n <= Cap known only at run time (iterative mixed-radix
//    DIT after a digit-reversal permutation; run-time twiddles). The kernel uses
//    it for sizes without a compile-time specialisation; on the GPU its arrays
//    are in local memory, so it is slower but correct for every size.
//
// Direction: Dir = -1 is the forward transform (numpy.fft.fft, exp(-2 pi i nk/N)),
// Dir = +1 the unnormalised inverse (N * numpy.fft.ifft).
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FF_FFT_HD __host__ __device__ __forceinline__
#else
#define FF_FFT_HD inline
#endif

// Full unrolling of loops with a constant trip count (nvcc); host compilers
// unroll on their own judgement.
#if defined(__CUDACC__)
#define FF_UNROLL _Pragma("unroll")
#else
#define FF_UNROLL
#endif

namespace fastfreq {
namespace fft {

template <typename T>
struct Cpx {
  T re, im;
};

template <typename T>
FF_FFT_HD Cpx<T> add(Cpx<T> a, Cpx<T> b) { return {a.re + b.re, a.im + b.im}; }
template <typename T>
FF_FFT_HD Cpx<T> sub(Cpx<T> a, Cpx<T> b) { return {a.re - b.re, a.im - b.im}; }
template <typename T>
FF_FFT_HD Cpx<T> mul(Cpx<T> a, Cpx<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
template <typename T>
FF_FFT_HD Cpx<T> conj(Cpx<T> a) { return {a.re, -a.im}; }
// i^Dir * a: multiply by -i (Dir = -1) or +i (Dir = +1)
template <int Dir, typename T>
FF_FFT_HD Cpx<T> mul_i(Cpx<T> a) {
  return Dir < 0 ? Cpx<T>{a.im, -a.re} : Cpx<T>{-a.im, a.re};
}

// ------------------------------------------------------------ compile time
// A compile-time integer whose value is usable as a constant expression in
// the body of a static_for lambda (decltype(i)::value).
template <int I>
struct Int {
  static constexpr int value = I;
  FF_FFT_HD constexpr operator int() const { return I; }
};

template <typename F, int... I>
FF_FFT_HD void static_for_impl(F& f, std::integer_sequence<int, I...>) {
  (f(Int<I>{}), ...);
}
// f(Int<0>{}), ..., f(Int<N-1>{}): a loop whose index is a constant.
template <int N, typename F>
FF_FFT_HD void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// cos and sin of 2 pi k / n at compile time, to double precision: quadrant
// reduction on the exact fraction, then Taylor series on [0, pi/2).
constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr double taylor_sin(double x) {
  double term = x, sum = x;
  for (int i = 1; i < 30; ++i) {
    term *= -x * x / ((2 * i) * (2 * i + 1));
    sum += term;
  }
  return sum;
}
constexpr double taylor_cos(double x) {
  double term = 1.0, sum = 1.0;
  for (int i = 1; i < 30; ++i) {
    term *= -x * x / ((2 * i - 1) * (2 * i));
    sum += term;
  }
  return sum;
}
constexpr double cos_frac(long long k, long long n) {
  k = ((k % n) + n) % n;
  const long long q = (4 * k) / n;             // quadrant
  const double a = kTwoPi * static_cast<double>(4 * k - q * n) / static_cast<double>(4 * n);
  return q == 0 ? taylor_cos(a) : q == 1 ? -taylor_sin(a) : q == 2 ? -taylor_cos(a) : taylor_sin(a);
}
constexpr double sin_frac(long long k, long long n) {
  k = ((k % n) + n) % n;
  const long long q = (4 * k) / n;
  const double a = kTwoPi * static_cast<double>(4 * k - q * n) / static_cast<double>(4 * n);
  return q == 0 ? taylor_sin(a) : q == 1 ? taylor_cos(a) : q == 2 ? -taylor_sin(a) : -taylor_cos(a);
}

// a * exp(Dir 2 pi i E / N) with E, N constant: free for E = 0, swaps and
// negations for quarter turns, one complex product otherwise.
template <int E, int N, int Dir, typename T>
FF_FFT_HD Cpx<T> twiddle(Cpx<T> a) {
  constexpr int e = ((E % N) + N) % N;
  if constexpr (e == 0) {
    return a;
  } else if constexpr (4 * e == N) {
    return mul_i<Dir>(a);
  } else if constexpr (2 * e == N) {
    return {-a.re, -a.im};
  } else if constexpr (4 * e == 3 * N) {
    return mul_i<-Dir>(a);
  } else {
    constexpr T c = static_cast<T>(cos_frac(e, N));
    constexpr T s = static_cast<T>(Dir * sin_frac(e, N));
    return {a.re * c - a.im * s, a.re * s + a.im * c};
  }
}

// ------------------------------------------------------------ codelets
// In-place DFT of R values v[0..R-1] in direction Dir.
template <int R, int Dir, typename T>
struct Butterfly;

template <int Dir, typename T>
struct Butterfly<2, Dir, T> {
  FF_FFT_HD static void run(Cpx<T>* v) {
    const Cpx<T> a = v[0], b = v[1];
    v[0] = add(a, b);
    v[1] = sub(a, b);
  }
};

template <int Dir, typename T>
struct Butterfly<4, Dir, T> {
  FF_FFT_HD static void run(Cpx<T>* v) {
    const Cpx<T> s02 = add(v[0], v[2]), d02 = sub(v[0], v[2]);
    const Cpx<T> s13 = add(v[1], v[3]), d13 = mul_i<Dir>(sub(v[1], v[3]));
    v[0] = add(s02, s13);
    v[2] = sub(s02, s13);
    v[1] = add(d02, d13);
    v[3] = sub(d02, d13);
  }
};

template <int Dir, typename T>
struct Butterfly<8, Dir, T> {
  FF_FFT_HD static void run(Cpx<T>* v) {
    // two radix-4 DFTs of the even and odd samples, then one radix-2 stage
    Cpx<T> e[4] = {v[0], v[2], v[4], v[6]};
    Cpx<T> o[4] = {v[1], v[3], v[5], v[7]};
    Butterfly<4, Dir, T>::run(e);
    Butterfly<4, Dir, T>::run(o);
    o[1] = twiddle<1, 8, Dir>(o[1]);
    o[2] = twiddle<2, 8, Dir>(o[2]);
    o[3] = twiddle<3, 8, Dir>(o[3]);
    static_for<4>([&](auto k) {
      v[k] = add(e[k], o[k]);
      v[k + 4] = sub(e[k], o[k]);
    });
  }
};

// Odd radix R (3, 5, 7, any odd prime): pairs j and R-j share their cosine
// terms, so each output pair costs (R-1)/2 real products per component.
template <int R, int Dir, typename T>
struct Butterfly {
  static_assert(R % 2 == 1 && R >= 3, "odd radix");
  FF_FFT_HD static void run(Cpx<T>* v) {
    constexpr int h = (R - 1) / 2;
    Cpx<T> a[h], b[h];
    static_for<h>([&](auto j) {
      a[j] = add(v[j + 1], v[R - 1 - j]);
      b[j] = sub(v[j + 1], v[R - 1 - j]);
    });
    const Cpx<T> x0 = v[0];
    Cpx<T> dc = x0;
    static_for<h>([&](auto j) { dc = add(dc, a[j]); });
    static_for<h>([&](auto k) {
      // out[k+1] = x0 + sum_j a_j cos(t) + Dir i sum_j b_j sin(t), t = 2 pi (j+1)(k+1)/R;
      // out[R-1-k] takes the minus sign of the sine part
      Cpx<T> c = x0, s = {T(0), T(0)};
      static_for<h>([&](auto j) {
        constexpr T cs = static_cast<T>(cos_frac((j + 1) * (k + 1), R));
        constexpr T sn = static_cast<T>(sin_frac((j + 1) * (k + 1), R));
        c.re += a[j].re * cs;
        c.im += a[j].im * cs;
        s.re += b[j].re * sn;
        s.im += b[j].im * sn;
      });
      const Cpx<T> is = mul_i<Dir>(s);
      v[k + 1] = add(c, is);
      v[R - 1 - k] = sub(c, is);
    });
    v[0] = dc;
  }
};

// Radix of the outermost stage for a compile-time length: 8, 4, 2, else the
// smallest odd prime factor.
constexpr int first_radix(int n) {
  if (n % 8 == 0 && n != 16) return 8;
  if (n % 4 == 0) return 4;
  if (n % 2 == 0) return 2;
  for (int p = 3; p * p <= n; p += 2)
    if (n % p == 0) return p;
  return n;
}

// out[0..N-1] = DFT of in[0], in[S], ..., in[(N-1) S] (decimation in time).
template <int N, int Dir, int S, typename T>
FF_FFT_HD void fft_ct_strided(const Cpx<T>* in, Cpx<T>* out) {
  if constexpr (N == 1) {
    out[0] = in[0];
  } else {
    constexpr int R = first_radix(N), M = N / R;
    static_for<R>([&](auto r) { fft_ct_strided<M, Dir, S * R>(in + S * r, out + r * M); });
    static_for<M>([&](auto k2) {
      Cpx<T> v[R];
      static_for<R>([&](auto r) {
        v[r] = twiddle<decltype(r)::value * decltype(k2)::value, N, Dir>(out[r * M + k2]);
      });
      Butterfly<R, Dir, T>::run(v);
      static_for<R>([&](auto k1) { out[k2 + M * k1] = v[k1]; });
    });
  }
}

// In-place FFT of a line of compile-time length N.
template <int N, int Dir, typename T>
FF_FFT_HD void fft_ct(Cpx<T>* a) {
  Cpx<T> in[N];
  static_for<N>([&](auto i) { in[i] = a[i]; });
  fft_ct_strided<N, Dir, 1>(in, a);
}

// ------------------------------------------------------------ run time
template <typename T>
FF_FFT_HD void sincos_2pi_frac(int k, int n, T& c, T& s) {
#if defined(__CUDA_ARCH__)
  sincospi(T(2) * static_cast<T>(k) / static_cast<T>(n), &s, &c);
#else
  const double t = kTwoPi * static_cast<double>(k) / static_cast<double>(n);
  c = static_cast<T>(std::cos(t));
  s = static_cast<T>(std::sin(t));
#endif
}

// Odd radix r known at run time (the generic odd-prime step).
template <int Dir, typename T, int MaxR>
FF_FFT_HD void butterfly_odd_rt(Cpx<T>* v, int r) {
  Cpx<T> out[MaxR];
  for (int k = 0; k < r; ++k) {
    Cpx<T> acc = v[0];
    for (int j = 1; j < r; ++j) {
      T c, s;
      sincos_2pi_frac<T>((j * k) % r, r, c, s);
      acc = add(acc, mul(v[j], Cpx<T>{c, Dir * s}));
    }
    out[k] = acc;
  }
  for (int k = 0; k < r; ++k) v[k] = out[k];
}

template <int Dir, typename T, int MaxR>
FF_FFT_HD void butterfly_rt(Cpx<T>* v, int r) {
  switch (r) {
    case 2: Butterfly<2, Dir, T>::run(v); break;
    case 3: Butterfly<3, Dir, T>::run(v); break;
    case 4: Butterfly<4, Dir, T>::run(v); break;
    case 5: Butterfly<5, Dir, T>::run(v); break;
    case 8: Butterfly<8, Dir, T>::run(v); break;
    default: butterfly_odd_rt<Dir, T, MaxR>(v, r); break;
  }
}

// The run-time factorisation, outermost radix first (the order fft_ct uses).
struct Factors {
  int n = 0, count = 0;
  int f[16] = {};
};
FF_FFT_HD Factors factorise(int n) {
  Factors fs;
  fs.n = n;
  int rest = n;
  while (rest > 1) {
    int r = rest;
    if (rest % 8 == 0 && rest != 16) r = 8;
    else if (rest % 4 == 0) r = 4;
    else if (rest % 2 == 0) r = 2;
    else
      for (int p = 3; p * p <= rest; p += 2)
        if (rest % p == 0) { r = p; break; }
    fs.f[fs.count++] = r;
    rest /= r;
  }
  return fs;
}

// In-place FFT of a[0..n-1], n <= Cap, any n >= 1. Mixed-radix digit reversal
// (the permutation of fft_ct's recursion), then the stages innermost first.
template <int Dir, int Cap, typename T>
FF_FFT_HD void fft_rt(Cpx<T>* a, int n) {
  const Factors fs = factorise(n);
  Cpx<T> tmp[Cap];
  for (int p = 0; p < n; ++p) {
    int src = 0, stride = 1, rem = p, size = n;
    for (int i = 0; i < fs.count; ++i) {
      size /= fs.f[i];
      src += (rem / size) * stride;
      rem %= size;
      stride *= fs.f[i];
    }
    tmp[p] = a[src];
  }
  for (int p = 0; p < n; ++p) a[p] = tmp[p];
  int m = 1;
  for (int s = fs.count - 1; s >= 0; --s) {
    const int r = fs.f[s], span = m * r;
    for (int j = 0; j < n; j += span) {
      for (int k = 0; k < m; ++k) {
        Cpx<T> v[Cap];
        for (int q = 0; q < r; ++q) {
          Cpx<T> x = a[j + k + q * m];
          if (q != 0 && k != 0) {
            T c, sn;
            sincos_2pi_frac<T>(q * k, span, c, sn);
            x = mul(x, Cpx<T>{c, Dir * sn});
          }
          v[q] = x;
        }
        butterfly_rt<Dir, T, Cap>(v, r);
        for (int q = 0; q < r; ++q) a[j + k + q * m] = v[q];
      }
    }
    m = span;
  }
}

}  // namespace fft
}  // namespace fastfreq
