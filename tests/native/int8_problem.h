// What the native int8 tests share: the poisoned outputs, the uneven chunks
// parallel_for may cut, an int8 problem with its exact int64 sums, random
// scales, and the loop over the kernel levels that run here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/isa.h"
#include "core/kernel_table.h"

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

// q [M, ldq] (ldq >= K) and wq [N, K], outputs of row stride ldo, and the exact sums.
struct Int8Problem {
  int64_t M, K, N, ldq, ldo;
  std::vector<int8_t> q, wq;
  std::vector<int64_t> acc;  // [M, N]

  void reference() {
    acc.assign(sz(M * N), 0);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t o = 0; o < N; ++o) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += int64_t(q[sz(i * ldq + k)]) * int64_t(wq[sz(o * K + k)]);
        acc[sz(i * N + o)] = s;
      }
  }
};

// Random bytes in [-128, 127]; strided q rows (ldq = K + 3) and output rows (ldo = N + 2).
inline Int8Problem random_int8_problem(Rng& rng, int64_t M, int64_t K, int64_t N) {
  Int8Problem p{M, K, N, K + 3, N + 2, {}, {}, {}};
  p.q.resize(sz(std::max<int64_t>(M * p.ldq, 1)));
  p.wq.resize(sz(N * K));
  for (auto& v : p.q) v = int8_t(int(rng() % 256) - 128);
  for (auto& v : p.wq) v = int8_t(int(rng() % 256) - 128);
  p.reference();
  return p;
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

// Calls f(table) for every level this build holds and this CPU runs, and says
// which it skips.
template <class F>
void for_each_level(F&& f) {
  using namespace effdl::core;
  for (int level = 0; level < kIsaCount; ++level) {
    const Isa isa = Isa(level);
    const KernelTable* t = kernel_table(isa);
    if (t == nullptr || !isa_supported_by_cpu(isa)) {
      std::printf("SKIP %s: %s\n", isa_name(isa), t == nullptr ? "not in this build" : "this CPU does not run it");
      continue;
    }
    f(*t);
  }
}

}  // namespace effdl_test
