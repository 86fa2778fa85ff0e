// int8_linear on packed weights (core/int8_packed.h, int8_packed_x86.h) on
// every level this build and CPU run, against a naive loop with int64 sums,
// called the way the glue calls it: the pack and the product each split into
// uneven panel chunks, strided q rows and output rows, outputs poisoned first.
//   the pack: weight bytes, zero padding past N and K, the stored 128 * colsum
//   exact int32 with unit scales: M around the 4-row tile, N around the
//   16-column panel and the 4-panel group, K % 4 != 0
//   K = kInt8MaxK with extreme values (q = -128 or w = -128 included), where
//   the VNNI shift passes 2^31 and the AVX2 split must not saturate
//   scales + bias in fp32 / bf16 / fp16: int8_epilogue of the exact sums, bit for bit
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/int8.h"
#include "core/int8_packed.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "int8_problem.h"
#include "levels.h"

using namespace effdl::core;
using namespace effdl_test;

namespace {

constexpr int64_t kMaxChunk = 5;  // panels per chunk

// An int8 problem and its packed weight (the pack itself cut into uneven chunks).
struct Problem : Int8Problem {
  std::vector<int8_t> packed;

  void pack(Rng& rng) {
    packed.assign(sz(packed_panels(N) * packed_row_bytes(K)), int8_t(0x5a));  // poison
    for (auto [b, e] : chunks(packed_panels(N), rng, kMaxChunk))
      int8_pack_weight_panels(wq.data(), K, N, K, packed.data(), b, e);
  }
};

Problem make_problem(Rng& rng, int64_t M, int64_t K, int64_t N) {
  Problem p{random_int8_problem(rng, M, K, N), {}};
  p.pack(rng);
  return p;
}

// Every byte of the packing, from its definition.
void check_pack(const Problem& p) {
  const int64_t groups = packed_groups(p.K), row = packed_row_bytes(p.K);
  bool ok = CHECK(row == groups * 64 + 64);
  for (int64_t panel = 0; panel < packed_panels(p.N) && ok; ++panel) {
    for (int64_t c = 0; c < 16 && ok; ++c) {
      const int64_t o = panel * 16 + c;
      int64_t sum = 0;
      for (int64_t k = 0; k < groups * 4 && ok; ++k) {
        const int8_t want = (o < p.N && k < p.K) ? p.wq[sz(o * p.K + k)] : int8_t(0);
        sum += want;
        ok = CHECK_MSG(p.packed[sz(panel * row + (k / 4) * 64 + c * 4 + k % 4)] == want,
                       "pack N=%lld K=%lld panel %lld column %lld k %lld", (long long)p.N, (long long)p.K,
                       (long long)panel, (long long)c, (long long)k);
      }
      int32_t shift = 0;
      std::memcpy(&shift, p.packed.data() + panel * row + groups * 64 + c * 4, 4);
      ok = ok && CHECK(int64_t(shift) == 128 * sum);
    }
  }
}

template <typename Out>
void run(const KernelTable& t, const Problem& p, const Int8Scales& sc, const float* bias, std::vector<Out>& out,
         Rng& rng) {
  out.assign(sz(std::max<int64_t>(p.M * p.ldo, 1)), poison<Out>());
  for (auto [b, e] : chunks(packed_panels(p.N), rng, kMaxChunk))
    t.int8<Out>().int8_linear_packed_block(p.q.data(), p.ldq, sc.q_scale.data(), p.M, p.K, p.packed.data(), p.N,
                                           sc.w_scale.data(), bias, out.data(), p.ldo, b, e);
}

// Unit scales, no bias: the int32 sum itself, exactly; the poisoned padding
// columns of each output row stay untouched.
void check_exact(const KernelTable& t, const Problem& p, Rng& rng, const char* what) {
  std::vector<float> out;
  run<float>(t, p, unit_scales(p.M, p.N), nullptr, out, rng);
  check_sums((std::string(isa_name(t.isa)) + " " + what).c_str(), p, out);
}

void test_shapes(const KernelTable& t, Rng& rng) {
  for (int64_t M : {1, 2, 3, 4, 5, 7, 9})
    for (int64_t K : {1, 3, 4, 5, 63, 64, 67, 130})
      for (int64_t N : {1, 15, 16, 17, 33, 64, 65, 80}) {
        const Problem p = make_problem(rng, M, K, N);
        check_pack(p);
        check_exact(t, p, rng, "random");
      }
  // more than one block of K (64 groups): partial sums carried between blocks
  for (int64_t K : {257, 259, 515, 1001})
    for (int64_t N : {16, 50}) check_exact(t, make_problem(rng, 7, K, N), rng, "blocks of K");
  check_exact(t, make_problem(rng, 0, 17, 5), rng, "M=0");
  const Problem k0 = make_problem(rng, 3, 0, 20);  // K = 0: every sum is 0
  check_pack(k0);
  check_exact(t, k0, rng, "K=0");
}

// K = kInt8MaxK with extreme values: each pattern's true sum is exactly
// representable in fp32, while the VNNI shifted sums run far past int32 and
// q = w = -128 is where a saturating or sign-trick kernel goes wrong.
void test_int32_bound(const KernelTable& t, Rng& rng) {
  const int64_t K = kInt8MaxK;
  struct Pattern {
    int8_t q_even, q_odd, w;
  };
  const Pattern patterns[] = {
      {-128, -128, -128}, {127, 127, -128}, {-128, -128, 127}, {127, -127, -128}, {-128, 127, -128}, {-128, 127, 127},
  };
  for (const Pattern& pat : patterns) {
    Problem p{{3, K, 18, K, 18, std::vector<int8_t>(sz(3 * K)), std::vector<int8_t>(sz(18 * K)), {}}, {}};
    for (int64_t k = 0; k < K; ++k) {
      p.q[sz(k)] = p.q[sz(K + k)] = (k % 2) ? pat.q_odd : pat.q_even;
      p.q[sz(2 * K + k)] = random_byte(rng);
    }
    for (int64_t o = 0; o < 18; ++o)
      for (int64_t k = 0; k < K; ++k) p.wq[sz(o * K + k)] = (o == 17) ? random_byte(rng) : pat.w;
    p.reference();
    p.pack(rng);
    CHECK(std::abs(p.acc[0]) < (int64_t(1) << 31) && float(p.acc[0]) == double(p.acc[0]));
    // the random row / column may need more than 24 bits: compare the rest only
    std::vector<float> out;
    run<float>(t, p, unit_scales(3, 18), nullptr, out, rng);
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t o = 0; o < 17; ++o)
        CHECK_MSG(out[sz(i * 18 + o)] == float(p.acc[sz(i * 18 + o)]), "%s K=kInt8MaxK pattern (%d,%d,%d)",
                  isa_name(t.isa), pat.q_even, pat.q_odd, pat.w);
  }
}

// Scales and bias, every output type: int8_epilogue of the exact sums, bit for bit.
template <typename Out>
void test_epilogue(const KernelTable& t, Rng& rng) {
  const Problem p = make_problem(rng, 6, 200, 37);
  const Int8Scales sc = random_scales(rng, p.M, p.N);
  const std::string what = std::string(isa_name(t.isa)) + " epilogue";
  for (int with_bias = 0; with_bias < 2; ++with_bias) {
    const float* b = with_bias ? sc.bias.data() : nullptr;
    std::vector<Out> got;
    run<Out>(t, p, sc, b, got, rng);
    check_epilogue<Out>(what.c_str(), p.M, p.N, p.acc, sc, b, got, p.ldo);
  }
}

}  // namespace

int main() {
  Rng rng(20261130);
  for_each_level([&](const KernelTable& t) {
    test_shapes(t, rng);
    test_int32_bound(t, rng);
    for_each_out_type([&](auto out) { test_epilogue<decltype(out)>(t, rng); });
  });
  return effdl_test::finish("test_int8_packed");
}
