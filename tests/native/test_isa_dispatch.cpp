// The CPU kernel dispatch: the choice of an instruction-set level (isa.h) and
// the per-level kernel tables (kernel_table.h).
//   select_isa        detection picks the widest available level; a forced level
//                     (any case, spaces ignored) is used as is; an unknown or
//                     unavailable one is an error naming the allowed / available
//                     levels, never a silent fallback
//   kernel_table      a complete table for every compiled level, distinct code
//                     per level, the portable one always present
//   every level this CPU runs computes what the portable templates compute:
//                     vector widths may reorder float sums, so float results
//                     agree to a tight tolerance, integer results exactly
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "core/dwsep_tiled.h"
#include "core/int8.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "core/nm_format.h"
#include "core/nm_int8_linear.h"
#include "core/nm_linear.h"

using namespace effdl::core;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// ---------------------------------------------------------------- selection

bool all_levels(Isa) { return true; }
bool up_to_avx2(Isa isa) { return int(isa) <= int(Isa::kAvx2); }
bool up_to_vnni(Isa isa) { return int(isa) <= int(Isa::kAvx512Vnni); }
bool portable_only(Isa isa) { return isa == Isa::kPortable; }
bool nothing(Isa) { return false; }

void test_names() {
  CHECK(std::string(isa_name(Isa::kPortable)) == "portable");
  CHECK(std::string(isa_name(Isa::kAvx2)) == "avx2");
  CHECK(std::string(isa_name(Isa::kAvx512)) == "avx512");
  CHECK(std::string(isa_name(Isa::kAvx512Vnni)) == "avx512_vnni");
  CHECK(std::string(isa_name(Isa::kAvx512Bf16)) == "avx512_bf16");
  CHECK(isa_names() == "portable, avx2, avx512, avx512_vnni, avx512_bf16");
}

void test_select_detected() {
  for (const char* unset : {static_cast<const char*>(nullptr), "", "auto", " AUTO "}) {
    IsaSelection s = select_isa(unset, &all_levels);
    CHECK(s.ok() && s.isa == Isa::kAvx512Bf16 && !s.forced);
    s = select_isa(unset, &up_to_vnni);
    CHECK(s.ok() && s.isa == Isa::kAvx512Vnni && !s.forced);
    s = select_isa(unset, &up_to_avx2);
    CHECK(s.ok() && s.isa == Isa::kAvx2 && !s.forced);
    s = select_isa(unset, &portable_only);
    CHECK(s.ok() && s.isa == Isa::kPortable && !s.forced);
  }
  CHECK(!select_isa(nullptr, &nothing).ok());
}

void test_select_forced() {
  for (int i = 0; i < kIsaCount; ++i) {
    const IsaSelection s = select_isa(isa_name(Isa(i)), &all_levels);
    CHECK(s.ok() && s.isa == Isa(i) && s.forced && s.requested == isa_name(Isa(i)));
  }
  // a forced narrower level wins over detection
  IsaSelection s = select_isa("portable", &all_levels);
  CHECK(s.ok() && s.isa == Isa::kPortable && s.forced);
  s = select_isa(" AVX512_VNNI\n", &all_levels);
  CHECK(s.ok() && s.isa == Isa::kAvx512Vnni && s.forced && s.requested == " AVX512_VNNI\n");
  s = select_isa("avx512_bf16", &up_to_vnni);
  CHECK_MSG(!s.ok() && contains(s.error, "EFFDL_CPU_ISA=avx512_bf16 is not available") &&
                contains(s.error, "available here: portable, avx2, avx512, avx512_vnni"),
            "error: %s", s.error.c_str());

  // a level this machine lacks: an error naming what is available, no fallback
  s = select_isa("avx512", &up_to_avx2);
  CHECK(!s.ok() && s.forced);
  CHECK_MSG(contains(s.error, "EFFDL_CPU_ISA=avx512 is not available") &&
                contains(s.error, "available here: portable, avx2"),
            "error: %s", s.error.c_str());

  // an unknown value: an error naming the allowed values
  for (const char* bad : {"avx3", "sse2", "x86-64-v4", "avx512-vnni", "avx-512"}) {
    s = select_isa(bad, &all_levels);
    CHECK(!s.ok() && s.forced);
    CHECK_MSG(contains(s.error, "must be one of portable, avx2, avx512, avx512_vnni, avx512_bf16") &&
                  contains(s.error, std::string("got '") + bad + "'"),
              "error: %s", s.error.c_str());
  }
}

void test_select_from_env() {
  unsetenv("EFFDL_CPU_ISA");
  IsaSelection s = select_isa_from_env();
  CHECK(s.ok() && !s.forced);
  const std::vector<Isa> here = isa_available();
  CHECK(!here.empty() && here.front() == Isa::kPortable && s.isa == here.back());
  for (Isa isa : here) {
    setenv("EFFDL_CPU_ISA", isa_name(isa), 1);
    s = select_isa_from_env();
    CHECK(s.ok() && s.forced && s.isa == isa);
  }
  setenv("EFFDL_CPU_ISA", "bogus", 1);
  CHECK(!select_isa_from_env().ok());
  unsetenv("EFFDL_CPU_ISA");
}

// ---------------------------------------------------------------- tables

template <typename T>
bool complete(const FloatKernels<T>& k) {
  return k.nm_linear_block && k.nm_pack_x_transposed && k.nm_reads_xt && k.nm_linear_packed_block &&
         k.dwsep_conv2d_pixels;
}
template <typename T>
bool complete(const Int8Kernels<T>& k) {
  return k.quantize_rows_block && k.int8_linear_block && k.int8_weight_linear_block &&
         k.nm_int8_linear_block;
}

void test_tables() {
  CHECK(kernel_table(Isa::kPortable) != nullptr && isa_compiled(Isa::kPortable));
  CHECK(isa_supported_by_cpu(Isa::kPortable));
  for (int i = 0; i < kIsaCount; ++i) {
    const KernelTable* t = kernel_table(Isa(i));
    CHECK(isa_compiled(Isa(i)) == (t != nullptr));
    if (!t) continue;
    CHECK(t->isa == Isa(i));
    CHECK(complete(t->floats<float>()) && complete(t->floats<double>()) &&
          complete(t->floats<bf16>()) && complete(t->floats<fp16>()));
    CHECK(complete(t->int8<float>()) && complete(t->int8<bf16>()) && complete(t->int8<fp16>()));
    CHECK(t->nm_int8_pack_q_transposed != nullptr && t->nm_int8_reads_qt != nullptr);
    // a wider level that the CPU runs implies the narrower ones
    if (i > 0 && isa_supported_by_cpu(Isa(i))) CHECK(isa_supported_by_cpu(Isa(i - 1)));
    // each level is its own code, not an alias of another level's
    for (int j = 0; j < i; ++j) {
      const KernelTable* u = kernel_table(Isa(j));
      if (u) CHECK(u->floats<float>().nm_linear_block != t->floats<float>().nm_linear_block);
    }
  }
#if EFFDL_X86_LEVELS
  for (int i = 0; i < kIsaCount; ++i) CHECK(isa_compiled(Isa(i)));  // all four levels on x86-64 GCC 12+
#else
  for (int i = 1; i < kIsaCount; ++i) CHECK(!isa_compiled(Isa(i)) && !isa_supported_by_cpu(Isa(i)));
#endif
}

// ---------------------------------------------------------------- each level == the templates

bool close(double a, double b, double tol) { return std::fabs(a - b) <= tol * (1.0 + std::fabs(b)); }

// Rows of random n:m-sparse weights (a random n-subset kept in every group) in
// the storage of nm_format.h.
template <typename T>
void random_nm(int64_t N, int64_t K, int n, int m, std::mt19937& rng, std::vector<T>& values,
               std::vector<uint8_t>& meta) {
  std::normal_distribution<float> nd;
  std::vector<T> w(N * K, T{});
  std::vector<int> idx(m);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t g = 0; g < K / m; ++g) {
      for (int i = 0; i < m; ++i) idx[i] = i;
      std::shuffle(idx.begin(), idx.end(), rng);
      for (int s = 0; s < n; ++s) w[r * K + g * m + idx[s]] = store<T>(nd(rng) + 0.01f);
    }
  values.assign(std::max<int64_t>(N * nm_kept(K, n, m), 1), T{});
  meta.assign(std::max<int64_t>(N * nm_meta_bytes(K), 1), 0);
  for (int64_t r = 0; r < N; ++r)
    CHECK(nm_compress_row(w.data() + r * K, K, n, m, values.data() + r * nm_kept(K, n, m),
                          meta.data() + r * nm_meta_bytes(K)) < 0);
}

// Every pattern, K with partial vectors and partial meta bytes, both paths (x
// direct; packed xt), strided x and y, fp32 and bf16 (the SIMD kernels' types).
template <typename T>
void test_nm_linear(const KernelTable& t, std::mt19937& rng, double tol) {
  std::normal_distribution<float> nd;
  static const int kPatterns[][2] = {{2, 4}, {1, 4}, {1, 2}, {3, 8}, {2, 6}, {5, 16}};
  for (const auto& p : kPatterns) {
    const int n = p[0], m = p[1];
    for (int64_t K : {int64_t(m), int64_t(m) * 5, int64_t(m) * 18, int64_t(m) * 33}) {
      const int64_t N = 37, ldx = K + 3, ldy = N + 2;
      std::vector<T> values;
      std::vector<uint8_t> meta;
      random_nm<T>(N, K, n, m, rng, values, meta);
      std::vector<T> bias(N);
      for (auto& v : bias) v = store<T>(nd(rng));
      for (int64_t M : {1, 3, 5, 17, 19, 130}) {
        std::vector<T> x(M * ldx);
        for (auto& v : x) v = store<T>(nd(rng));
        const int64_t ld = nm_xt_stride(M);
        std::vector<float> xt_got(K * ld, -1.f), xt_want(K * ld, -2.f);
        const float* xtp = nullptr;
        if (M > kNmGatherMaxRows) {
          t.floats<T>().nm_pack_x_transposed(x.data(), ldx, M, 0, K, xt_got.data());
          nm_pack_x_transposed<T>(x.data(), ldx, M, 0, K, xt_want.data());
          CHECK(xt_got == xt_want);
          xtp = xt_want.data();
        }
        std::vector<T> got(M * ldy, store<T>(-1.f)), want(M * ldy, store<T>(-2.f));
        CHECK(t.floats<T>().nm_linear_block(x.data(), ldx, xtp, M, K, values.data(), meta.data(), n,
                                            m, bias.data(), got.data(), ldy, 0, N));
        CHECK(nm_linear_block<T>(x.data(), ldx, xtp, M, K, values.data(), meta.data(), n, m,
                                 bias.data(), want.data(), ldy, 0, N));
        bool ok = true;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t o = 0; o < N; ++o)
            ok = ok && close(load(got[i * ldy + o]), load(want[i * ldy + o]), tol * std::sqrt(double(K)));
        CHECK_MSG(ok, "nm_linear %d:%d K=%lld M=%lld", n, m, (long long)K, (long long)M);
        // a corrupt mask is reported by every level: a group with n+1 bits, or
        // one bit moved out of its group into the next
        std::vector<uint8_t> bad = meta;
        const int64_t mb = nm_meta_bytes(K), row = N / 2;
        for (int64_t c = 0; c < m; ++c) bad[row * mb + c / 8] |= uint8_t(1u << (c % 8));
        CHECK(!t.floats<T>().nm_linear_block(x.data(), ldx, xtp, M, K, values.data(), bad.data(), n, m,
                                             bias.data(), got.data(), ldy, 0, N));
        if (K % 8 != 0) {  // a bit past K in the last byte
          bad = meta;
          bad[row * mb + mb - 1] |= 0x80;
          CHECK(!t.floats<T>().nm_linear_block(x.data(), ldx, xtp, M, K, values.data(), bad.data(), n,
                                               m, bias.data(), got.data(), ldy, 0, N));
        }
      }
    }
  }
}

void test_int8(const KernelTable& t, std::mt19937& rng) {
  std::uniform_int_distribution<int> ud(-128, 127);
  const int64_t M = 7, N = 29, K = 301;
  std::vector<int8_t> q(M * K), wq(N * K);
  for (auto& v : q) v = int8_t(ud(rng));
  for (auto& v : wq) v = int8_t(ud(rng));
  std::vector<float> ones_m(M, 1.f), ones_n(N, 1.f), got(M * N), want(M * N);
  t.int8<float>().int8_linear_block(q.data(), K, ones_m.data(), M, K, wq.data(), ones_n.data(),
                                    nullptr, got.data(), N, 0, N);
  int8_linear_block<float>(q.data(), K, ones_m.data(), M, K, wq.data(), ones_n.data(), nullptr,
                           want.data(), N, 0, N);
  for (int64_t i = 0; i < M * N; ++i) CHECK(got[i] == want[i]);

  std::normal_distribution<float> nd;
  std::vector<float> x(M * K);
  for (auto& v : x) v = nd(rng) * 3.f;
  std::vector<int8_t> q1(M * K), q2(M * K);
  std::vector<float> s1(M), s2(M);
  CHECK(t.int8<float>().quantize_rows_block(x.data(), K, K, q1.data(), K, s1.data(), 0, M) < 0);
  CHECK(quantize_rows_block<float>(x.data(), K, K, q2.data(), K, s2.data(), 0, M) < 0);
  CHECK(q1 == q2 && s1 == s2);

  t.int8<float>().int8_weight_linear_block(x.data(), K, M, K, wq.data(), ones_n.data(), nullptr,
                                           got.data(), N, 0, N);
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

void test_nm_int8(const KernelTable& t, std::mt19937& rng) {
  std::uniform_int_distribution<int> ud(-128, 127), pick(0, 5);
  const int n = 2, m = 4;
  const int64_t N = 23, K = 96, kept = nm_kept(K, n, m);
  static const int kPairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::vector<float> w(N * K, 0.f);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t g = 0; g < K / m; ++g) {
      const int* p = kPairs[pick(rng)];
      for (int s = 0; s < 2; ++s) w[r * K + g * m + p[s]] = float(ud(rng) | 1);  // odd: nonzero
    }
  std::vector<float> vf(N * kept);
  std::vector<uint8_t> meta(N * nm_meta_bytes(K));
  for (int64_t r = 0; r < N; ++r)
    CHECK(nm_compress_row(w.data() + r * K, K, n, m, vf.data() + r * kept,
                          meta.data() + r * nm_meta_bytes(K)) < 0);
  std::vector<int8_t> values(vf.begin(), vf.end());
  for (int64_t M : {1, 3, 9, 40}) {
    std::vector<int8_t> q(M * K);
    for (auto& v : q) v = int8_t(ud(rng));
    std::vector<float> ones_m(M, 1.f), ones_n(N, 1.f);
    std::vector<float> qt_got, qt_want;
    const float* qtp = nullptr;
    if (M > kNmInt8GatherMaxRows) {
      qt_got.assign(K * nm_xt_stride(M), -1.f);
      qt_want.assign(K * nm_xt_stride(M), -2.f);
      t.nm_int8_pack_q_transposed(q.data(), K, M, 0, K, qt_got.data());
      nm_int8_pack_q_transposed(q.data(), K, M, 0, K, qt_want.data());
      CHECK(qt_got == qt_want);
      qtp = qt_want.data();
    }
    std::vector<float> got(M * N, -1.f), want(M * N, -2.f);
    // the level's core gets qt only where it says it reads it (the glue's rule)
    const float* qt_level = t.nm_int8_reads_qt(M) ? qtp : nullptr;
    CHECK(!t.nm_int8_reads_qt(M) || qtp != nullptr);
    CHECK(t.int8<float>().nm_int8_linear_block(q.data(), K, qt_level, ones_m.data(), M, K, values.data(),
                                               meta.data(), n, m, ones_n.data(), nullptr,
                                               got.data(), N, 0, N));
    CHECK(nm_int8_linear_block<float>(q.data(), K, qtp, ones_m.data(), M, K, values.data(),
                                      meta.data(), n, m, ones_n.data(), nullptr, want.data(), N, 0,
                                      N));
    CHECK(got == want);  // exact integer products
  }
}

void test_dwsep(const KernelTable& t, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  DwsepShape s{};
  s.B = 2, s.C = 19, s.H = 7, s.W = 6, s.Cout = 21, s.kh = 3, s.kw = 3;
  s.stride_h = s.stride_w = 1, s.pad_h = s.pad_w = 1, s.dil_h = s.dil_w = 1;
  s.Ho = 7, s.Wo = 6;
  std::vector<float> x(s.B * s.H * s.W * s.C), dw_w(s.kh * s.kw * s.C), dw_b(s.C),
      pw_w(s.C * s.Cout), pw_b(s.Cout), packed(dwsep_packed_size(s));
  for (auto* v : {&x, &dw_w, &dw_b, &pw_w, &pw_b})
    for (auto& e : *v) e = nd(rng);
  const DwsepPacked<float> w =
      dwsep_pack<float>(s, dw_w.data(), dw_b.data(), pw_w.data(), pw_b.data(), packed.data());
  const int64_t pixels = s.B * s.Ho * s.Wo, out = pixels * s.Cout;
  std::vector<float> got(out, -1.f), want(out, -2.f);
  t.floats<float>().dwsep_conv2d_pixels(s, x.data(), w, Activation::kRelu6, Activation::kNone,
                                        got.data(), 0, pixels);
  dwsep_conv2d_pixels<Isa::kPortable, float>(s, x.data(), w, Activation::kRelu6,
                                             Activation::kNone, want.data(), 0, pixels);
  for (int64_t i = 0; i < out; ++i) CHECK(close(got[i], want[i], 1e-5));
}

}  // namespace

int main() {
  test_names();
  test_select_detected();
  test_select_forced();
  test_select_from_env();
  test_tables();
  std::mt19937 rng(7);
  for (Isa isa : isa_available()) {
    std::printf("checking the %s kernels against the templates\n", isa_name(isa));
    const KernelTable& t = *kernel_table(isa);
    test_nm_linear<float>(t, rng, 1e-6);
    test_nm_linear<bf16>(t, rng, 1e-2);
    test_int8(t, rng);
    test_nm_int8(t, rng);
    test_dwsep(t, rng);
  }
  for (int i = 0; i < kIsaCount; ++i) {
    if (isa_compiled(Isa(i)) && !isa_supported_by_cpu(Isa(i)))
      std::printf("not checked: this CPU does not run the %s kernels\n", isa_name(Isa(i)));
  }
  return effdl_test::finish("test_isa_dispatch");
}
