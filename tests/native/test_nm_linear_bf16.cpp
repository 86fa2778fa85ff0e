// The avx512_bf16 level's bf16 nm_linear_block (core/nm_linear_bf16.h: the
// vdpbf16ps kernels for 2:4, reached through the level's kernel table) against
// a loop over the dense weight in double, called the way the glue calls it:
// output columns split into uneven chunks, strided x and y rows, outputs
// poisoned first. Skips, saying so, on a CPU without the level or a build
// without the x86 levels.
//   M on both sides of the direct / lanes switch (12 rows) and around the lanes
//   kernel's row blocks; K with partial 32-column vectors, partial meta bytes
//   and partial chunks of decoded groups; N around the 16-column vector
//   every one of the six kept pairs, rows of a single pair, groups of zeros
//   (the format's padded kept zeros), bias or none
//   a corrupt mask (three bits in a group, a bit past K) is refused
// The same problems through nm_linear_packed_block on the weight packed by
// nm_pack_panels: right, bit for bit nm_linear_block's above its direct rows,
// and a packed nibble with three bits refused.
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "check.h"
#include "core/dtype.h"
#include "core/isa.h"
#include "core/kernel_table.h"
#include "core/nm_format.h"
#include "core/nm_packed.h"
#include "levels.h"

using namespace effdl::core;

namespace {

constexpr int kPairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};

struct Problem {
  int64_t M, K, N, ldx, ldy;
  std::vector<float> w;  // dense [N, K], bf16 values
  std::vector<bf16> x, values, bias;
  std::vector<uint8_t> meta;
};

// pattern: -1 random pairs; 0..5 that pair in every group; 6 every pair in
// turn down the rows. Every seventh group of a row is zero.
Problem make(std::mt19937& rng, int64_t M, int64_t K, int64_t N, int pattern) {
  Problem p{M, K, N, K + 3, N + 2, {}, {}, {}, {}, {}};
  std::normal_distribution<float> nd;
  std::uniform_int_distribution<int> pick(0, 5);
  auto rb = [&] { return bf16_from_float(nd(rng)); };
  p.w.assign(size_t(N * K), 0.f);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t g = 0; g < K / 4; ++g) {
      if ((r + g) % 7 == 3) continue;  // all zero: compress keeps two padding zeros
      const int q = pattern < 0 ? pick(rng) : pattern < 6 ? pattern : int((r + g) % 6);
      for (int s = 0; s < 2; ++s) {
        float v = to_float(rb());
        if (v == 0.f) v = 1.f;
        p.w[size_t(r * K + g * 4 + kPairs[q][s])] = v;
      }
    }
  const int64_t kept = nm_kept(K, 2, 4), mb = nm_meta_bytes(K);
  p.values.assign(size_t(std::max<int64_t>(N * kept, 1)), bf16{});
  p.meta.assign(size_t(std::max<int64_t>(N * mb, 1)), 0);
  std::vector<bf16> row(static_cast<size_t>(K));
  for (int64_t r = 0; r < N; ++r) {
    for (int64_t k = 0; k < K; ++k) row[size_t(k)] = bf16_from_float(p.w[size_t(r * K + k)]);
    CHECK(nm_compress_row(row.data(), K, 2, 4, p.values.data() + r * kept, p.meta.data() + r * mb) < 0);
  }
  p.x.assign(size_t(std::max<int64_t>(M * p.ldx, 1)), bf16{});
  for (auto& v : p.x) v = rb();
  p.bias.assign(size_t(N), bf16{});
  for (auto& v : p.bias) v = rb();
  return p;
}

std::vector<std::pair<int64_t, int64_t>> chunks(int64_t N, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> len(1, 21);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t b = 0; b < N;) {
    const int64_t e = std::min(N, b + len(rng));
    out.emplace_back(b, e);
    b = e;
  }
  return out;
}

constexpr uint16_t kPoison = 0x7fa5;  // a NaN no kernel writes

// y of nm_linear_block on the canonical weight, the output columns split into
// uneven chunks, poisoned first.
std::vector<bf16> run_canonical(const KernelTable& t, const Problem& p, const bf16* bias, std::mt19937& rng) {
  std::vector<bf16> y(size_t(std::max<int64_t>(p.M * p.ldy, 1)), bf16{kPoison});
  for (auto [ob, oe] : chunks(p.N, rng))
    CHECK(t.floats<bf16>().nm_linear_block(p.x.data(), p.ldx, nullptr, p.M, p.K, p.values.data(),
                                           p.meta.data(), 2, 4, bias, y.data(), p.ldy, ob, oe));
  return y;
}

std::vector<bf16> pack(const Problem& p) {
  std::vector<bf16> packed(size_t(std::max<int64_t>(nm_packed_panels(p.N) * nm_packed_cols(p.K, 2), 1)));
  CHECK(nm_pack_panels(p.values.data(), p.meta.data(), p.N, p.K, packed.data(), 0, nm_packed_panels(p.N)) < 0);
  return packed;
}

// y of nm_linear_packed_block on the packed weight, the panels split into uneven chunks.
std::vector<bf16> run_packed(const KernelTable& t, const Problem& p, const std::vector<bf16>& packed,
                             const bf16* bias, std::mt19937& rng) {
  std::vector<bf16> y(size_t(std::max<int64_t>(p.M * p.ldy, 1)), bf16{kPoison});
  for (auto [pb, pe] : chunks(nm_packed_panels(p.N), rng))
    CHECK(t.floats<bf16>().nm_linear_packed_block(p.x.data(), p.ldx, p.M, p.K, packed.data(), p.N, bias, y.data(),
                                                  p.ldy, pb, pe));
  return y;
}

void check(const Problem& p, const bf16* bias, const std::vector<bf16>& y, const char* what) {
  bool ok = true;
  for (int64_t i = 0; i < p.M && ok; ++i) {
    for (int64_t o = 0; o < p.N && ok; ++o) {
      double sum = bias ? double(to_float(bias[o])) : 0.0, mag = std::fabs(sum);
      for (int64_t k = 0; k < p.K; ++k) {
        const double term = double(to_float(p.x[size_t(i * p.ldx + k)])) * p.w[size_t(o * p.K + k)];
        sum += term;
        mag += std::fabs(term);
      }
      const double got = to_float(y[size_t(i * p.ldy + o)]);
      // one bf16 rounding of the result, fp32 rounding of the sum
      ok = CHECK_MSG(std::fabs(got - sum) <= std::fabs(sum) * 0x1p-8 + mag * 1e-6 + 1e-30,
                     "%s M=%lld K=%lld N=%lld bias=%d [%lld,%lld]: got %.9g want %.9g", what,
                     (long long)p.M, (long long)p.K, (long long)p.N, int(bias != nullptr), (long long)i,
                     (long long)o, got, sum);
    }
    for (int64_t o = p.N; o < p.ldy && ok; ++o) ok = CHECK(y[size_t(i * p.ldy + o)].bits == kPoison);
  }
}

// Both layouts against the double sums; where the packed kernel is the level's
// fast path (from nm_packed_min_rows rows) it is nm_linear's kernel: the same bits.
void check_both(const KernelTable& t, const Problem& p, bool with_bias, std::mt19937& rng, const char* what) {
  const bf16* bias = with_bias ? p.bias.data() : nullptr;
  const std::vector<bf16> canonical = run_canonical(t, p, bias, rng);
  check(p, bias, canonical, what);
  const std::vector<bf16> packed = run_packed(t, p, pack(p), bias, rng);
  check(p, bias, packed, what);
  if (p.M >= t.floats<bf16>().nm_packed_min_rows) {
    bool same = true;
    for (size_t j = 0; j < packed.size() && same; ++j) same = CHECK(packed[j].bits == canonical[j].bits);
  }
}

void check_refused(const KernelTable& t, const Problem& p) {
  const int64_t mb = nm_meta_bytes(p.K), row = p.N / 2;
  std::vector<bf16> y(size_t(std::max<int64_t>(p.M * p.ldy, 1)));
  std::vector<uint8_t> bad = p.meta;
  bad[size_t(row * mb)] = uint8_t((bad[size_t(row * mb)] & 0xf0) | 0x07);  // three bits in group 0
  CHECK(!t.floats<bf16>().nm_linear_block(p.x.data(), p.ldx, nullptr, p.M, p.K, p.values.data(), bad.data(),
                                          2, 4, nullptr, y.data(), p.ldy, 0, p.N));
  // a packed nibble of a live column with three bits
  std::vector<bf16> packed = pack(p);
  const int64_t cols = nm_packed_cols(p.K, 2), G = p.K / 4;
  uint8_t* words = reinterpret_cast<uint8_t*>(packed.data() + row / 16 * cols + G * 32);
  words[4 * (row % 16)] |= 0x07;
  CHECK(!t.floats<bf16>().nm_linear_packed_block(p.x.data(), p.ldx, p.M, p.K, packed.data(), p.N, nullptr, y.data(),
                                                 p.ldy, 0, nm_packed_panels(p.N)));
  if (p.K % 8 != 0) {  // a bit past K in the last byte
    bad = p.meta;
    bad[size_t(row * mb + mb - 1)] |= 0x80;
    CHECK(!t.floats<bf16>().nm_linear_block(p.x.data(), p.ldx, nullptr, p.M, p.K, p.values.data(),
                                            bad.data(), 2, 4, nullptr, y.data(), p.ldy, 0, p.N));
  }
}

}  // namespace

int main() {
  return effdl_test::level_main(Isa::kAvx512Bf16, "test_nm_linear_bf16", [](const KernelTable& t) {
    // both 2:4 kernels read x directly: the glue packs no xt for them
    CHECK(!t.floats<bf16>().nm_reads_xt(130, 2, 4) && t.floats<bf16>().nm_reads_xt(130, 1, 4));
    std::mt19937 rng(7);
    const int64_t Ms[] = {1, 2, 3, 4, 5, 8, 12, 13, 16, 23, 24, 25, 31, 40, 130};
    const int64_t Ks[] = {4, 8, 28, 32, 36, 100, 256, 260, 1028};
    const int64_t Ns[] = {1, 5, 16, 17, 37};
    for (int64_t M : Ms)
      for (int64_t K : Ks) {
        const int64_t N = Ns[size_t(M + K) % 5];
        const Problem p = make(rng, M, K, N, -1);
        check_both(t, p, true, rng, "random pairs");
        check_both(t, p, false, rng, "random pairs");
        if (K >= 8 && N > 1) check_refused(t, p);
      }
    for (int pattern = 0; pattern <= 6; ++pattern)
      for (int64_t M : {3, 30})
        for (int64_t K : {36, 260}) {
          const Problem p = make(rng, M, K, 19, pattern);
          check_both(t, p, true, rng, pattern < 6 ? "one pair" : "pairs in turn");
        }
  });
}
