// The compute cores against naive reference loops written here (double
// accumulation; exact int64 for int8), called the way the ATen glue calls them:
// output ranges split into uneven chunks as at::parallel_for would, strided
// rows, outputs poisoned before the kernel writes them (and their padding
// checked untouched afterwards).
//   nm_linear_block          both paths (gather; nm_pack_x_transposed + strips)
//                            for every M around the switch-over and the strip
//                            width, several N:M patterns, float/double/bf16/fp16
//   quantize_rows_block      exact against the documented formula; zero rows
//                            (scale FLT_MIN), huge / tiny rows, NaN / Inf rows
//   int8_linear_block        exact int32 (unit scales compare exactly), scaled
//                            + bias, the K bound at its extreme
//   int8_weight_linear_block against a double reference
//   dwsep_conv2d_pixels      every level's table (dwsep_pack'd weights): odd
//                            sizes either side of the vector widths, stride 2,
//                            dilation 2, padding, 1x1 / 3x3 / 5x5 / other
//                            kernels, all activations, with / without biases,
//                            float/double/bf16/fp16
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/dwsep_tiled.h"
#include "core/int8.h"
#include "core/kernel_table.h"
#include "core/nm_format.h"
#include "core/nm_linear.h"

using namespace effdl::core;

namespace {

using Rng = std::mt19937_64;

// size_t from a (non-negative) index; also dodges `std::vector<T> v(size_t(n))`
// parsing as a function declaration.
inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

double uniform(Rng& rng, double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

template <typename T>
T from_d(double v) {
  return store<T>(acc_t<T>(v));
}
template <typename T>
double to_d(T v) {
  return double(load(v));
}
template <typename T>
uint64_t bits_of(T v) {
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}

template <typename T>
struct Traits;
template <>
struct Traits<float> {
  static constexpr const char* name = "float";
  static constexpr double out_eps = 0;  // no rounding on store beyond the accumulator's
};
template <>
struct Traits<double> {
  static constexpr const char* name = "double";
  static constexpr double out_eps = 0;
};
template <>
struct Traits<bf16> {
  static constexpr const char* name = "bf16";
  static constexpr double out_eps = 1.0 / 256;  // 2^-8 (> half an ulp, 2^-9)
};
template <>
struct Traits<fp16> {
  static constexpr const char* name = "fp16";
  static constexpr double out_eps = 1.0 / 1024;
};

// Unit roundoff of the accumulator type of T.
template <typename T>
constexpr double acc_eps() {
  return std::is_same_v<acc_t<T>, double> ? 0x1p-53 : 0x1p-24;
}

// NaN in every storage type: a poisoned output that the kernel failed to write
// never passes a tolerance check.
template <typename T>
T poison() {
  return from_d<T>(NAN);
}

// Splits [0, n) into uneven chunks (an empty one included) as parallel_for might.
std::vector<std::pair<int64_t, int64_t>> chunks(int64_t n, Rng& rng) {
  std::vector<int64_t> cuts = {0, n};
  for (int i = 0; i < 3 && n > 0; ++i) cuts.push_back(int64_t(rng() % uint64_t(n + 1)));
  cuts.push_back(n / 2);  // a repeated cut gives an empty chunk
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) out.emplace_back(cuts[i], cuts[i + 1]);
  return out;
}

bool close(double got, double want, double tol) { return std::fabs(got - want) <= tol; }

// ---------------------------------------------------------------- nm_linear

struct NmPattern {
  int n, m;
};

template <typename T>
void test_nm_linear(Rng& rng) {
  using A = acc_t<T>;
  const NmPattern patterns[] = {{2, 4}, {1, 4}, {3, 4}, {1, 2}, {4, 8}, {3, 7}, {5, 16}, {15, 16}, {1, 16}};
  const int64_t Ms[] = {0, 1, 2, 3, 4, 5, 15, 16, 17, 33};
  const int64_t groups_list[] = {1, 3, 10};
  const int64_t Ns[] = {1, 5, 13};
  long cases = 0;
  int variant = 0;
  for (const NmPattern& p : patterns) {
    for (int64_t M : Ms) {
      ++variant;
      const int64_t K = p.m * groups_list[variant % 3];
      const int64_t N = Ns[(variant / 3) % 3];
      const bool with_bias = variant % 2 == 0;
      const int64_t ldx = K + 3, ldy = N + 2;
      const int64_t kept = nm_kept(K, p.n, p.m), mb = nm_meta_bytes(K);

      // x with NaN in the row padding: a read past K poisons the result
      std::vector<T> x(sz(std::max<int64_t>(M * ldx, 1)), poison<T>());
      for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < K; ++k) x[sz(i * ldx + k)] = from_d<T>(uniform(rng, -1, 1));
      // W N:M sparse (some groups below n), compressed row by row
      std::vector<T> w(sz(N * K), from_d<T>(0));
      for (int64_t o = 0; o < N; ++o) {
        for (int64_t g = 0; g < K / p.m; ++g) {
          std::vector<int> pos(sz(p.m));
          for (int i = 0; i < p.m; ++i) pos[sz(i)] = i;
          std::shuffle(pos.begin(), pos.end(), rng);
          const int nnz = (rng() % 3 == 0) ? int(rng() % uint64_t(p.n + 1)) : p.n;
          for (int i = 0; i < nnz; ++i) {
            double v = uniform(rng, 0.1, 1);
            w[sz(o * K + g * p.m + pos[sz(i)])] = from_d<T>((rng() & 1) ? v : -v);
          }
        }
      }
      std::vector<T> values(sz(std::max<int64_t>(N * kept, 1)));
      std::vector<uint8_t> meta(sz(std::max<int64_t>(N * mb, 1)));
      for (int64_t o = 0; o < N; ++o)
        CHECK(nm_compress_row(w.data() + o * K, K, p.n, p.m, values.data() + o * kept,
                              meta.data() + o * mb) == -1);
      std::vector<T> bias(sz(N));
      for (auto& b : bias) b = from_d<T>(uniform(rng, -1, 1));
      const T* bp = with_bias ? bias.data() : nullptr;

      // reference and its error scale
      std::vector<double> ref(sz(M * N)), mag(sz(M * N));
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t o = 0; o < N; ++o) {
          double s = with_bias ? to_d(bias[sz(o)]) : 0, a = std::fabs(s);
          for (int64_t k = 0; k < K; ++k) {
            const double t = to_d(x[sz(i * ldx + k)]) * to_d(w[sz(o * K + k)]);
            s += t;
            a += std::fabs(t);
          }
          ref[sz(i * N + o)] = s;
          mag[sz(i * N + o)] = a;
        }
      }

      const int64_t Mp = nm_padded_rows(M), ld = nm_xt_stride(M);
      CHECK(Mp % kNmPad == 0 && Mp >= M && Mp < M + kNmPad);
      CHECK(ld % kNmPad == 0 && ld >= Mp && (ld / kNmPad) % 2 == 1);
      std::vector<A> xt(sz(std::max<int64_t>(K * ld, 1)), A(NAN));
      for (auto [kb, ke] : chunks(K, rng)) nm_pack_x_transposed(x.data(), ldx, M, kb, ke, xt.data());
      bool packed_ok = true;
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < ld; ++i) {
          const A want = i < M ? load(x[sz(i * ldx + k)]) : A(0);
          packed_ok = packed_ok && bits_of(xt[sz(k * ld + i)]) == bits_of(want);
        }
      CHECK_MSG(packed_ok, "%s nm_pack_x_transposed M=%lld K=%lld", Traits<T>::name, (long long)M,
                (long long)K);

      // both paths for every M: the glue picks gather for M <= kNmGatherMaxRows,
      // but each path must be right on its own
      for (int path = 0; path < 2; ++path) {
        const A* xtp = path == 0 ? nullptr : xt.data();
        std::vector<T> y(sz(std::max<int64_t>(M * ldy, 1)), poison<T>());
        for (auto [ob, oe] : chunks(N, rng)) {
          CHECK(nm_linear_block(x.data(), ldx, xtp, M, K, values.data(), meta.data(), p.n, p.m, bp, y.data(),
                                ldy, ob, oe));
        }
        bool ok = true;
        for (int64_t i = 0; i < M && ok; ++i) {
          for (int64_t o = 0; o < N && ok; ++o) {
            const double want = ref[sz(i * N + o)];
            const double tol = double(kept + 2) * acc_eps<T>() * mag[sz(i * N + o)] +
                               Traits<T>::out_eps * std::fabs(want) + 1e-300;
            const double got = to_d(y[sz(i * ldy + o)]);
            ok = CHECK_MSG(close(got, want, tol),
                           "%s nm_linear %d:%d %s M=%lld K=%lld N=%lld y[%lld,%lld]=%.17g want %.17g",
                           Traits<T>::name, p.n, p.m, path ? "packed" : "gather", (long long)M, (long long)K,
                           (long long)N, (long long)i, (long long)o, got, want);
          }
          for (int64_t o = N; o < ldy; ++o)
            ok = ok && CHECK(bits_of(y[sz(i * ldy + o)]) == bits_of(poison<T>()));
        }
        ++cases;

        // a corrupt mask row: blocks before it succeed, a block holding it fails
        if (N >= 2) {
          std::vector<uint8_t> bad = meta;
          const int64_t ob = N / 2;
          for (int64_t b = 0; b < mb; ++b) bad[sz(ob * mb + b)] = 0xff;
          CHECK(nm_linear_block(x.data(), ldx, xtp, M, K, values.data(), bad.data(), p.n, p.m, bp, y.data(),
                                ldy, 0, ob));
          CHECK(!nm_linear_block(x.data(), ldx, xtp, M, K, values.data(), bad.data(), p.n, p.m, bp, y.data(),
                                 ldy, ob, N));
        }
      }
    }
  }
  CHECK(cases > 100);
}

// ----------------------------------------------------------- quantize_rows

template <typename T>
void test_quantize_rows(Rng& rng) {
  const int64_t Ks[] = {0, 1, 7, 64, 257};
  // largest magnitude the type holds comfortably, and a tiny one (subnormal in
  // fp32 / bf16, the bottom of the fp16 range)
  const double huge = std::is_same_v<T, fp16> ? 6.0e4 : 1.0e30;
  const double tiny = std::is_same_v<T, fp16> ? 1.0e-7 : 1.0e-40;
  for (int64_t K : Ks) {
    const int64_t R = 14, ldx = K + 2, ldq = K + 3;
    std::vector<T> x(sz(R * ldx), poison<T>());
    for (int64_t r = 0; r < R; ++r) {
      const int kind = int(r % 7);
      for (int64_t k = 0; k < K; ++k) {
        double v = 0;
        switch (kind) {
          case 0:  // zero row (with -0)
            v = (k % 2) ? -0.0 : 0.0;
            break;
          case 1:  // ordinary
            v = uniform(rng, -3, 3);
            break;
          case 2:  // large
            v = huge * uniform(rng, -1, 1);
            break;
          case 3:  // tiny: the scale clamps to FLT_MIN
            v = tiny * uniform(rng, -1, 1);
            break;
          case 4:  // one nonzero
            v = (k == K / 2) ? -2.5 : 0.0;
            break;
          case 5:  // small
            v = uniform(rng, -1, 1) * 1e-3;
            break;
          default:  // multiples of 1/64: exact ties of x / s happen
            v = std::nearbyint(uniform(rng, -127, 127)) / 64;
            break;
        }
        x[sz(r * ldx + k)] = from_d<T>(v);
      }
    }
    std::vector<int8_t> q(sz(R * ldq), int8_t(99));
    std::vector<float> scale(sz(R), NAN);
    for (auto [rb, re] : chunks(R, rng))
      CHECK(quantize_rows_block(x.data(), ldx, K, q.data(), ldq, scale.data(), rb, re) == -1);
    for (int64_t r = 0; r < R; ++r) {
      // the documented formula, in the kernel's float arithmetic
      float absmax = 0;
      for (int64_t k = 0; k < K; ++k) absmax = std::max(absmax, std::fabs(float(load(x[sz(r * ldx + k)]))));
      const float s = std::max(absmax / 127.f, FLT_MIN);
      CHECK_MSG(bits_of(scale[sz(r)]) == bits_of(s), "%s quantize K=%lld row %lld: scale %.9g want %.9g",
                Traits<T>::name, (long long)K, (long long)r, double(scale[sz(r)]), double(s));
      CHECK(s > 0 && std::isfinite(s));
      int qmax = 0;
      bool ok = true;
      for (int64_t k = 0; k < K && ok; ++k) {
        const float v = float(load(x[sz(r * ldx + k)]));
        const int want = int(std::min(127.f, std::max(-127.f, std::nearbyint(v / s))));
        const int got = q[sz(r * ldq + k)];
        ok = CHECK_MSG(got == want, "%s quantize K=%lld q[%lld,%lld]=%d want %d (x=%.9g s=%.9g)",
                       Traits<T>::name, (long long)K, (long long)r, (long long)k, got, want, double(v),
                       double(s));
        // and in double: q * s is within half a step of x (plus the rounding of
        // x / s in float, which decides near-ties: |x / s| <= 127, so 127 * 2^-24)
        ok = ok &&
             CHECK_MSG(std::fabs(double(got) * double(s) - double(v)) <= (0.5 + 128 * 0x1p-24) * double(s),
                       "%s K=%lld row %lld: q=%d s=%.9g x=%.9g", Traits<T>::name, (long long)K, (long long)r,
                       got, double(s), double(v));
        qmax = std::max(qmax, std::abs(got));
      }
      for (int64_t k = K; k < ldq; ++k) CHECK(q[sz(r * ldq + k)] == 99);  // padding untouched
      if (r % 7 == 0) CHECK(scale[sz(r)] == FLT_MIN);                     // zero row
      if (K > 0 && absmax / 127.f >= FLT_MIN)
        CHECK_MSG(qmax == 127, "row %lld: max |q| %d", (long long)r, qmax);
    }
  }

  // NaN / Inf rows: each chunk reports its first bad row; good rows before it are written
  {
    const int64_t R = 12, K = 9;
    std::vector<T> x(sz(R * K));
    for (auto& v : x) v = from_d<T>(uniform(rng, -1, 1));
    x[sz(5 * K + 3)] = from_d<T>(NAN);
    x[sz(6 * K + 8)] = from_d<T>(INFINITY);
    x[sz(9 * K + 0)] = from_d<T>(-INFINITY);
    std::vector<int8_t> q(sz(R * K));
    std::vector<float> scale(sz(R), NAN);
    CHECK(quantize_rows_block(x.data(), K, K, q.data(), K, scale.data(), 0, 4) == -1);
    CHECK(quantize_rows_block(x.data(), K, K, q.data(), K, scale.data(), 4, 8) == 5);
    CHECK(std::isfinite(scale[4]));
    CHECK(quantize_rows_block(x.data(), K, K, q.data(), K, scale.data(), 6, 7) == 6);
    CHECK(quantize_rows_block(x.data(), K, K, q.data(), K, scale.data(), 7, 12) == 9);
    CHECK(quantize_rows_block(x.data(), K, K, q.data(), K, scale.data(), 10, 12) == -1);
    CHECK(quantize_rows_block(x.data(), K, K, q.data(), K, scale.data(), 3, 3) == -1);
  }
}

// ------------------------------------------------------------------ int8

template <typename Out>
void test_int8_linear(Rng& rng) {
  struct Shape {
    int64_t M, K, N;
  };
  const Shape shapes[] = {{1, 1, 1},     {3, 5, 7},  {4, 64, 16}, {17, 259, 33},
                          {2, 1000, 17}, {5, 3, 40}, {0, 8, 5}};
  for (const Shape& sh : shapes) {
    const int64_t M = sh.M, K = sh.K, N = sh.N, ldq = K + 1, ldo = N + 1;
    std::vector<int8_t> q(sz(std::max<int64_t>(M * ldq, 1))), wq(sz(N * K));
    for (auto& v : q) v = int8_t(int(rng() % 256) - 128);
    for (auto& v : wq) v = int8_t(int(rng() % 256) - 128);
    std::vector<int64_t> acc(sz(M * N));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t o = 0; o < N; ++o) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += int64_t(q[sz(i * ldq + k)]) * int64_t(wq[sz(o * K + k)]);
        acc[sz(i * N + o)] = s;
      }
    std::vector<float> qs(sz(std::max<int64_t>(M, 1))), ws(sz(N)), bias(sz(N));
    std::vector<float> ones_m(sz(std::max<int64_t>(M, 1)), 1.f), ones_n(sz(N), 1.f);
    for (auto& v : qs) v = float(uniform(rng, 1e-3, 0.1));
    for (auto& v : ws) v = float(uniform(rng, 1e-3, 0.1));
    for (auto& v : bias) v = float(uniform(rng, -2, 2));

    // unit scales, no bias: the int32 sum itself, compared exactly
    {
      std::vector<Out> out(sz(std::max<int64_t>(M * ldo, 1)), poison<Out>());
      for (auto [ob, oe] : chunks(N, rng))
        int8_linear_block(q.data(), ldq, ones_m.data(), M, K, wq.data(), ones_n.data(), nullptr, out.data(),
                          ldo, ob, oe);
      bool ok = true;
      for (int64_t i = 0; i < M && ok; ++i) {
        for (int64_t o = 0; o < N && ok; ++o) {
          const Out want = store_from_float<Out>(float(acc[sz(i * N + o)]));
          ok = CHECK_MSG(bits_of(out[sz(i * ldo + o)]) == bits_of(want),
                         "%s int8_linear M=%lld K=%lld N=%lld [%lld,%lld]: %.17g want %lld",
                         Traits<Out>::name, (long long)M, (long long)K, (long long)N, (long long)i,
                         (long long)o, to_d(out[sz(i * ldo + o)]), (long long)acc[sz(i * N + o)]);
        }
        ok = ok && CHECK(bits_of(out[sz(i * ldo + N)]) == bits_of(poison<Out>()));
      }
    }
    // per-row x per-channel scales and bias
    for (int with_bias = 0; with_bias < 2; ++with_bias) {
      std::vector<Out> out(sz(std::max<int64_t>(M * ldo, 1)), poison<Out>());
      for (auto [ob, oe] : chunks(N, rng))
        int8_linear_block(q.data(), ldq, qs.data(), M, K, wq.data(), ws.data(),
                          with_bias ? bias.data() : nullptr, out.data(), ldo, ob, oe);
      bool ok = true;
      for (int64_t i = 0; i < M && ok; ++i) {
        for (int64_t o = 0; o < N && ok; ++o) {
          const double prod = double(acc[sz(i * N + o)]) * double(qs[sz(i)]) * double(ws[sz(o)]);
          const double b = with_bias ? double(bias[sz(o)]) : 0;
          const double want = prod + b;
          const double tol =
              5 * 0x1p-24 * (std::fabs(prod) + std::fabs(b)) + Traits<Out>::out_eps * std::fabs(want) + 1e-30;
          const double got = to_d(out[sz(i * ldo + o)]);
          ok = CHECK_MSG(close(got, want, tol),
                         "%s int8_linear scaled M=%lld K=%lld N=%lld [%lld,%lld]: %.17g want %.17g",
                         Traits<Out>::name, (long long)M, (long long)K, (long long)N, (long long)i,
                         (long long)o, got, want);
        }
      }
    }
  }
}

// The documented K bound, at its extreme: |acc| reaches K * 128 * 128 without
// overflowing int32 (UBSan would report a signed overflow).
void test_int8_linear_k_bound() {
  static_assert(kInt8MaxK * 128 * 128 <= INT32_MAX, "kInt8MaxK keeps the int32 sum exact");
  static_assert((kInt8MaxK + 1) * 128 * 128 > INT32_MAX, "kInt8MaxK is the largest such K");
  const int64_t K = kInt8MaxK, N = 3;
  std::vector<int8_t> q(sz(K), int8_t(-128)), wq(sz(N * K));
  for (int64_t k = 0; k < K; ++k) {
    wq[sz(k)] = -128;     // sum = +K * 16384 = 2147467264
    wq[sz(K + k)] = 127;  // sum = -K * 16256
    wq[sz(2 * K + k)] = (k % 2) ? 127 : -128;
  }
  const float one = 1.f, ones[N] = {1.f, 1.f, 1.f};
  float out[N];
  int8_linear_block(q.data(), K, &one, 1, K, wq.data(), ones, nullptr, out, N, 0, N);
  const int64_t want[N] = {K * 16384, -K * 16256, (K / 2) * -128 * 127 + (K - K / 2) * 16384};
  for (int64_t o = 0; o < N; ++o)
    CHECK_MSG(out[o] == float(want[o]), "K bound: out[%lld]=%.9g want %lld", (long long)o, double(out[o]),
              (long long)want[o]);
}

template <typename Out>
void test_int8_weight_linear(Rng& rng) {
  struct Shape {
    int64_t M, K, N;
  };
  const Shape shapes[] = {{1, 1, 1}, {2, 7, 9}, {5, 64, 8}, {16, 33, 17}, {3, 777, 12}, {0, 4, 3}};
  for (const Shape& sh : shapes) {
    const int64_t M = sh.M, K = sh.K, N = sh.N, ldx = K + 2, ldo = N + 3;
    std::vector<float> x(sz(std::max<int64_t>(M * ldx, 1)), NAN);  // NaN padding: reads past K show up
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) x[sz(i * ldx + k)] = float(uniform(rng, -2, 2));
    std::vector<int8_t> wq(sz(N * K));
    for (auto& v : wq) v = int8_t(int(rng() % 256) - 128);
    std::vector<float> ws(sz(N)), bias(sz(N));
    for (auto& v : ws) v = float(uniform(rng, 1e-3, 0.05));
    for (auto& v : bias) v = float(uniform(rng, -1, 1));
    for (int with_bias = 0; with_bias < 2; ++with_bias) {
      std::vector<Out> out(sz(std::max<int64_t>(M * ldo, 1)), poison<Out>());
      for (auto [ob, oe] : chunks(N, rng))
        int8_weight_linear_block(x.data(), ldx, M, K, wq.data(), ws.data(), with_bias ? bias.data() : nullptr,
                                 out.data(), ldo, ob, oe);
      bool ok = true;
      for (int64_t i = 0; i < M && ok; ++i) {
        for (int64_t o = 0; o < N && ok; ++o) {
          double s = 0, a = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double t = double(x[sz(i * ldx + k)]) * double(wq[sz(o * K + k)]);
            s += t;
            a += std::fabs(t);
          }
          const double b = with_bias ? double(bias[sz(o)]) : 0;
          const double want = s * double(ws[sz(o)]) + b;
          const double tol = double(K + 3) * 0x1p-24 * (a * double(ws[sz(o)]) + std::fabs(b)) +
                             Traits<Out>::out_eps * std::fabs(want) + 1e-30;
          const double got = to_d(out[sz(i * ldo + o)]);
          ok = CHECK_MSG(close(got, want, tol),
                         "%s int8_weight_linear M=%lld K=%lld N=%lld [%lld,%lld]: %.17g want %.17g",
                         Traits<Out>::name, (long long)M, (long long)K, (long long)N, (long long)i,
                         (long long)o, got, want);
        }
        for (int64_t o = N; o < ldo && ok; ++o)
          ok = CHECK(bits_of(out[sz(i * ldo + o)]) == bits_of(poison<Out>()));
      }
    }
  }
}

// ---------------------------------------------------------------- dwsep

struct ConvCase {
  int64_t B, C, H, W, Cout, kh, kw, sh, sw, ph, pw, dh, dw;
};

double activate_ref(double v, Activation a) {
  if (a == Activation::kRelu) return v > 0 ? v : 0;
  if (a == Activation::kRelu6) return std::min(6.0, std::max(0.0, v));
  return v;
}

template <typename T>
void test_dwsep(const KernelTable& table, Rng& rng) {
  using A = acc_t<T>;
  std::vector<ConvCase> cases = {
      {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},     // 1x1 everything
      {1, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1},     // "same" 3x3
      {2, 5, 7, 9, 3, 3, 3, 2, 2, 1, 1, 1, 1},     // stride 2, odd sizes
      {1, 8, 9, 7, 16, 3, 3, 1, 1, 2, 2, 2, 2},    // dilation 2
      {2, 3, 6, 5, 7, 5, 5, 2, 2, 2, 2, 1, 1},     // 5x5 stride 2
      {1, 4, 4, 6, 2, 3, 1, 2, 1, 0, 1, 1, 2},     // asymmetric kernel / stride / pad / dilation
      {3, 7, 11, 13, 5, 3, 3, 1, 2, 1, 0, 2, 1},   // mixed
      {1, 2, 3, 3, 2, 3, 3, 1, 1, 3, 3, 1, 1},     // padding wider than the kernel reach: bias-only outputs
      {1, 17, 8, 8, 1, 3, 3, 2, 2, 1, 1, 1, 1},    // Cout 1, C odd
      {2, 1, 9, 1, 3, 3, 1, 2, 1, 1, 0, 2, 1},     // C 1, W 1
      {2, 33, 9, 10, 65, 3, 3, 1, 1, 1, 1, 1, 1},  // C, Cout just past multiples of 8 / 16
      {1, 40, 7, 7, 200, 3, 3, 1, 1, 1, 1, 1, 1},  // several panels of output channels, the last partial
      {2, 24, 12, 12, 48, 5, 5, 2, 2, 2, 2, 1, 1}, // 5x5 stride 2, interior pixels
      {1, 31, 6, 6, 24, 7, 7, 1, 1, 3, 3, 1, 1},   // 7x7: the run-time kernel size path
      {3, 16, 30, 30, 16, 3, 3, 1, 1, 1, 1, 1, 1}, // more pixels than a micro-tile / block holds
      {2, 0, 4, 4, 5, 3, 3, 1, 1, 1, 1, 1, 1},     // no input channels: the pointwise bias alone
  };
  // plus a seeded sweep of random shapes
  for (int added = 0; added < 40;) {
    auto pick = [&](int64_t lo, int64_t hi) { return lo + int64_t(rng() % uint64_t(hi - lo + 1)); };
    const int64_t ks[] = {1, 3, 5};
    ConvCase c{pick(1, 3), pick(1, 40), pick(1, 12), pick(1, 12), pick(1, 70), ks[rng() % 3], ks[rng() % 3],
               pick(1, 3), pick(1, 3),  pick(0, 3),  pick(0, 3),  pick(1, 3), pick(1, 3)};
    if (c.H + 2 * c.ph - c.dh * (c.kh - 1) < 1 || c.W + 2 * c.pw - c.dw * (c.kw - 1) < 1) continue;
    cases.push_back(c);
    ++added;
  }
  const Activation acts[] = {Activation::kNone, Activation::kRelu, Activation::kRelu6};
  long clipped6 = 0, zeroed = 0;
  for (const ConvCase& c : cases) {
    DwsepShape s{};
    s.B = c.B, s.C = c.C, s.H = c.H, s.W = c.W, s.Cout = c.Cout, s.kh = c.kh, s.kw = c.kw;
    s.stride_h = c.sh, s.stride_w = c.sw, s.pad_h = c.ph, s.pad_w = c.pw, s.dil_h = c.dh, s.dil_w = c.dw;
    s.Ho = (c.H + 2 * c.ph - c.dh * (c.kh - 1) - 1) / c.sh + 1;
    s.Wo = (c.W + 2 * c.pw - c.dw * (c.kw - 1) - 1) / c.sw + 1;
    if (!CHECK(s.Ho >= 1 && s.Wo >= 1)) continue;
    const int64_t C = c.C, Cout = c.Cout, taps = c.kh * c.kw;

    std::vector<T> x(sz(c.B * c.H * c.W * C));
    for (auto& v : x) v = from_d<T>(uniform(rng, -3, 3));
    // canonical layouts: dw [C][kh*kw], pw [Cout][C]
    std::vector<A> dw_w(sz(taps * C)), dw_b(sz(C)), pw_w(sz(C * Cout)), pw_b(sz(Cout));
    for (auto& v : dw_w) v = A(uniform(rng, -1.5, 1.5));
    for (auto& v : dw_b) v = A(uniform(rng, -1, 1));
    for (auto& v : pw_w) v = A(uniform(rng, -1, 1));
    for (auto& v : pw_b) v = A(uniform(rng, -1, 1));

    for (Activation da : acts) {
      for (Activation pa : acts) {
        for (int with_bias = 0; with_bias < 2; ++with_bias) {
          // poisoned, so that a value the packing failed to write shows
          std::vector<A> packed(sz(dwsep_packed_size(s)), A(NAN));
          const DwsepPacked<A> w = dwsep_pack<A>(s, dw_w.data(), with_bias ? dw_b.data() : nullptr, pw_w.data(),
                                                 with_bias ? pw_b.data() : nullptr, packed.data());
          const int64_t pixels = c.B * s.Ho * s.Wo;
          std::vector<T> y(sz(pixels * Cout), poison<T>());
          for (auto [pb, pe] : chunks(pixels, rng))
            table.floats<T>().dwsep_conv2d_pixels(s, x.data(), w, da, pa, y.data(), pb, pe);

          bool ok = true;
          std::vector<double> d(sz(C)), dmag(sz(C));
          for (int64_t b = 0; b < c.B && ok; ++b) {
            for (int64_t oh = 0; oh < s.Ho && ok; ++oh) {
              for (int64_t ow = 0; ow < s.Wo && ok; ++ow) {
                for (int64_t ch = 0; ch < C; ++ch) {
                  double acc = with_bias ? double(dw_b[sz(ch)]) : 0, mag = std::fabs(acc);
                  for (int64_t i = 0; i < c.kh; ++i) {
                    for (int64_t j = 0; j < c.kw; ++j) {
                      const int64_t ih = oh * c.sh - c.ph + i * c.dh, iw = ow * c.sw - c.pw + j * c.dw;
                      if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                      const double t = to_d(x[sz(((b * c.H + ih) * c.W + iw) * C + ch)]) *
                                       double(dw_w[sz(ch * taps + i * c.kw + j)]);
                      acc += t;
                      mag += std::fabs(t);
                    }
                  }
                  d[sz(ch)] = activate_ref(acc, da);
                  dmag[sz(ch)] = mag;
                }
                for (int64_t co = 0; co < Cout && ok; ++co) {
                  double acc = with_bias ? double(pw_b[sz(co)]) : 0, mag = std::fabs(acc);
                  for (int64_t ch = 0; ch < C; ++ch) {
                    const double wv = double(pw_w[sz(co * C + ch)]);
                    acc += d[sz(ch)] * wv;
                    mag += (dmag[sz(ch)] + std::fabs(d[sz(ch)])) * std::fabs(wv);
                  }
                  const double want = activate_ref(acc, pa);
                  const double tol = double(taps + C + 4) * acc_eps<T>() * mag + Traits<T>::out_eps * std::fabs(want) +
                                     1e-300;
                  const double got = to_d(y[sz(((b * s.Ho + oh) * s.Wo + ow) * Cout + co)]);
                  ok = CHECK_MSG(
                      close(got, want, tol),
                      "%s %s dwsep B=%lld C=%lld H=%lld W=%lld Cout=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld "
                      "d=%lld,%lld act=%d,%d bias=%d y[%lld,%lld,%lld,%lld]=%.17g want %.17g",
                      isa_name(table.isa), Traits<T>::name, (long long)c.B, (long long)C, (long long)c.H,
                      (long long)c.W, (long long)Cout, (long long)c.kh, (long long)c.kw, (long long)c.sh,
                      (long long)c.sw, (long long)c.ph, (long long)c.pw, (long long)c.dh, (long long)c.dw, int(da),
                      int(pa), with_bias, (long long)b, (long long)oh, (long long)ow, (long long)co, got, want);
                  if (pa == Activation::kRelu6 && got == 6) ++clipped6;
                  if (pa != Activation::kNone && got == 0) ++zeroed;
                }
              }
            }
          }
        }
      }
    }
  }
  // the activations were exercised, not just passed through
  CHECK(clipped6 > 0);
  CHECK(zeroed > 0);
}

// NaN through the activations: PyTorch (and effdl.reference) propagate NaN,
// F.relu(nan) = nan and F.relu6(nan) = nan, and so must the fused kernel.
template <typename T>
void test_dwsep_nan_propagation(const KernelTable& table) {
  DwsepShape s{};
  s.B = 1, s.C = 1, s.H = 1, s.W = 1, s.Cout = 1, s.Ho = 1, s.Wo = 1, s.kh = 1, s.kw = 1;
  s.stride_h = s.stride_w = s.dil_h = s.dil_w = 1;
  const T x = from_d<T>(NAN);
  const acc_t<T> one = 1;
  std::vector<acc_t<T>> packed(sz(dwsep_packed_size(s)));
  const DwsepPacked<acc_t<T>> w = dwsep_pack<acc_t<T>>(s, &one, nullptr, &one, nullptr, packed.data());
  auto run = [&](Activation da, Activation pa) {
    T y = from_d<T>(0);
    table.floats<T>().dwsep_conv2d_pixels(s, &x, w, da, pa, &y, 0, 1);
    return to_d(y);
  };
  CHECK(std::isnan(run(Activation::kNone, Activation::kNone)));
  CHECK(std::isnan(run(Activation::kRelu, Activation::kNone)));
  CHECK(std::isnan(run(Activation::kRelu6, Activation::kNone)));
  CHECK(std::isnan(run(Activation::kNone, Activation::kRelu)));
  CHECK(std::isnan(run(Activation::kNone, Activation::kRelu6)));
}

}  // namespace

int main() {
  Rng rng(12345);
  test_nm_linear<float>(rng);
  test_nm_linear<double>(rng);
  test_nm_linear<bf16>(rng);
  test_nm_linear<fp16>(rng);
  test_quantize_rows<float>(rng);
  test_quantize_rows<double>(rng);
  test_quantize_rows<bf16>(rng);
  test_quantize_rows<fp16>(rng);
  test_int8_linear<float>(rng);
  test_int8_linear<double>(rng);
  test_int8_linear<bf16>(rng);
  test_int8_linear<fp16>(rng);
  test_int8_linear_k_bound();
  test_int8_weight_linear<float>(rng);
  test_int8_weight_linear<double>(rng);
  test_int8_weight_linear<bf16>(rng);
  test_int8_weight_linear<fp16>(rng);
  for (Isa isa : isa_available()) {
    const KernelTable& table = *kernel_table(isa);
    test_dwsep<float>(table, rng);
    test_dwsep<double>(table, rng);
    test_dwsep<bf16>(table, rng);
    test_dwsep<fp16>(table, rng);
    test_dwsep_nan_propagation<float>(table);
    test_dwsep_nan_propagation<bf16>(table);
    test_dwsep_nan_propagation<fp16>(table);
  }
  return effdl_test::finish("test_kernels");
}
