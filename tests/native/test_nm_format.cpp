// core/nm_format.h: the N:M storage format (version 1).
//   - every pattern 1 <= n < m <= 16, several K (K % 8 != 0 included), for
//     float, double, bf16, fp16: compress writes exactly the documented values
//     and mask (checked against an independent encoder), decode returns the
//     mask's columns, decompress restores the row.
//   - compress rejects a group with more than n nonzeros (NaN and Inf count as
//     nonzero, -0 as zero) and returns the first such group.
//   - nm_decode_row rejects every single-bit corruption of a valid mask (wrong
//     count in a group, bits moved between groups, bits past K), all-zero and
//     all-one masks, and random bytes exactly when an independent validator does.
// Buffers are sized exactly, so ASan catches any access out of bounds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <type_traits>
#include <vector>

#include "check.h"
#include "core/nm_format.h"

using namespace effdl::core;

namespace {

using Rng = std::mt19937_64;

// size_t from a (non-negative) index; also dodges `std::vector<T> v(size_t(n))` parsing as a function.
inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

template <typename T>
T from_double(double v) {
  return store<T>(acc_t<T>(v));
}
template <typename T>
uint64_t bits_of(T v) {
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof v);
  return b;
}
template <typename T>
bool zero_value(T v) {
  return load(v) == 0;
}

template <typename T>
const char* type_name() {
  if constexpr (std::is_same_v<T, float>) return "float";
  if constexpr (std::is_same_v<T, double>) return "double";
  if constexpr (std::is_same_v<T, bf16>) return "bf16";
  return "fp16";
}

// A random nonzero value, sometimes NaN / Inf (they must be kept, not dropped).
template <typename T>
T random_nonzero(Rng& rng, bool specials) {
  std::uniform_real_distribution<double> mag(0.25, 4.0);
  if (specials) {
    const int s = int(rng() % 40);
    if (s == 0) return from_double<T>(NAN);
    if (s == 1) return from_double<T>(-INFINITY);
  }
  return from_double<T>((rng() & 1) ? mag(rng) : -mag(rng));
}

// A zero, sometimes -0 (a zero, not a nonzero).
template <typename T>
T random_zero(Rng& rng) {
  return from_double<T>((rng() % 4 == 0) ? -0.0 : 0.0);
}

// Row of K elements with at most n nonzeros per group of m (some groups full,
// some empty, the rest a random count).
template <typename T>
std::vector<T> random_nm_row(Rng& rng, int64_t K, int n, int m, bool specials) {
  std::vector<T> w(sz(K));
  for (int64_t g = 0; g < K / m; ++g) {
    const int mode = int(rng() % 4);
    const int nnz = mode == 0 ? n : mode == 1 ? 0 : int(rng() % uint64_t(n + 1));
    std::vector<int> pos(sz(m));
    for (int i = 0; i < m; ++i) pos[sz(i)] = i;
    std::shuffle(pos.begin(), pos.end(), rng);
    for (int i = 0; i < m; ++i) w[sz(g * m + i)] = random_zero<T>(rng);
    for (int i = 0; i < nnz; ++i) w[sz(g * m + pos[sz(i)])] = random_nonzero<T>(rng, specials);
  }
  return w;
}

// The format written out independently: per group, the nonzeros plus the
// lowest-index zeros up to n, in column order; mask bit c at byte c/8, bit c%8.
template <typename T>
void reference_encode(const std::vector<T>& w, int64_t K, int n, int m, std::vector<T>& values,
                      std::vector<uint8_t>& meta) {
  values.clear();
  meta.assign(sz((K + 7) / 8), 0);
  for (int64_t g = 0; g < K / m; ++g) {
    int nnz = 0;
    for (int i = 0; i < m; ++i) nnz += load(w[sz(g * m + i)]) != 0 ? 1 : 0;
    int pad = n - nnz;
    for (int i = 0; i < m; ++i) {
      const int64_t c = g * m + i;
      bool keep = load(w[sz(c)]) != 0;  // NaN != 0
      if (!keep && pad > 0) {
        keep = true;
        --pad;
      }
      if (keep) {
        meta[sz(c / 8)] = uint8_t(meta[sz(c / 8)] | (1u << (c % 8)));
        values.push_back(w[sz(c)]);
      }
    }
  }
}

// A mask is valid iff every group has exactly n bits and no bit is set at or past K.
bool reference_valid(const uint8_t* meta, int64_t K, int n, int m) {
  const int64_t bytes = (K + 7) / 8;
  std::vector<int> count(sz(K / m + 1), 0);
  for (int64_t c = 0; c < bytes * 8; ++c) {
    if (!((meta[c / 8] >> (c % 8)) & 1)) continue;
    if (c >= K / m * m) return false;
    ++count[sz(c / m)];
  }
  for (int64_t g = 0; g < K / m; ++g)
    if (count[sz(g)] != n) return false;
  return true;
}

const int64_t kGroupCounts[] = {1, 2, 3, 5, 8, 13};

template <typename T>
void test_roundtrip(Rng& rng) {
  long cases = 0;
  for (int m = 2; m <= 16; ++m) {
    for (int n = 1; n < m; ++n) {
      for (int64_t groups : kGroupCounts) {
        const int64_t K = groups * m;
        const int64_t kept = nm_kept(K, n, m);
        CHECK(kept == groups * n);
        CHECK(nm_meta_bytes(K) == (K + 7) / 8);
        for (int rep = 0; rep < 3; ++rep) {
          const std::vector<T> w = random_nm_row<T>(rng, K, n, m, rep == 2);
          std::vector<T> values(sz(kept));
          std::vector<uint8_t> meta(sz(nm_meta_bytes(K)), 0xa5);  // poisoned
          std::vector<T> ref_values;
          std::vector<uint8_t> ref_meta;
          reference_encode(w, K, n, m, ref_values, ref_meta);
          const int64_t r = nm_compress_row(w.data(), K, n, m, values.data(), meta.data());
          if (!CHECK_MSG(r == -1, "%s n=%d m=%d K=%lld: compress returned %lld", type_name<T>(), n, m,
                         (long long)K, (long long)r))
            continue;
          ++cases;
          CHECK_MSG(meta == ref_meta, "%s n=%d m=%d K=%lld: meta differs from the format", type_name<T>(), n,
                    m, (long long)K);
          CHECK(reference_valid(meta.data(), K, n, m));
          bool same_values = ref_values.size() == values.size();
          for (size_t j = 0; same_values && j < values.size(); ++j)
            same_values = bits_of(values[j]) == bits_of(ref_values[j]);
          CHECK_MSG(same_values, "%s n=%d m=%d K=%lld: values differ from the format", type_name<T>(), n, m,
                    (long long)K);

          std::vector<int32_t> cols(sz(kept));
          if (!CHECK(nm_decode_row(meta.data(), K, n, m, cols.data()))) continue;
          for (int64_t j = 0; j < kept; ++j) {
            const int32_t c = cols[sz(j)];
            CHECK(c >= 0 && c < K && c / m == j / n);
            if (j > 0) CHECK(cols[sz(j - 1)] < c);
            CHECK((meta[sz(c / 8)] >> (c % 8)) & 1);
          }

          std::vector<T> dense(sz(K), from_double<T>(12345.0));  // poisoned
          std::vector<int32_t> scratch(sz(kept));
          if (!CHECK(nm_decompress_row(values.data(), meta.data(), K, n, m, scratch.data(), dense.data())))
            continue;
          for (int64_t c = 0; c < K; ++c) {
            const T a = w[sz(c)], b = dense[sz(c)];
            // zeros may change sign (dropped -0 comes back as +0); all else bit-exact
            const bool ok = zero_value(a) ? zero_value(b) : bits_of(a) == bits_of(b);
            if (!CHECK_MSG(ok, "%s n=%d m=%d K=%lld: column %lld not restored", type_name<T>(), n, m,
                           (long long)K, (long long)c))
              break;
          }
        }
      }
    }
  }
  CHECK(cases > 1000);
}

template <typename T>
void test_compress_rejects(Rng& rng) {
  for (int m = 2; m <= 16; ++m) {
    for (int n = 1; n < m; ++n) {
      for (int64_t groups : {int64_t(1), int64_t(4), int64_t(7)}) {
        const int64_t K = groups * m;
        std::vector<T> w = random_nm_row<T>(rng, K, n, m, false);
        // over-full groups g1 <= g2: n + 1 nonzeros in g1, all m in g2
        const int64_t g1 = int64_t(rng() % uint64_t(groups));
        const int64_t g2 = g1 + int64_t(rng() % uint64_t(groups - g1));
        std::vector<int> pos(sz(m));
        for (int i = 0; i < m; ++i) pos[sz(i)] = i;
        std::shuffle(pos.begin(), pos.end(), rng);
        for (int i = 0; i < m; ++i) w[sz(g1 * m + i)] = random_zero<T>(rng);
        for (int i = 0; i <= n; ++i) w[sz(g1 * m + pos[sz(i)])] = random_nonzero<T>(rng, false);
        for (int i = 0; i < m; ++i)
          if (g2 != g1) w[sz(g2 * m + i)] = random_nonzero<T>(rng, true);
        std::vector<T> values(sz(nm_kept(K, n, m)));
        std::vector<uint8_t> meta(sz(nm_meta_bytes(K)));
        const int64_t r = nm_compress_row(w.data(), K, n, m, values.data(), meta.data());
        CHECK_MSG(r == g1, "%s n=%d m=%d K=%lld: over-full group %lld, compress returned %lld",
                  type_name<T>(), n, m, (long long)K, (long long)g1, (long long)r);
      }
    }
  }
  // NaN and Inf count as nonzeros, -0 as a zero
  {
    const T nan = from_double<T>(NAN), inf = from_double<T>(INFINITY), mz = from_double<T>(-0.0);
    const T one = from_double<T>(1.0);
    const T row1[4] = {nan, inf, mz, mz};   // 2 nonzeros: fine for 2:4
    const T row2[4] = {nan, inf, one, mz};  // 3 nonzeros: rejected
    T values[2];
    uint8_t meta[1];
    CHECK(nm_compress_row(row1, 4, 2, 4, values, meta) == -1);
    CHECK(meta[0] == 0x3);
    CHECK(std::isnan(double(load(values[0]))) && std::isinf(double(load(values[1]))));
    CHECK(nm_compress_row(row2, 4, 2, 4, values, meta) == 0);
  }
  // K == 0: nothing to do, nothing written
  {
    const T* none = nullptr;
    CHECK(nm_compress_row<T>(none, 0, 2, 4, nullptr, nullptr) == -1);
    CHECK(nm_decode_row(nullptr, 0, 2, 4, nullptr));
  }
}

void test_decode_rejects(Rng& rng) {
  long flips = 0;
  for (int m = 2; m <= 16; ++m) {
    for (int n = 1; n < m; ++n) {
      for (int64_t groups : kGroupCounts) {
        const int64_t K = groups * m;
        const int64_t kept = nm_kept(K, n, m);
        const int64_t bytes = nm_meta_bytes(K);
        const std::vector<float> w = random_nm_row<float>(rng, K, n, m, false);
        std::vector<float> values(sz(kept));
        std::vector<uint8_t> meta(sz(bytes));
        if (!CHECK(nm_compress_row(w.data(), K, n, m, values.data(), meta.data()) == -1)) continue;
        std::vector<int32_t> cols(sz(kept));
        CHECK(nm_decode_row(meta.data(), K, n, m, cols.data()));

        // every single-bit flip, including the padding bits past K in the last byte
        for (int64_t c = 0; c < bytes * 8; ++c) {
          std::vector<uint8_t> bad = meta;
          bad[sz(c / 8)] = uint8_t(bad[sz(c / 8)] ^ (1u << (c % 8)));
          CHECK_MSG(!nm_decode_row(bad.data(), K, n, m, cols.data()),
                    "n=%d m=%d K=%lld: flip of bit %lld accepted", n, m, (long long)K, (long long)c);
          ++flips;
        }
        // a bit moved from one group to the next: the total count is right, the
        // per-group counts are not
        for (int64_t g = 0; g + 1 < groups; ++g) {
          std::vector<uint8_t> bad = meta;
          int64_t from = -1, to = -1;
          for (int i = 0; i < m; ++i) {
            const int64_t c = g * m + i;
            if ((bad[sz(c / 8)] >> (c % 8)) & 1) from = c;
          }
          for (int i = 0; i < m && to < 0; ++i) {
            const int64_t c = (g + 1) * m + i;
            if (!((bad[sz(c / 8)] >> (c % 8)) & 1)) to = c;
          }
          if (from < 0 || to < 0) continue;
          bad[sz(from / 8)] = uint8_t(bad[sz(from / 8)] & ~(1u << (from % 8)));
          bad[sz(to / 8)] = uint8_t(bad[sz(to / 8)] | (1u << (to % 8)));
          CHECK_MSG(!nm_decode_row(bad.data(), K, n, m, cols.data()), "n=%d m=%d K=%lld: moved bit accepted",
                    n, m, (long long)K);
        }
        // n bits in the last group moved past K (only possible when K % 8 != 0)
        if (K % 8 != 0) {
          std::vector<uint8_t> bad = meta;
          bad[sz(bytes - 1)] = uint8_t(bad[sz(bytes - 1)] | (0xffu << (K % 8)));
          CHECK(!nm_decode_row(bad.data(), K, n, m, cols.data()));
        }
        std::vector<uint8_t> zeros(sz(bytes), 0), ones(sz(bytes), 0xff);
        CHECK(!nm_decode_row(zeros.data(), K, n, m, cols.data()));
        CHECK(!nm_decode_row(ones.data(), K, n, m, cols.data()));
        // random bytes: accepted exactly when valid
        for (int rep = 0; rep < 20; ++rep) {
          std::vector<uint8_t> rnd(sz(bytes));
          for (auto& b : rnd) b = uint8_t(rng());
          CHECK(nm_decode_row(rnd.data(), K, n, m, cols.data()) == reference_valid(rnd.data(), K, n, m));
        }
        // decompress refuses bad meta too
        std::vector<float> dense(sz(K));
        CHECK(!nm_decompress_row(values.data(), ones.data(), K, n, m, cols.data(), dense.data()));
      }
    }
  }
  CHECK(flips > 10000);

  // exhaustive for short rows: every mask of two groups, accepted iff valid
  for (int m = 2; m <= 8; ++m) {
    for (int n = 1; n < m; ++n) {
      const int64_t K = 2 * m;
      const int64_t bytes = nm_meta_bytes(K);
      std::vector<int32_t> cols(sz(nm_kept(K, n, m)));
      for (uint32_t mask = 0; mask < (1u << (bytes * 8)); ++mask) {
        std::vector<uint8_t> meta(sz(bytes));
        for (int64_t b = 0; b < bytes; ++b) meta[sz(b)] = uint8_t(mask >> (8 * b));
        CHECK_MSG(nm_decode_row(meta.data(), K, n, m, cols.data()) == reference_valid(meta.data(), K, n, m),
                  "n=%d m=%d mask=0x%x", n, m, unsigned(mask));
      }
    }
  }
}

}  // namespace

int main() {
  Rng rng(20240601);
  test_roundtrip<float>(rng);
  test_roundtrip<double>(rng);
  test_roundtrip<bf16>(rng);
  test_roundtrip<fp16>(rng);
  test_compress_rejects<float>(rng);
  test_compress_rejects<double>(rng);
  test_compress_rejects<bf16>(rng);
  test_compress_rejects<fp16>(rng);
  test_decode_rejects(rng);
  return effdl_test::finish("test_nm_format");
}
