// int8_weight_linear_block of every level this build and CPU run (the AVX2 /
// AVX-512 kernels of core/int8_weight_x86.h, the portable template elsewhere),
// and int8_weight_linear_bf16_block where the level has one (avx512_bf16),
// against a double reference, called the way the glue calls them: output rows
// split into uneven chunks, strided x rows (NaN past K: a read past the row
// shows) and output rows (poisoned padding must stay untouched).
//   shapes around the tiles (4 weight rows x 2 or 4 rows of x for fp32 x,
//   3 x 8 for bf16 x), K around the 8 / 16 / 32 lanes, and more rows of x
//   than one L2 block (the block loop)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "int8_problem.h"
#include "levels.h"

using namespace effdl::core;

namespace {

using effdl_test::bits_of;
using effdl_test::Rng;
using effdl_test::sz;

double to_d(float v) { return v; }
double to_d(bf16 v) { return to_float(v); }

// x's values as the kernel reads them: fp32, or rounded to bf16
float as_x(float v, float) { return v; }
bf16 as_x(float v, bf16) { return bf16_from_float(v); }

// The block under test: fp32 x through the level's int8_weight_linear_block
// for Out, bf16 x through its int8_weight_linear_bf16_block (Out = bf16).
template <typename X, typename Out>
void run_block(const KernelTable& t, const X* x, int64_t ldx, int64_t M, int64_t K, const int8_t* wq,
               const float* ws, const float* bias, Out* out, int64_t ldo, int64_t b, int64_t e) {
  if constexpr (std::is_same_v<X, float>)
    t.int8<Out>().int8_weight_linear_block(x, ldx, M, K, wq, ws, bias, out, ldo, b, e);
  else
    t.int8_weight_linear_bf16_block(x, ldx, M, K, wq, ws, bias, out, ldo, b, e);
}

template <typename Out, typename X = float>
void check_level(const KernelTable& t, Rng& rng, int64_t M, int64_t K, int64_t N, double out_eps) {
  const int64_t ldx = K + 5, ldo = N + 3;
  std::uniform_real_distribution<float> xd(-2.f, 2.f), sd(1e-3f, 0.05f);
  std::vector<X> x(sz(std::max<int64_t>(M * ldx, 1)), as_x(NAN, X{}));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) x[sz(i * ldx + k)] = as_x(xd(rng), X{});
  std::vector<int8_t> wq(sz(N * K));
  for (auto& v : wq) v = int8_t(int(rng() % 256) - 128);
  std::vector<float> ws(sz(N)), bias(sz(N));
  for (auto& v : ws) v = sd(rng);
  for (auto& v : bias) v = xd(rng);
  const Out poison = effdl_test::poison<Out>();
  for (int with_bias = 0; with_bias < 2; ++with_bias) {
    std::vector<Out> out(sz(std::max<int64_t>(M * ldo, 1)), poison);
    for (auto [b, e] : effdl_test::chunks(N, rng, 7))
      run_block(t, x.data(), ldx, M, K, wq.data(), ws.data(), with_bias ? bias.data() : nullptr, out.data(), ldo,
                b, e);
    bool ok = true;
    for (int64_t i = 0; i < M && ok; ++i) {
      for (int64_t o = 0; o < N && ok; ++o) {
        double s = 0, a = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double term = to_d(x[sz(i * ldx + k)]) * double(wq[sz(o * K + k)]);
          s += term;
          a += std::fabs(term);
        }
        const double bv = with_bias ? double(bias[sz(o)]) : 0.0;
        const double want = s * double(ws[sz(o)]) + bv;
        const double tol = double(K + 3) * 0x1p-24 * (a * double(ws[sz(o)]) + std::fabs(bv)) +
                           out_eps * std::fabs(want) + 1e-30;
        const double got = to_d(out[sz(i * ldo + o)]);
        ok = CHECK_MSG(std::fabs(got - want) <= tol, "%s M=%lld K=%lld N=%lld [%lld,%lld]: %.17g want %.17g",
                       isa_name(t.isa), (long long)M, (long long)K, (long long)N, (long long)i, (long long)o, got,
                       want);
      }
      for (int64_t o = N; o < ldo && ok; ++o) ok = CHECK(bits_of(out[sz(i * ldo + o)]) == bits_of(poison));
    }
  }
}

}  // namespace

int main() {
  Rng rng(20261130);
  effdl_test::for_each_level([&](const KernelTable& t) {
    for (int64_t M : {0, 1, 2, 3, 5, 9})
      for (int64_t K : {1, 7, 8, 9, 16, 17, 33, 100})
        for (int64_t N : {1, 3, 4, 5, 13}) check_level<float>(t, rng, M, K, N, 0.0);
    check_level<float>(t, rng, 21, 4099, 6, 0.0);  // 16 rows of x per L2 block: two blocks
    check_level<bf16>(t, rng, 3, 70, 9, 0x1p-8);
    // bf16 x: on avx512_bf16 (built for x86), null elsewhere
    if (t.int8_weight_linear_bf16_block == nullptr) {
      CHECK_MSG(t.isa != Isa::kAvx512Bf16, "%s has no bf16-x int8_weight_linear kernel", isa_name(t.isa));
      return;
    }
    for (int64_t M : {0, 1, 2, 7, 8, 9, 17})
      for (int64_t K : {1, 31, 32, 33, 64, 100})
        for (int64_t N : {1, 2, 3, 4, 7}) check_level<bf16, bf16>(t, rng, M, K, N, 0x1p-8);
    check_level<bf16, bf16>(t, rng, 70, 4099, 5, 0x1p-8);  // 31 rows of x per L2 block: three blocks
  });
  return effdl_test::finish("test_int8_weight");
}
