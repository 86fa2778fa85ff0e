// What the native int8 tests share: the poisoned outputs, the uneven chunks
// parallel_for may cut, an int8 problem with its exact int64 sums, N:M int8
// weights, random q rows and scales, and the checks of unit-scale sums and of
// the epilogue against them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/int8.h"
#include "core/nm_format.h"

namespace effdl_test {

using Rng = std::mt19937_64;
inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

template <typename T>
uint32_t bits_of(T v) {
  uint32_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}

// What an output holds before the kernel writes it.
template <typename Out>
Out poison() {
  return effdl::core::store_from_float<Out>(-12345.f);
}

// Uneven chunks of at most max_len covering [0, n), as parallel_for may cut them.
inline std::vector<std::pair<int64_t, int64_t>> chunks(int64_t n, Rng& rng, int64_t max_len) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t b = 0; b < n;) {
    const int64_t e = std::min(n, b + 1 + int64_t(rng() % uint64_t(max_len)));
    out.push_back({b, e});
    b = e;
  }
  return out;
}

inline int8_t random_byte(Rng& rng) { return int8_t(int(rng() % 256) - 128); }

// out[i, o] = sum_k q[i * ldq + k] * w[o * K + k] for q [M, ldq] and w [N, K], in int64.
inline std::vector<int64_t> int8_sums(const std::vector<int8_t>& q, int64_t ldq, int64_t M,
                                      const std::vector<int8_t>& w, int64_t K, int64_t N) {
  std::vector<int64_t> acc(sz(M * N), 0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t o = 0; o < N; ++o) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int64_t(q[sz(i * ldq + k)]) * int64_t(w[sz(o * K + k)]);
      acc[sz(i * N + o)] = s;
    }
  return acc;
}

// q [M, ldq] (ldq >= K) and wq [N, K], outputs of row stride ldo, and the exact sums.
struct Int8Problem {
  int64_t M, K, N, ldq, ldo;
  std::vector<int8_t> q, wq;
  std::vector<int64_t> acc;  // [M, N]

  void reference() { acc = int8_sums(q, ldq, M, wq, K, N); }
};

// Random bytes in [-128, 127]; strided q rows (ldq = K + 3) and output rows (ldo = N + 2).
inline Int8Problem random_int8_problem(Rng& rng, int64_t M, int64_t K, int64_t N) {
  Int8Problem p{M, K, N, K + 3, N + 2, {}, {}, {}};
  p.q.resize(sz(std::max<int64_t>(M * p.ldq, 1)));
  p.wq.resize(sz(N * K));
  for (auto& v : p.q) v = random_byte(rng);
  for (auto& v : p.wq) v = random_byte(rng);
  p.reference();
  return p;
}

// q [M, ldq] of random bytes in its first K columns (only -128 and 127 with
// `extremes`); the gaps past K hold 99, a poison the kernel must never read.
inline std::vector<int8_t> random_q(Rng& rng, int64_t M, int64_t K, int64_t ldq, bool extremes = false) {
  std::vector<int8_t> q(sz(std::max<int64_t>(M * ldq, 1)), int8_t(99));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) q[sz(i * ldq + k)] = extremes ? int8_t((rng() & 1) ? 127 : -128) : random_byte(rng);
  return q;
}

// An N:M int8 weight: its dense bytes and the format's values and meta.
struct NmInt8Weight {
  int64_t N, K;
  int n, m;
  std::vector<int8_t> dense;   // [N, K]
  std::vector<int8_t> values;  // [N, nm_kept(K, n, m)]
  std::vector<uint8_t> meta;   // [N, nm_meta_bytes(K)]

  // values and meta from dense, by the format's own packer (through float, exact for int8)
  void compress() {
    using namespace effdl::core;
    const int64_t kept = nm_kept(K, n, m), mb = nm_meta_bytes(K);
    std::vector<float> wf(dense.begin(), dense.end()), vf(sz(N * kept));
    meta.assign(sz(N * mb), 0);
    for (int64_t r = 0; r < N; ++r)
      CHECK(nm_compress_row(wf.data() + r * K, K, n, m, vf.data() + r * kept, meta.data() + r * mb) < 0);
    values.assign(vf.begin(), vf.end());
  }

  // The exact sums of q [M, ldq] times the dense weight, [M, N].
  std::vector<int64_t> sums(const std::vector<int8_t>& q, int64_t ldq, int64_t M) const {
    return int8_sums(q, ldq, M, dense, K, N);
  }
};

// Calls f(Out{}) for each output type the int8 kernels write: fp32, bf16, fp16.
template <class F>
void for_each_out_type(F&& f) {
  f(float{});
  f(effdl::core::bf16{});
  f(effdl::core::fp16{});
}

// Per-row and per-channel scales and a bias, as the quantizers make them.
struct Int8Scales {
  std::vector<float> q_scale, w_scale, bias;
};

inline Int8Scales random_scales(Rng& rng, int64_t M, int64_t N) {
  std::uniform_real_distribution<float> scale(1e-3f, 0.1f), bval(-2.f, 2.f);
  Int8Scales s{std::vector<float>(sz(M)), std::vector<float>(sz(N)), std::vector<float>(sz(N))};
  for (auto& v : s.q_scale) v = scale(rng);
  for (auto& v : s.w_scale) v = scale(rng);
  for (auto& v : s.bias) v = bval(rng);
  return s;
}

// Scales of 1 and no bias: the kernel's output is float of its int32 sum.
inline Int8Scales unit_scales(int64_t M, int64_t N) {
  return {std::vector<float>(sz(std::max<int64_t>(M, 1)), 1.f), std::vector<float>(sz(std::max<int64_t>(N, 1)), 1.f),
          {}};
}

// Unit-scale outputs out [M, ldo] against the exact sums want [M, N]: each is
// float(sum), and the padding columns N..ldo still hold the poison. Stops at
// the first wrong value; `what` names the case.
inline void check_sums(const char* what, int64_t M, int64_t K, int64_t N, const std::vector<int64_t>& want,
                       const std::vector<float>& out, int64_t ldo) {
  bool ok = true;
  for (int64_t i = 0; i < M && ok; ++i) {
    for (int64_t o = 0; o < N && ok; ++o) {
      const int64_t x = want[sz(i * N + o)];
      const float got = out[sz(i * ldo + o)];
      ok = CHECK_MSG(got == float(x), "%s M=%lld K=%lld N=%lld [%lld,%lld]: got %.17g want %lld", what,
                     (long long)M, (long long)K, (long long)N, (long long)i, (long long)o, double(got),
                     (long long)x);
    }
    for (int64_t o = N; o < ldo && ok; ++o) ok = CHECK(bits_of(out[sz(i * ldo + o)]) == bits_of(poison<float>()));
  }
}

inline void check_sums(const char* what, const Int8Problem& p, const std::vector<float>& out) {
  check_sums(what, p.M, p.K, p.N, p.acc, out, p.ldo);
}

// Scaled outputs out [M, ldo] against int8_epilogue of the exact sums acc
// [M, N], bit for bit (the kernels end in that epilogue on the same int32
// sums); the padding columns N..ldo still hold the poison.
template <typename Out>
void check_epilogue(const char* what, int64_t M, int64_t N, const std::vector<int64_t>& acc, const Int8Scales& sc,
                    const float* bias, const std::vector<Out>& out, int64_t ldo) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t o = 0; o < ldo; ++o) {
      const Out want = o < N ? effdl::core::int8_epilogue<Out>(int32_t(acc[sz(i * N + o)]), sc.q_scale[sz(i)],
                                                               sc.w_scale[sz(o)], bias ? bias + o : nullptr)
                             : poison<Out>();
      CHECK_MSG(bits_of(out[sz(i * ldo + o)]) == bits_of(want), "%s (%zu-byte output, bias %d) [%lld,%lld]", what,
                sizeof(Out), int(bias != nullptr), (long long)i, (long long)o);
    }
}

}  // namespace effdl_test
