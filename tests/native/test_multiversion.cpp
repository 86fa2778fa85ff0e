// The multiversioned entry points (one clone per ISA level, picked by the
// loader) compute what the portable templates compute: vector widths may
// reorder float sums, so float results agree to a tight tolerance and integer
// results exactly.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "core/int8.h"
#include "core/multiversion.h"
#include "core/nm_format.h"
#include "core/nm_linear.h"

using namespace effdl::core;

namespace {

bool close(float a, float b) { return std::fabs(a - b) <= 1e-5f * (1.f + std::fabs(b)); }

void test_nm_linear(std::mt19937& rng) {
  std::normal_distribution<float> nd;
  const int n = 2, m = 4;
  const int64_t N = 37, K = 72;
  for (int64_t M : {1, 3, 5, 19, 130}) {
    std::vector<float> w(N * K), x(M * K), bias(N);
    for (auto& v : x) v = nd(rng);
    for (auto& v : bias) v = nd(rng);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t g = 0; g < K / m; ++g)
        for (int i = 0; i < m; ++i) w[r * K + g * m + i] = (i == 1 || i == 3) ? nd(rng) : 0.f;
    std::vector<float> values(N * nm_kept(K, n, m));
    std::vector<uint8_t> meta(N * nm_meta_bytes(K));
    for (int64_t r = 0; r < N; ++r)
      CHECK(nm_compress_row(w.data() + r * K, K, n, m, values.data() + r * nm_kept(K, n, m),
                            meta.data() + r * nm_meta_bytes(K)) < 0);
    std::vector<float> xt(K * nm_padded_rows(M));
    const float* xtp = nullptr;
    if (M > kNmGatherMaxRows) {
      mv::nm_pack_x_transposed(x.data(), K, M, 0, K, xt.data());
      xtp = xt.data();
    }
    std::vector<float> got(M * N), want(M * N);
    CHECK(mv::nm_linear_block(x.data(), K, xtp, M, K, values.data(), meta.data(), n, m, bias.data(),
                              got.data(), N, 0, N));
    CHECK(nm_linear_block<float>(x.data(), K, xtp, M, K, values.data(), meta.data(), n, m,
                                 bias.data(), want.data(), N, 0, N));
    for (int64_t i = 0; i < M * N; ++i) CHECK(close(got[i], want[i]));
  }
}

void test_int8(std::mt19937& rng) {
  std::uniform_int_distribution<int> ud(-128, 127);
  const int64_t M = 7, N = 29, K = 301;
  std::vector<int8_t> q(M * K), wq(N * K);
  for (auto& v : q) v = int8_t(ud(rng));
  for (auto& v : wq) v = int8_t(ud(rng));
  std::vector<float> ones_m(M, 1.f), ones_n(N, 1.f), got(M * N), want(M * N);
  mv::int8_linear_block(q.data(), K, ones_m.data(), M, K, wq.data(), ones_n.data(), nullptr,
                        got.data(), N, 0, N);
  int8_linear_block<float>(q.data(), K, ones_m.data(), M, K, wq.data(), ones_n.data(), nullptr,
                           want.data(), N, 0, N);
  for (int64_t i = 0; i < M * N; ++i) CHECK(got[i] == want[i]);

  std::normal_distribution<float> nd;
  std::vector<float> x(M * K);
  for (auto& v : x) v = nd(rng) * 3.f;
  std::vector<int8_t> q1(M * K), q2(M * K);
  std::vector<float> s1(M), s2(M);
  CHECK(mv::quantize_rows_block(x.data(), K, K, q1.data(), K, s1.data(), 0, M) < 0);
  CHECK(quantize_rows_block<float>(x.data(), K, K, q2.data(), K, s2.data(), 0, M) < 0);
  for (int64_t i = 0; i < M * K; ++i) CHECK(q1[i] == q2[i]);
  for (int64_t i = 0; i < M; ++i) CHECK(s1[i] == s2[i]);

  mv::int8_weight_linear_block(x.data(), K, M, K, wq.data(), ones_n.data(), nullptr, got.data(), N,
                               0, N);
  int8_weight_linear_block<float>(x.data(), K, M, K, wq.data(), ones_n.data(), nullptr,
                                  want.data(), N, 0, N);
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t o = 0; o < N; ++o) {
      // a reordered float sum differs by a few ulps of the sum of |terms|
      double mag = 0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(x[i * K + k]) * wq[o * K + k]);
      CHECK(std::fabs(got[i * N + o] - want[i * N + o]) <= 1e-6 * mag);
    }
  }
}

}  // namespace

int main() {
  std::printf("multiversioned kernels: %s\n", mv::selected_isa());
  std::mt19937 rng(7);
  test_nm_linear(rng);
  test_int8(rng);
  return effdl_test::finish("test_multiversion");
}
