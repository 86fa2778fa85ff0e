// The avx512_vnni level's int8_linear_block (core/int8_vnni.h, reached through
// the level's kernel table) against a naive loop with int64 sums, called the
// way the glue calls it: output columns split into uneven chunks, strided q
// rows and output rows, outputs poisoned first. Skips, saying so, on a CPU
// without AVX-512 VNNI or a build without the x86 levels.
//   exact int32 with unit scales: M around the 4-row tile (1..9), N around the
//   4-column tile, K around the 64-byte step and K % 4 != 0
//   K = kInt8MaxK with all-extreme values (-128 x -128, 127 x -128, ...), where
//   the shifted sums pass 2^31 and only wrap-around makes the result exact
//   scales + bias in fp32 / bf16 / fp16: the same epilogue as the portable core
#include <algorithm>
#include <cstdint>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/int8.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "int8_problem.h"
#include "levels.h"

using namespace effdl::core;
using namespace effdl_test;

namespace {

using Problem = Int8Problem;
constexpr int64_t kMaxChunk = 11;

// The kernel as the glue calls it: output columns in uneven chunks, outputs poisoned first.
template <typename Out>
void run(const KernelTable& t, const Problem& p, const Int8Scales& sc, const float* bias, std::vector<Out>& out,
         Rng& rng) {
  out.assign(sz(std::max<int64_t>(p.M * p.ldo, 1)), poison<Out>());
  for (auto [ob, oe] : chunks(p.N, rng, kMaxChunk))
    t.int8<Out>().int8_linear_block(p.q.data(), p.ldq, sc.q_scale.data(), p.M, p.K, p.wq.data(),
                                    sc.w_scale.data(), bias, out.data(), p.ldo, ob, oe);
}

// Unit scales, no bias: the int32 sum itself, exactly; the poisoned padding
// column of each output row stays untouched.
void check_exact(const KernelTable& t, const Problem& p, Rng& rng, const char* what) {
  std::vector<float> out;
  run<float>(t, p, unit_scales(p.M, p.N), nullptr, out, rng);
  check_sums(what, p, out);
}

void test_shapes(const KernelTable& t, Rng& rng) {
  for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9})
    for (int64_t K : {1, 3, 4, 5, 63, 64, 65, 130, 255, 301})
      for (int64_t N : {1, 3, 4, 5, 17}) {
        const Problem p = random_int8_problem(rng, M, K, N);
        check_exact(t, p, rng, "random");
      }
  // more rows than one L2 row block (2^18 bytes / K rows): the block loop
  const Problem big = random_int8_problem(rng, 70, 4099, 6);
  check_exact(t, big, rng, "row blocks");
  // M == 0: nothing written, nothing read
  const Problem none = random_int8_problem(rng, 0, 17, 5);
  check_exact(t, none, rng, "M=0");
}

// K = kInt8MaxK, the int32 bound, with extreme values. The output (unit
// scales) is float(acc), exact while acc needs at most 24 significant bits, so
// each pattern is chosen to have an exactly representable true sum while the
// shifted sum sum_k (w + 128) * q runs far past int32 (about -4.3e9 for
// q = -128, w = 127): a missing or wrong correction is off by multiples of 2^32
// or of 128 * colsum, never hidden by rounding.
void test_int32_bound(const KernelTable& t, Rng& rng) {
  const int64_t K = kInt8MaxK;  // odd: 65536 even and 65535 odd k
  struct Pattern {
    int8_t q_even, q_odd, w;
    int64_t want;
  };
  const Pattern patterns[] = {
      {-128, -128, -128, int64_t(128) * 128 * K},  // the largest sum there is: 2^31 - 2^14
      {127, 127, -128, int64_t(-127) * 128 * K},
      {-128, -128, 127, int64_t(-128) * 127 * K},  // shifted sum -4.28e9
      {127, -127, -128, int64_t(-128) * 127},
      {127, -127, 127, int64_t(127) * 127},
      {-128, 127, 127, int64_t(127) * (-128 * 65536 + 127 * 65535)},  // shifted sum -2.1e9
  };
  for (const Pattern& pat : patterns) {
    Problem p{3, K, 6, K, 6, std::vector<int8_t>(sz(3 * K)), std::vector<int8_t>(sz(6 * K)), {}};
    for (int64_t k = 0; k < K; ++k) {
      p.q[sz(k)] = p.q[sz(K + k)] = (k % 2) ? pat.q_odd : pat.q_even;
      p.q[sz(2 * K + k)] = random_byte(rng);  // a random row beside them
    }
    for (int64_t o = 0; o < 6; ++o)
      for (int64_t k = 0; k < K; ++k) p.wq[sz(o * K + k)] = pat.w;
    p.reference();
    CHECK(p.acc[0] == pat.want && float(pat.want) == double(pat.want));
    check_exact(t, p, rng, "K=kInt8MaxK extremes");
  }
  CHECK(int64_t(128) * 128 * kInt8MaxK <= INT32_MAX);
}

// Scales and bias, every output type: the same values, bit for bit, as the
// portable core (both end in int8_epilogue on the same int32 sums).
template <typename Out>
void test_epilogue(const KernelTable& t, Rng& rng) {
  const Problem p = random_int8_problem(rng, 6, 200, 13);
  const Int8Scales sc = random_scales(rng, p.M, p.N);
  for (int with_bias = 0; with_bias < 2; ++with_bias) {
    const float* b = with_bias ? sc.bias.data() : nullptr;
    std::vector<Out> got;
    run<Out>(t, p, sc, b, got, rng);
    check_epilogue<Out>("epilogue", p.M, p.N, p.acc, sc, b, got, p.ldo);
  }
}

}  // namespace

int main() {
  return level_main(Isa::kAvx512Vnni, "test_int8_vnni", [](const KernelTable& t) {
    Rng rng(20261129);
    test_shapes(t, rng);
    test_int32_bound(t, rng);
    for_each_out_type([&](auto out) { test_epilogue<decltype(out)>(t, rng); });
  });
}
