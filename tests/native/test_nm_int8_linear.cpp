// nm_int8_linear_block (core/nm_int8_linear.h) against a naive loop over the
// dense int8 weight with int64 sums, called the way the glue calls it: output
// columns split into uneven chunks, q packed (nm_int8_pack_q_transposed) above
// kNmInt8GatherMaxRows rows, strided q rows, outputs poisoned first.
//   exact int32 with unit scales, every M around the path switch and the strip
//   width, several N:M patterns, K % 8 != 0
//   partial sums far beyond 2^24 in both directions (the packed path's exact
//   1024-product chunks), and the int32 bound kInt8MaxK kept products
//   scales + bias in fp32 / bf16 / fp16 against the same epilogue
//   an invalid mask is reported, never read out of bounds
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/int8.h"
#include "core/nm_format.h"
#include "core/nm_int8_linear.h"
#include "int8_problem.h"

using namespace effdl::core;
using namespace effdl_test;

namespace {

using Weight = NmInt8Weight;

// A random N:M int8 weight; about one group in four keeps fewer than n nonzeros.
Weight make_weight(Rng& rng, int64_t N, int64_t K, int n, int m) {
  Weight w{N, K, n, m, std::vector<int8_t>(sz(N * K), 0), {}, {}};
  std::uniform_int_distribution<int> val(-128, 127), pos(0, m - 1), coin(0, 3);
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t g = 0; g < K / m; ++g) {
      const int keep = coin(rng) == 0 ? n - 1 : n;
      for (int placed = 0; placed < keep;) {
        int8_t& e = w.dense[sz(r * K + g * m + pos(rng))];
        if (e != 0) continue;
        const int v = val(rng);
        e = int8_t(v == 0 ? 1 : v);
        ++placed;
      }
    }
  }
  w.compress();
  return w;
}

// Runs the kernel like the glue: pack when M is large, uneven column chunks.
template <typename Out>
bool run(const std::vector<int8_t>& q, int64_t ldq, int64_t M, const Weight& w, const Int8Scales& sc,
         const float* bias, std::vector<Out>& out) {
  std::vector<float> qt;
  const float* qtp = nullptr;
  if (M > kNmInt8GatherMaxRows) {
    qt.assign(sz(w.K * nm_xt_stride(M)), -7.f);  // poisoned: the pack writes every entry
    nm_int8_pack_q_transposed(q.data(), ldq, M, 0, w.K / 2, qt.data());
    nm_int8_pack_q_transposed(q.data(), ldq, M, w.K / 2, w.K, qt.data());
    qtp = qt.data();
  }
  bool ok = true;
  const int64_t cuts[] = {0, w.N / 3, w.N / 3 + 1, w.N};
  for (int c = 0; c < 3; ++c)
    ok &= nm_int8_linear_block<Out>(q.data(), ldq, qtp, sc.q_scale.data(), M, w.K, w.values.data(),
                                    w.meta.data(), w.n, w.m, sc.w_scale.data(), bias, out.data(), w.N,
                                    cuts[c], cuts[c + 1]);
  return ok;
}

void test_exact_unit_scales(Rng& rng) {
  struct Pattern {
    int n, m;
  };
  for (Pattern p : {Pattern{2, 4}, Pattern{1, 4}, Pattern{4, 8}, Pattern{3, 7}, Pattern{1, 2},
                    Pattern{5, 16}}) {
    for (int64_t M : {1, 2, 4, 5, 15, 16, 17, 130}) {
      const int64_t N = 13, K = int64_t(p.m) * 5;  // K % 8 != 0 for most patterns
      const Weight w = make_weight(rng, N, K, p.n, p.m);
      const int64_t ldq = K + 3;  // strided rows; the gap is poison the kernel must not read
      const std::vector<int8_t> q = random_q(rng, M, K, ldq);
      std::vector<float> out(sz(M * N), NAN);
      CHECK(run<float>(q, ldq, M, w, unit_scales(M, N), nullptr, out));
      char what[16];
      std::snprintf(what, sizeof(what), "%d:%d", p.n, p.m);
      check_sums(what, M, K, N, w.sums(q, ldq, M), out, N);
    }
  }
}

// Sums that leave fp32's exact-integer range: rows of 3000 kept products of
// +-16129 (127 * 127, odd) arranged so that a single fp32 sum would round on the
// way; rows 0 and 1 come back to exactly 0.
void test_exact_long_sums() {
  const int n = 2, m = 4;
  const int64_t K = 6000, kept = nm_kept(K, n, m), N = 4;
  Weight w{N, K, n, m, std::vector<int8_t>(sz(N * K), 0), {}, {}};
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < kept; ++j) {
      int8_t v = 127;
      if (r == 0 && j >= kept / 2) v = -127;       // up to 1500 * 16129 and back to 0
      if (r == 1 && j % 2) v = -127;               // alternating: 0
      if (r == 3 && j == kept - 1) v = -128;       // 2999 * 16129 - 16256
      w.dense[sz(r * K + j / n * m + j % n)] = v;  // columns 0, 1 of each group
    }
  w.compress();
  for (int64_t M : {1, 6}) {
    std::vector<int8_t> q(sz(M * K), int8_t(127));
    const std::vector<int64_t> want = w.sums(q, K, M);
    std::vector<float> out(sz(M * N), NAN);
    CHECK(want[0] == 0 && want[1] == 0 && want[3] == 2999LL * 16129 - 16256);
    CHECK(run<float>(q, K, M, w, unit_scales(M, N), nullptr, out));
    for (int64_t i = 0; i < M * N; ++i) CHECK(out[sz(i)] == float(want[sz(i)]));
  }
}

// kInt8MaxK kept products of -128 * -128: 2^31 - 2^14, the largest int32 sum.
void test_int32_bound() {
  const int n = 1, m = 2;
  const int64_t kept = kInt8MaxK, K = kept * m, N = 2;
  Weight w{N, K, n, m, {}, std::vector<int8_t>(sz(N * kept), int8_t(-128)),
           std::vector<uint8_t>(sz(N * nm_meta_bytes(K)), uint8_t(0x55))};
  for (int64_t j = 0; j < kept; ++j) w.values[sz(kept + j)] = 127;  // row 1: the most negative sum
  w.meta[sz(nm_meta_bytes(K) - 1)] = 0x15;                          // the last byte: 6 columns
  w.meta[sz(2 * nm_meta_bytes(K) - 1)] = 0x15;
  for (int64_t M : {1, 5}) {
    std::vector<int8_t> q(sz(M * K), int8_t(-128));
    std::vector<float> out(sz(M * N), NAN);
    CHECK(run<float>(q, K, M, w, unit_scales(M, N), nullptr, out));
    for (int64_t i = 0; i < M; ++i) {
      CHECK(out[sz(i * N)] == float(kept * 128 * 128));
      CHECK(out[sz(i * N + 1)] == float(-kept * 128 * 127));
    }
  }
}

// Scales and bias in every output type: bit for bit int8_epilogue of the exact
// sums, and within rounding of the scaled sum computed here in double.
template <typename Out>
void test_scaled(Rng& rng) {
  const int64_t N = 21, K = 64;
  const Weight w = make_weight(rng, N, K, 2, 4);
  for (int64_t M : {3, 19}) {
    const std::vector<int8_t> q = random_q(rng, M, K, K);
    const Int8Scales sc = random_scales(rng, M, N);
    std::vector<Out> out(sz(M * N), store_from_float<Out>(NAN));
    CHECK(run<Out>(q, K, M, w, sc, sc.bias.data(), out));
    const std::vector<int64_t> acc = w.sums(q, K, M);
    check_epilogue<Out>("scaled", M, N, acc, sc, sc.bias.data(), out, N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t o = 0; o < N; ++o) {
        const double want = double(acc[sz(i * N + o)]) * sc.q_scale[sz(i)] * sc.w_scale[sz(o)] + sc.bias[sz(o)];
        const double got = double(load(out[sz(i * N + o)]));
        const double tol = sizeof(Out) == 4 ? 1e-5 : 1.0 / 128;
        CHECK_MSG(std::fabs(got - want) <= tol * (1 + std::fabs(want)), "got %f want %f", got, want);
      }
  }
}

void test_invalid_mask(Rng& rng) {
  for (int64_t M : {2, 9}) {
    Weight w = make_weight(rng, 5, 16, 2, 4);
    w.meta[sz(3 * nm_meta_bytes(16))] |= 0x0f;  // row 3, group 0: 4 kept positions
    std::vector<int8_t> q(sz(M * 16), 1);
    std::vector<float> out(sz(M * 5), 0.f);
    CHECK(!run<float>(q, 16, M, w, unit_scales(M, 5), nullptr, out));
  }
}

}  // namespace

int main() {
  Rng rng(11);
  test_exact_unit_scales(rng);
  test_exact_long_sums();
  test_int32_bound();
  for_each_out_type([&](auto out) { test_scaled<decltype(out)>(rng); });
  test_invalid_mask(rng);
  return effdl_test::finish("test_nm_int8_linear");
}
