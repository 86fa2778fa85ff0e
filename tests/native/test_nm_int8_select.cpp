// The 2:4 activation-selecting core (core/nm_int8_select.h), reached as the
// avx512_vnni level's nm_int8_linear_block, against a naive loop over the
// dense weight with int64 sums. Called the way the glue calls it: output
// columns in uneven chunks, strided q rows and output rows, outputs poisoned.
// Skips, saying so, on a CPU without AVX-512 VNNI or a build without the x86
// levels.
//   exact int32 with unit scales: M = 1..17 (the 4-row tile and its tails),
//   N around the 8-row tile (pairs, odd counts), K over many 128-column blocks
//   with ragged tails (K % 128 != 0, K % 8 == 4), every 2:4 keep pattern,
//   groups padded with explicit zeros, random bytes in [-128, 127]
//   K / 2 = kInt8MaxK - 1 kept values with extreme bytes, where the shifted
//   sums run far past int32 and only wrap-around makes the result exact
//   scales + bias in fp32 / bf16 / fp16: the same epilogue as the portable core
//   invalid masks (three bits in a group, a bit past K) are reported
#include <algorithm>
#include <cstdint>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/int8.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "core/nm_format.h"
#include "int8_problem.h"
#include "levels.h"

using namespace effdl::core;
using namespace effdl_test;

namespace {

using Weight = NmInt8Weight;
constexpr int64_t kMaxChunk = 11;

const int kPatterns[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};

// Every group takes one of the six patterns (in turn, from a random start, so
// each row holds them all); one in five keeps a zero there instead (padded),
// and `extremes` draws only -128 and 127.
Weight random_weight(Rng& rng, int64_t N, int64_t K, bool extremes = false) {
  Weight w{N, K, 2, 4, std::vector<int8_t>(sz(N * K), 0), {}, {}};
  for (int64_t r = 0; r < N; ++r) {
    const int64_t start = int64_t(rng() % 6);
    for (int64_t g = 0; g < K / 4; ++g)
      for (int s = 0; s < 2; ++s) {
        if (rng() % 5 == 0) continue;
        int v = extremes ? ((rng() & 1) ? 127 : -128) : int(rng() % 256) - 128;
        if (v == 0) v = 1;
        w.dense[sz(r * K + g * 4 + kPatterns[(start + g) % 6][s])] = int8_t(v);
      }
  }
  w.compress();
  return w;
}

template <typename Out>
bool run(const KernelTable& t, const std::vector<int8_t>& q, int64_t ldq, int64_t M, const Weight& w,
         const Int8Scales& sc, const float* bias, std::vector<Out>& out, int64_t ldo, Rng& rng) {
  bool ok = true;
  for (auto [ob, oe] : chunks(w.N, rng, kMaxChunk))
    ok &= t.int8<Out>().nm_int8_linear_block(q.data(), ldq, nullptr, sc.q_scale.data(), M, w.K, w.values.data(),
                                             w.meta.data(), w.n, w.m, sc.w_scale.data(), bias, out.data(), ldo, ob,
                                             oe);
  return ok;
}

// Unit scales: the int32 sum itself (float(acc) is exact: |acc| < 2^24 for
// K <= 2048, or the pattern is chosen so); the padding column stays poisoned.
void check_exact(const KernelTable& t, Rng& rng, int64_t M, const Weight& w, bool extremes, const char* what) {
  const int64_t ldq = w.K + 3, ldo = w.N + 2;
  const std::vector<int8_t> q = random_q(rng, M, w.K, ldq, extremes);
  const std::vector<int64_t> want = w.sums(q, ldq, M);
  CHECK(std::all_of(want.begin(), want.end(), [](int64_t x) { return double(float(x)) == double(x); }));
  std::vector<float> out(sz(M * ldo), poison<float>());
  CHECK(run<float>(t, q, ldq, M, w, unit_scales(M, w.N), nullptr, out, ldo, rng));
  check_sums(what, M, w.K, w.N, want, out, ldo);
}

void test_shapes(const KernelTable& t, Rng& rng) {
  for (int64_t M = 1; M <= 17; ++M)
    for (int64_t N : {1, 9, 19}) check_exact(t, rng, M, random_weight(rng, N, 388), false, "rows");
  for (int64_t K : {4, 8, 12, 60, 64, 124, 128, 132, 252, 256, 260, 508, 644, 1028, 2044})
    for (int64_t M : {1, 3, 4, 5, 16})
      for (int64_t N : {2, 8, 17}) check_exact(t, rng, M, random_weight(rng, N, K), false, "K sweep");
  for (int64_t K : {1152, 2048})  // extremes: |acc| <= 2^14 * K / 2 < 2^24
    check_exact(t, rng, 6, random_weight(rng, 11, K, true), true, "extreme bytes");
  Weight zeros{5, 260, 2, 4, std::vector<int8_t>(sz(5 * 260), 0), {}, {}};  // all groups padded: keeps columns 0, 1
  zeros.compress();
  check_exact(t, rng, 3, zeros, false, "zero weight");
}

// K / 2 = 131070 kept values (kInt8MaxK - 1), all extreme: the shifted sums
// (q + 128) * w pass 2^31 in both directions and wrap; each true sum is exact
// in fp32 (few significant bits), so a wrong correction cannot round away.
void test_int32_bound(const KernelTable& t, Rng& rng) {
  const int64_t K = 2 * (kInt8MaxK - 1), kept = K / 2, N = 3, M = 2;
  struct Pattern {
    int8_t q, w;
  };
  // (127 x 127 is left out: 16129 * 131070 needs more than fp32's 24 bits)
  for (Pattern pat : {Pattern{-128, -128}, Pattern{127, -128}, Pattern{-128, 127}, Pattern{-128, -127}}) {
    Weight w{N, K, 2, 4, std::vector<int8_t>(sz(N * K), 0), {}, {}};
    for (int64_t r = 0; r < N; ++r)
      for (int64_t g = 0; g < K / 4; ++g)
        for (int s = 0; s < 2; ++s) w.dense[sz(r * K + g * 4 + kPatterns[(r + g) % 6][s])] = pat.w;
    w.compress();
    const int64_t ldq = K, ldo = N;
    const std::vector<int8_t> q(sz(M * K), pat.q);
    std::vector<float> out(sz(M * N), poison<float>());
    CHECK(run<float>(t, q, ldq, M, w, unit_scales(M, N), nullptr, out, ldo, rng));
    const int64_t want = int64_t(pat.q) * pat.w * kept;
    CHECK(want <= INT32_MAX && want >= INT32_MIN && double(float(want)) == double(want));
    for (float v : out) CHECK_MSG(v == float(want), "q=%d w=%d: got %.17g want %lld", pat.q, pat.w, double(v),
                                  (long long)want);
  }
}

// Scales and bias in every output type: bit for bit int8_epilogue of the exact sums.
template <typename Out>
void test_epilogue(const KernelTable& t, Rng& rng) {
  const int64_t M = 7, K = 516, N = 13, ldq = K + 3, ldo = N + 2;
  const Weight w = random_weight(rng, N, K);
  const std::vector<int8_t> q = random_q(rng, M, K, ldq);
  const std::vector<int64_t> acc = w.sums(q, ldq, M);
  const Int8Scales sc = random_scales(rng, M, N);
  for (int with_bias = 0; with_bias < 2; ++with_bias) {
    const float* b = with_bias ? sc.bias.data() : nullptr;
    std::vector<Out> got(sz(M * ldo), poison<Out>());
    CHECK(run<Out>(t, q, ldq, M, w, sc, b, got, ldo, rng));
    check_epilogue<Out>("epilogue", M, N, acc, sc, b, got, ldo);
  }
}

// A bad row anywhere is reported (and nothing is read out of bounds).
void test_invalid(const KernelTable& t, Rng& rng) {
  const int64_t K = 300, N = 10, M = 2, mb = nm_meta_bytes(K);  // K % 8 == 4: the last byte's high nibble is past K
  const Weight good = random_weight(rng, N, K);
  const std::vector<int8_t> q = random_q(rng, M, K, K + 3);
  const Int8Scales one = unit_scales(M, N);
  std::vector<float> out(sz(M * N));
  CHECK(run<float>(t, q, K + 3, M, good, one, nullptr, out, N, rng));
  for (int64_t row : {int64_t(0), int64_t(7), N - 1}) {
    Weight bad = good;
    bad.meta[sz(row * mb + 20)] |= 0x0f;  // a group with 3 or 4 bits
    CHECK(!run<float>(t, q, K + 3, M, bad, one, nullptr, out, N, rng));
    bad = good;
    bad.meta[sz(row * mb + mb - 1)] |= 0x30;  // bits past K
    CHECK(!run<float>(t, q, K + 3, M, bad, one, nullptr, out, N, rng));
  }
}

}  // namespace

int main() {
  return level_main(Isa::kAvx512Vnni, "test_nm_int8_select", [](const KernelTable& t) {
    Rng rng(20261130);
    test_shapes(t, rng);
    test_int32_bound(t, rng);
    for_each_out_type([&](auto out) { test_epilogue<decltype(out)>(t, rng); });
    test_invalid(t, rng);
  });
}
