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
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/int8.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "core/nm_format.h"
#include "int8_problem.h"

using namespace effdl::core;

namespace {

using effdl_test::bits_of;
using effdl_test::chunks;
using effdl_test::poison;
using effdl_test::Rng;
using effdl_test::sz;
constexpr int64_t kMaxChunk = 11;

const int kPatterns[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};

struct Weight {
  int64_t N, K;
  std::vector<int8_t> dense;   // [N, K]
  std::vector<int8_t> values;  // [N, K / 2]
  std::vector<uint8_t> meta;   // [N, ceil(K / 8)]
};

// Compresses w.dense with the format's own packer (through float, exact for int8).
void compress(Weight& w) {
  const int64_t kept = nm_kept(w.K, 2, 4), mb = nm_meta_bytes(w.K);
  std::vector<float> wf(w.dense.begin(), w.dense.end()), vf(sz(w.N * kept));
  w.meta.assign(sz(w.N * mb), 0);
  for (int64_t r = 0; r < w.N; ++r)
    CHECK(nm_compress_row(wf.data() + r * w.K, w.K, 2, 4, vf.data() + r * kept, w.meta.data() + r * mb) < 0);
  w.values.assign(vf.begin(), vf.end());
}

// Every group takes one of the six patterns (in turn, from a random start, so
// each row holds them all); one in five keeps a zero there instead (padded),
// and `extremes` draws only -128 and 127.
Weight random_weight(Rng& rng, int64_t N, int64_t K, bool extremes = false) {
  Weight w{N, K, std::vector<int8_t>(sz(N * K), 0), {}, {}};
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
  compress(w);
  return w;
}

std::vector<int8_t> random_q(Rng& rng, int64_t M, int64_t ldq, bool extremes = false) {
  std::vector<int8_t> q(sz(std::max<int64_t>(M * ldq, 1)), int8_t(99));  // the gaps: poison never read
  const int64_t K = ldq - 3;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      q[sz(i * ldq + k)] = extremes ? int8_t((rng() & 1) ? 127 : -128) : int8_t(int(rng() % 256) - 128);
  return q;
}

std::vector<int64_t> naive(const std::vector<int8_t>& q, int64_t ldq, int64_t M, const Weight& w) {
  std::vector<int64_t> out(sz(M * w.N), 0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t o = 0; o < w.N; ++o) {
      int64_t s = 0;
      for (int64_t k = 0; k < w.K; ++k) s += int64_t(q[sz(i * ldq + k)]) * w.dense[sz(o * w.K + k)];
      out[sz(i * w.N + o)] = s;
    }
  return out;
}

template <typename Out>
bool run(const KernelTable& t, const std::vector<int8_t>& q, int64_t ldq, int64_t M, const Weight& w,
         const float* q_scale, const float* w_scale, const float* bias, std::vector<Out>& out, int64_t ldo,
         Rng& rng) {
  bool ok = true;
  for (auto [ob, oe] : chunks(w.N, rng, kMaxChunk))
    ok &= t.int8<Out>().nm_int8_linear_block(q.data(), ldq, nullptr, q_scale, M, w.K, w.values.data(),
                                             w.meta.data(), 2, 4, w_scale, bias, out.data(), ldo, ob, oe);
  return ok;
}

// Unit scales: the int32 sum itself (float(acc) is exact: |acc| < 2^24 for
// K <= 2048, or the pattern is chosen so); the padding column stays poisoned.
void check_exact(const KernelTable& t, Rng& rng, int64_t M, const Weight& w, bool extremes, const char* what) {
  const int64_t ldq = w.K + 3, ldo = w.N + 2;
  const std::vector<int8_t> q = random_q(rng, M, ldq, extremes);
  const std::vector<int64_t> want = naive(q, ldq, M, w);
  std::vector<float> ones_m(sz(M), 1.f), ones_n(sz(w.N), 1.f), out(sz(M * ldo), poison<float>());
  CHECK(run<float>(t, q, ldq, M, w, ones_m.data(), ones_n.data(), nullptr, out, ldo, rng));
  bool ok = true;
  for (int64_t i = 0; i < M && ok; ++i) {
    for (int64_t o = 0; o < w.N && ok; ++o) {
      const int64_t x = want[sz(i * w.N + o)];
      ok = CHECK_MSG(out[sz(i * ldo + o)] == float(x) && double(float(x)) == double(x),
                     "%s M=%lld K=%lld N=%lld [%lld,%lld]: got %.17g want %lld", what, (long long)M,
                     (long long)w.K, (long long)w.N, (long long)i, (long long)o, double(out[sz(i * ldo + o)]),
                     (long long)x);
    }
    for (int64_t o = w.N; o < ldo && ok; ++o) ok = CHECK(bits_of(out[sz(i * ldo + o)]) == bits_of(poison<float>()));
  }
}

void test_shapes(const KernelTable& t, Rng& rng) {
  for (int64_t M = 1; M <= 17; ++M)
    for (int64_t N : {1, 9, 19}) check_exact(t, rng, M, random_weight(rng, N, 388), false, "rows");
  for (int64_t K : {4, 8, 12, 60, 64, 124, 128, 132, 252, 256, 260, 508, 644, 1028, 2044})
    for (int64_t M : {1, 3, 4, 5, 16})
      for (int64_t N : {2, 8, 17}) check_exact(t, rng, M, random_weight(rng, N, K), false, "K sweep");
  for (int64_t K : {1152, 2048})  // extremes: |acc| <= 2^14 * K / 2 < 2^24
    check_exact(t, rng, 6, random_weight(rng, 11, K, true), true, "extreme bytes");
  Weight zeros{5, 260, std::vector<int8_t>(sz(5 * 260), 0), {}, {}};  // all groups padded: keeps columns 0, 1
  compress(zeros);
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
    Weight w{N, K, std::vector<int8_t>(sz(N * K), 0), {}, {}};
    for (int64_t r = 0; r < N; ++r)
      for (int64_t g = 0; g < K / 4; ++g)
        for (int s = 0; s < 2; ++s) w.dense[sz(r * K + g * 4 + kPatterns[(r + g) % 6][s])] = pat.w;
    compress(w);
    const int64_t ldq = K, ldo = N;
    const std::vector<int8_t> q(sz(M * K), pat.q);
    std::vector<float> ones_m(sz(M), 1.f), ones_n(sz(N), 1.f), out(sz(M * N), poison<float>());
    CHECK(run<float>(t, q, ldq, M, w, ones_m.data(), ones_n.data(), nullptr, out, ldo, rng));
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
  const std::vector<int8_t> q = random_q(rng, M, ldq);
  const std::vector<int64_t> acc = naive(q, ldq, M, w);
  const effdl_test::Int8Scales sc = effdl_test::random_scales(rng, M, N);
  for (int with_bias = 0; with_bias < 2; ++with_bias) {
    const float* b = with_bias ? sc.bias.data() : nullptr;
    std::vector<Out> got(sz(M * ldo), poison<Out>()), want(sz(M * ldo), poison<Out>());
    CHECK(run<Out>(t, q, ldq, M, w, sc.q_scale.data(), sc.w_scale.data(), b, got, ldo, rng));
    for (int64_t i = 0; i < M; ++i)
      for (int64_t o = 0; o < N; ++o)
        want[sz(i * ldo + o)] =
            int8_epilogue<Out>(int32_t(acc[sz(i * N + o)]), sc.q_scale[sz(i)], sc.w_scale[sz(o)], b ? b + o : nullptr);
    for (size_t j = 0; j < got.size(); ++j) CHECK(bits_of(got[j]) == bits_of(want[j]));
  }
}

// A bad row anywhere is reported (and nothing is read out of bounds).
void test_invalid(const KernelTable& t, Rng& rng) {
  const int64_t K = 300, N = 10, M = 2, mb = nm_meta_bytes(K);  // K % 8 == 4: the last byte's high nibble is past K
  const Weight good = random_weight(rng, N, K);
  const std::vector<int8_t> q = random_q(rng, M, K + 3);
  std::vector<float> ones_m(sz(M), 1.f), ones_n(sz(N), 1.f), out(sz(M * N));
  CHECK(run<float>(t, q, K + 3, M, good, ones_m.data(), ones_n.data(), nullptr, out, N, rng));
  for (int64_t row : {int64_t(0), int64_t(7), N - 1}) {
    Weight bad = good;
    bad.meta[sz(row * mb + 20)] |= 0x0f;  // a group with 3 or 4 bits
    CHECK(!run<float>(t, q, K + 3, M, bad, ones_m.data(), ones_n.data(), nullptr, out, N, rng));
    bad = good;
    bad.meta[sz(row * mb + mb - 1)] |= 0x30;  // bits past K
    CHECK(!run<float>(t, q, K + 3, M, bad, ones_m.data(), ones_n.data(), nullptr, out, N, rng));
  }
}

}  // namespace

int main() {
  const KernelTable* t = kernel_table(Isa::kAvx512Vnni);
  if (t == nullptr || !isa_supported_by_cpu(Isa::kAvx512Vnni)) {
    std::printf("SKIP: %s\n", t == nullptr ? "this build has no avx512_vnni kernels"
                                           : "this CPU does not run AVX-512 VNNI");
    return effdl_test::finish("test_nm_int8_select");
  }
  Rng rng(20261130);
  test_shapes(*t, rng);
  test_int32_bound(*t, rng);
  test_epilogue<float>(*t, rng);
  test_epilogue<bf16>(*t, rng);
  test_epilogue<fp16>(*t, rng);
  test_invalid(*t, rng);
  return effdl_test::finish("test_nm_int8_select");
}
