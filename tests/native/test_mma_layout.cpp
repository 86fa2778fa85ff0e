// csrc/cuda/mma_layout.h: the index maps of the tensor-core kernels, run on the
// CPU against an emulation of the instructions written from the PTX ISA text
// (independently of the header):
//   - ldmatrix.sync.aligned.m8n8.x4.b16: lane l supplies the address of row
//     l % 8 of matrix l / 8; register j of lane l receives the 16-bit units
//     2 (l % 4), 2 (l % 4) + 1 of row l / 4 of matrix j.
//   - mma.sp m16n8k32 fp16/bf16 (sparsity selector 0), with g = l / 4, t = l % 4:
//     A register r, half h = kept column 2t + h + 8 (r / 2) of row g + 8 (r % 2),
//     kept column kc being the (kc % 2)-th kept value of group kc / 2;
//     metadata of group c of row R at lane 4 (R % 8) + c / 4, bits
//     16 (R / 8) + 4 (c % 4) + 2 s (two bits, index of the s-th kept value);
//     B register r, half h = B[2t + h + 8r][g]; D element e = D[g + 8 (e / 2)][2t + e % 2].
//   - mma m16n8k32 s8: A register r, byte b = A[g + 8 (r % 2)][4t + b + 16 (r / 2)];
//     B register r, byte b = B[4t + b + 16 r][g]; D as above.
//   - mma.sp m16n8k64 s8 (selector 0): A as the s8 mma over the 32 kept bytes, metadata
//     as the fp16 form over 64 columns (all four lanes of a quad), B register r,
//     byte b = B[4t + b + 16 r][g] (mma_sp_s8_emulate says it in full).
// The kernels' whole block algorithm (cp.async staging with zero fill, ldmatrix
// addresses, metadata reorder from effdl's canonical meta, mma, epilogue) is
// replayed through the header's maps over grids with ragged M, N (and K for
// int8) and must reproduce the dense product exactly (small integer data, so
// every fp32 sum is exact). What this cannot show: that the PTX text is read
// right, and timing/synchronisation on the device; the cuda-marked tests do.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "check.h"
#include "core/nm_format.h"
#include "cuda/mma_layout.h"

using namespace effdl;
using namespace effdl::mma;

namespace {

using Rng = std::mt19937_64;
inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

// ---------------------------------------------------------------- instruction emulation (PTX ISA)

// A register of two 16-bit units (kept as floats: the test data are small integers).
using Reg16 = std::array<float, 2>;
// A register of four bytes.
using Reg8 = std::array<int8_t, 4>;

// ldmatrix.x4 over 16-bit units: addr[l] is the unit offset lane l supplies.
template <typename Unit, typename Fetch>
void ldsm_x4(const std::array<int64_t, 32>& addr, Fetch fetch, std::array<std::array<Unit, 4>, 32>& out) {
  for (int l = 0; l < 32; ++l) {
    for (int j = 0; j < 4; ++j) {
      const int64_t row = addr[sz(8 * j + l / 4)];
      out[sz(l)][sz(j)] = fetch(row + 2 * (l % 4));
    }
  }
}

// D[16][8] += A * B for mma.sp m16n8k32, selector 0. Records whether every
// group's two indices were ascending and distinct (what ordered metadata needs).
void mma_sp_emulate(const std::array<std::array<Reg16, 4>, 32>& a, const std::array<std::array<Reg16, 4>, 32>& b,
                    const std::array<uint32_t, 32>& meta, double (&d)[16][8], bool& ordered) {
  double A[16][32] = {};
  for (int R = 0; R < 16; ++R) {
    for (int c = 0; c < 8; ++c) {
      const uint32_t word = meta[sz(4 * (R % 8) + c / 4)];
      const uint32_t nib = (word >> (16 * (R / 8) + 4 * (c % 4))) & 0xFu;
      const uint32_t i0 = nib & 3u, i1 = nib >> 2;
      if (!(i0 < i1)) ordered = false;
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int r = 0; r < 4; ++r) {
      for (int h = 0; h < 2; ++h) {
        const int row = g + 8 * (r % 2), kc = 2 * t + h + 8 * (r / 2);
        const int grp = kc / 2, s = kc % 2;
        const uint32_t word = meta[sz(4 * (row % 8) + grp / 4)];
        const uint32_t idx = (word >> (16 * (row / 8) + 4 * (grp % 4) + 2 * s)) & 3u;
        A[row][4 * grp + int(idx)] += double(a[sz(l)][sz(r)][sz(h)]);
      }
    }
  }
  double B[32][8] = {};
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int r = 0; r < 4; ++r)
      for (int h = 0; h < 2; ++h) B[2 * t + h + 8 * r][g] = double(b[sz(l)][sz(r)][sz(h)]);
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 32; ++k) d[i][j] += A[i][k] * B[k][j];
}

// D[16][8] += A * B for mma m16n8k32 s8.
void mma_s8_emulate(const std::array<std::array<Reg8, 4>, 32>& a, const std::array<std::array<Reg8, 2>, 32>& b,
                    int64_t (&d)[16][8]) {
  int64_t A[16][32] = {}, B[32][8] = {};
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int r = 0; r < 4; ++r)
      for (int y = 0; y < 4; ++y) A[g + 8 * (r % 2)][4 * t + y + 16 * (r / 2)] = a[sz(l)][sz(r)][sz(y)];
    for (int r = 0; r < 2; ++r)
      for (int y = 0; y < 4; ++y) B[4 * t + y + 16 * r][g] = b[sz(l)][sz(r)][sz(y)];
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 32; ++k) d[i][j] += A[i][k] * B[k][j];
}

// D[16][8] += A * B for mma.sp m16n8k64 s8, selector 0: A register r, byte b = kept
// column 4t + b + 16 (r / 2) of row g + 8 (r % 2), kept column kc being the
// (kc % 2)-th kept value of group kc / 2; metadata of group c (0..15) of row R at
// lane 4 (R % 8) + c / 4, bits 16 (R / 8) + 4 (c % 4) + 2 s; B register r, byte b
// = B[4t + b + 16 r][g].
void mma_sp_s8_emulate(const std::array<std::array<Reg8, 4>, 32>& a, const std::array<std::array<Reg8, 4>, 32>& b,
                       const std::array<uint32_t, 32>& meta, int64_t (&d)[16][8], bool& ordered) {
  int64_t A[16][64] = {}, B[64][8] = {};
  for (int R = 0; R < 16; ++R) {
    for (int c = 0; c < 16; ++c) {
      const uint32_t nib = (meta[sz(4 * (R % 8) + c / 4)] >> (16 * (R / 8) + 4 * (c % 4))) & 0xFu;
      if (!((nib & 3u) < (nib >> 2))) ordered = false;
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int r = 0; r < 4; ++r) {
      for (int y = 0; y < 4; ++y) {
        const int row = g + 8 * (r % 2), kc = 4 * t + y + 16 * (r / 2);
        const int grp = kc / 2, s = kc % 2;
        const uint32_t idx = (meta[sz(4 * (row % 8) + grp / 4)] >> (16 * (row / 8) + 4 * (grp % 4) + 2 * s)) & 3u;
        A[row][4 * grp + int(idx)] += a[sz(l)][sz(r)][sz(y)];
        B[4 * t + y + 16 * r][g] = b[sz(l)][sz(r)][sz(y)];
      }
    }
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 64; ++k) d[i][j] += A[i][k] * B[k][j];
}

// ---------------------------------------------------------------- metadata reorder

void test_nibbles() {
  for (uint32_t mask = 0; mask < 16; ++mask) {
    int bits[4], n = 0;
    for (int i = 0; i < 4; ++i)
      if ((mask >> i) & 1u) bits[n++] = i;
    const uint32_t got = nm24_index_nibble_of(mask);
    const uint32_t want = n == 2 ? uint32_t(bits[0] | bits[1] << 2) : 0x4u;
    CHECK_MSG(got == want, "mask %u -> %u, want %u", mask, got, want);
    CHECK(got != 0x0u && got != 0x5u && got != 0xAu && got != 0xFu);  // never an undefined encoding
    CHECK(uint32_t((kNm24NibbleTable >> (4 * mask)) & 0xFu) == got);
  }
  // nm24_meta16 maps each nibble on its own, in place
  Rng rng(1);
  for (int it = 0; it < 2000; ++it) {
    const uint32_t w = uint32_t(rng()) & 0xFFFFu;
    uint32_t want = 0;
    for (int g = 0; g < 4; ++g) want |= nm24_index_nibble_of((w >> (4 * g)) & 0xFu) << (4 * g);
    CHECK(nm24_meta16(w) == want);
    const uint32_t w2 = uint32_t(rng()) & 0xFFFFu;
    CHECK(sp_meta_word(w, w2) == (nm24_meta16(w) | nm24_meta16(w2) << 16));
  }
}

// Every chunk of a [rows x chunks] copy is planned exactly once.
void test_copy_plan() {
  const int shapes[][2] = {{64, 4}, {64, 8}, {64, 1}};
  for (const auto& s : shapes) {
    std::vector<int> hits(sz(s[0] * s[1]), 0);
    for (int tid = 0; tid < kTileThreads; ++tid) {
      for (int it = 0; it < tile_iters(s[0], s[1]); ++it) {
        const int r = tile_row(tid, it, s[1]), c = tile_chunk(tid, it, s[1]);
        if (r < s[0]) ++hits[sz(r * s[1] + c)];  // the kernels guard r the same way (tid < rows for meta)
      }
    }
    for (int h : hits) CHECK(h == 1);
  }
}

// Every K block in exactly one split, no split empty, none shorter than the minimum unless unsplit.
void test_splitk_plan() {
  for (int64_t kblocks = 0; kblocks <= 300; ++kblocks) {
    for (int64_t blocks : {1, 2, 7, 64, 100, 264, 1000}) {
      for (int64_t sms : {1, 108, 132}) {
        const SplitK p = splitk_plan(kblocks, blocks, sms);
        CHECK(p.splits >= 1 && p.per >= 0);
        if (p.splits == 1) {
          CHECK(p.per == kblocks);
          continue;
        }
        CHECK(p.per >= kMinSplitKBlocks);
        CHECK(p.splits * blocks <= 2 * sms + blocks);  // never far past two waves
        std::vector<int> hits(sz(kblocks), 0);
        for (int64_t z = 0; z < p.splits; ++z) {
          const KRange r = splitk_range(z, p.per, kblocks);  // the kernels' range of split z
          const int64_t b0 = r.first, b1 = r.end;
          CHECK(b0 < b1 && b1 <= kblocks);
          for (int64_t b = b0; b < b1; ++b) ++hits[sz(b)];
        }
        for (int h : hits) CHECK(h == 1);
      }
    }
  }
}

// ---------------------------------------------------------------- nm 2:4 block algorithm

// The kernels' epilogue over a block's four warps: element el of lane l of warp tile (i, j) is A row
// a0 + warp_m0 + 16 i + acc_row and B column b0 + warp_n0 + 8 j + acc_col; store(a, b, value) gets
// those inside [0, a_rows) x [0, b_cols).
template <typename Acc, typename Store>
void for_each_output(const std::vector<std::array<Acc[16][8], 8>>& acc, int64_t a0, int64_t b0, int64_t a_rows,
                     int64_t b_cols, Store store) {
  for (int warp = 0; warp < 4; ++warp)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 4; ++j)
        for (int l = 0; l < 32; ++l)
          for (int el = 0; el < 4; ++el) {
            const int rr = acc_row(l, el), cc = acc_col(l, el);
            const int64_t a = a0 + warp_m0(warp) + 16 * i + rr, b = b0 + warp_n0(warp) + 8 * j + cc;
            if (a < a_rows && b < b_cols) store(a, b, acc[sz(warp)][sz(i * 4 + j)][rr][cc]);
          }
}


constexpr float kPoison = 1e30f;  // shared cells the copy plan never writes; reading one breaks exactness

struct NmShared {
  std::vector<float> vals, x;
  std::vector<uint8_t> meta;
  NmShared()
      : vals(sz(kTileM * kNmValStride), kPoison), x(sz(kTileN * kNmXStride), kPoison),
        meta(sz(kTileM * kNmMetaStride), 0xEE) {}
};

// The kernel's nm_tc_load: cp.async of 16-byte chunks (8 units), zero fill past N / M.
void nm_stage(NmShared& s, const std::vector<float>& x, const std::vector<float>& values,
              const std::vector<uint8_t>& meta, int64_t M, int64_t N, int64_t K, int64_t n0, int64_t m0, int64_t kb) {
  constexpr int kValChunks = kNmBK / 2 / 8, kXChunks = kNmBK / 8;
  for (int tid = 0; tid < kTileThreads; ++tid) {
    for (int it = 0; it < tile_iters(kTileM, kValChunks); ++it) {
      const int r = tile_row(tid, it, kValChunks), c = tile_chunk(tid, it, kValChunks);
      for (int u = 0; u < 8; ++u) {
        s.vals[sz(r * kNmValStride + c * 8 + u)] =
            n0 + r < N ? values[sz((n0 + r) * (K / 2) + kb * (kNmBK / 2) + c * 8 + u)] : 0.f;
      }
    }
    for (int it = 0; it < tile_iters(kTileN, kXChunks); ++it) {
      const int r = tile_row(tid, it, kXChunks), c = tile_chunk(tid, it, kXChunks);
      for (int u = 0; u < 8; ++u) {
        s.x[sz(r * kNmXStride + c * 8 + u)] = m0 + r < M ? x[sz((m0 + r) * K + kb * kNmBK + c * 8 + u)] : 0.f;
      }
    }
    if (tid < kTileM) {
      for (int u = 0; u < 8; ++u) {
        s.meta[sz(tid * kNmMetaStride + u)] =
            n0 + tid < N ? meta[sz((n0 + tid) * (K / 8) + kb * kNmMetaStride + u)] : uint8_t(0);
      }
    }
  }
}

// y[M, N] = x[M, K] @ W[N, K].T through the kernel's block algorithm.
// With split-K (`per` K blocks a split) each split's partial sums are added
// into y in split order, as nm_splitk_reduce_kernel does; `writes` counts them.
std::vector<double> nm_emulate(const std::vector<float>& x, const std::vector<float>& values,
                               const std::vector<uint8_t>& meta, int64_t M, int64_t N, int64_t K, int64_t per,
                               bool& ordered, std::vector<int>& writes) {
  std::vector<double> y(sz(M * N), 0.0);
  writes.assign(sz(M * N), 0);
  const int64_t kblocks = K / kNmBK;
  for (int64_t kb0 = 0; kb0 < kblocks; kb0 += per)  // one split at a time (grid z)
    for (int64_t n0 = 0; n0 < N; n0 += kTileM) {
    for (int64_t m0 = 0; m0 < M; m0 += kTileN) {
      std::vector<std::array<double[16][8], 8>> acc(4);  // [warp][i * 4 + j]
      for (auto& w : acc)
        for (auto& t : w) std::memset(t, 0, sizeof t);
      for (int64_t kb = kb0; kb < std::min(kblocks, kb0 + per); ++kb) {
        NmShared s;
        nm_stage(s, x, values, meta, M, N, K, n0, m0, kb);
        for (int warp = 0; warp < 4; ++warp) {
          const int wm = warp_m0(warp), wn = warp_n0(warp);
          for (int ks = 0; ks < kNmBK / 32; ++ks) {
            std::array<std::array<Reg16, 4>, 32> a[2], b[4];
            std::array<uint32_t, 32> e[2];
            auto fetch_v = [&](int64_t u) { return Reg16{s.vals[sz(u)], s.vals[sz(u + 1)]}; };
            auto fetch_x = [&](int64_t u) { return Reg16{s.x[sz(u)], s.x[sz(u + 1)]}; };
            for (int i = 0; i < 2; ++i) {
              std::array<int64_t, 32> addr;
              for (int l = 0; l < 32; ++l) {
                addr[sz(l)] = int64_t(wm + 16 * i + ldsm_a_row(l)) * kNmValStride + ks * 16 + ldsm_a_unit(l);
                const int r = wm + 16 * i + sp_meta_row(l), byte = ks * 4 + sp_meta_half(l) * 2;
                auto m16 = [&](int row) {
                  return uint32_t(s.meta[sz(row * kNmMetaStride + byte)]) |
                         uint32_t(s.meta[sz(row * kNmMetaStride + byte + 1)]) << 8;
                };
                e[i][sz(l)] = sp_meta_word(m16(r), m16(r + 8));
              }
              ldsm_x4<Reg16>(addr, fetch_v, a[i]);
            }
            for (int j = 0; j < 4; ++j) {
              std::array<int64_t, 32> addr;
              for (int l = 0; l < 32; ++l)
                addr[sz(l)] = int64_t(wn + 8 * j + ldsm_b16_row(l)) * kNmXStride + ks * 32 + ldsm_b16_unit(l);
              ldsm_x4<Reg16>(addr, fetch_x, b[j]);
            }
            for (int i = 0; i < 2; ++i)
              for (int j = 0; j < 4; ++j) mma_sp_emulate(a[i], b[j], e[i], acc[sz(warp)][sz(i * 4 + j)], ordered);
          }
        }
      }
      for_each_output(acc, n0, m0, N, M, [&](int64_t o, int64_t t, double v) {  // features are A rows
        y[sz(t * N + o)] += v;
        ++writes[sz(t * N + o)];
      });
    }
  }
  return y;
}

void test_nm_block(Rng& rng, int64_t M, int64_t N, int64_t K, int64_t per) {
  // dense 2:4 weight: every group one of the six patterns, some kept values zero
  // (compress then keeps the lowest-index zeros), small integers throughout
  std::uniform_int_distribution<int> val(-4, 4), pat(0, 5);
  static const int kPatterns[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::vector<float> W(sz(N * K), 0.f), x(sz(M * K));
  for (int64_t r = 0; r < N; ++r)
    for (int64_t g = 0; g < K / 4; ++g) {
      const int p = pat(rng);
      for (int s = 0; s < 2; ++s) W[sz(r * K + 4 * g + kPatterns[p][s])] = float(val(rng));
    }
  for (auto& v : x) v = float(val(rng));
  std::vector<float> values(sz(N * K / 2));
  std::vector<uint8_t> meta(sz(N * core::nm_meta_bytes(K)));
  for (int64_t r = 0; r < N; ++r) {
    CHECK(core::nm_compress_row(&W[sz(r * K)], K, 2, 4, &values[sz(r * K / 2)],
                                &meta[sz(r * core::nm_meta_bytes(K))]) == -1);
  }
  bool ordered = true;
  std::vector<int> writes;
  const std::vector<double> y = nm_emulate(x, values, meta, M, N, K, per, ordered, writes);
  const int64_t splits = (K / kNmBK + per - 1) / per;
  for (int w : writes) CHECK(w == splits);
  CHECK_MSG(ordered, "M=%lld N=%lld K=%lld: metadata indices not ascending", (long long)M, (long long)N,
            (long long)K);
  long bad = 0;
  for (int64_t t = 0; t < M; ++t)
    for (int64_t o = 0; o < N; ++o) {
      double want = 0;
      for (int64_t k = 0; k < K; ++k) want += double(x[sz(t * K + k)]) * double(W[sz(o * K + k)]);
      bad += y[sz(t * N + o)] != want ? 1 : 0;
    }
  CHECK_MSG(bad == 0, "nm M=%lld N=%lld K=%lld: %ld wrong outputs", (long long)M, (long long)N, (long long)K, bad);
}

// ---------------------------------------------------------------- int8 block algorithm

struct I8Shared {
  std::vector<int> q, w;  // bytes, int to hold the poison
  I8Shared() : q(sz(kTileM * kI8Stride), 1000), w(sz(kTileN * kI8Stride), 1000) {}
};

// tc_pipeline.cuh's stage_rows: bytes [col0, col0 + bytes) of rows [r0, r0 + kTileM) of src
// (`rows` rows, `pitch` bytes apart) into dst rows `stride` apart, 16-byte chunks, a chunk of a row
// past `rows` or at/past byte `limit` zero-filled.
void stage_rows(std::vector<int>& dst, int stride, const std::vector<int8_t>& src, int64_t rows, int64_t pitch,
                int64_t r0, int64_t col0, int64_t limit, int bytes) {
  const int chunks = bytes / 16;
  for (int tid = 0; tid < kTileThreads; ++tid) {
    for (int it = 0; it < tile_iters(kTileM, chunks); ++it) {
      const int r = tile_row(tid, it, chunks), c = tile_chunk(tid, it, chunks);
      if (r >= kTileM) break;
      const int64_t col = col0 + c * 16;
      const bool ok = r0 + r < rows && col < limit;
      for (int u = 0; u < 16; ++u) dst[sz(r * stride + c * 16 + u)] = ok ? src[sz((r0 + r) * pitch + col + u)] : 0;
    }
  }
}

// Fetches four bytes at 16-bit unit `unit` of a staged tile, flagging a read of the poison.
auto byte_fetch(const std::vector<int>& mem, bool& poison_read) {
  return [&mem, &poison_read](int64_t unit) {
    Reg8 r;
    for (int y = 0; y < 4; ++y) {
      const int v = mem[sz(2 * unit + y)];
      if (v == 1000) poison_read = true;
      r[sz(y)] = int8_t(v);
    }
    return r;
  };
}

void i8_stage(std::vector<int>& dst, const std::vector<int8_t>& src, int64_t rows, int64_t K, int64_t r0, int64_t k0) {
  stage_rows(dst, kI8Stride, src, rows, K, r0, k0, K, kI8BK);
}

std::vector<int64_t> i8_emulate(const std::vector<int8_t>& q, const std::vector<int8_t>& wq, int64_t M, int64_t N,
                                int64_t K, int64_t per, bool& poison_read, std::vector<int>& writes) {
  std::vector<int64_t> y(sz(M * N), 0);
  writes.assign(sz(M * N), 0);
  const int64_t kblocks = (K + kI8BK - 1) / kI8BK;
  for (int64_t kb0 = 0; kb0 < kblocks; kb0 += per)  // one split at a time (grid z)
    for (int64_t n0 = 0; n0 < N; n0 += kTileN) {
    for (int64_t m0 = 0; m0 < M; m0 += kTileM) {
      std::vector<std::array<int64_t[16][8], 8>> acc(4);
      for (auto& w : acc)
        for (auto& t : w) std::memset(t, 0, sizeof t);
      for (int64_t kb = kb0; kb < std::min(kblocks, kb0 + per); ++kb) {
        I8Shared s;
        i8_stage(s.q, q, M, K, m0, kb * kI8BK);
        i8_stage(s.w, wq, N, K, n0, kb * kI8BK);
        for (int warp = 0; warp < 4; ++warp) {
          const int wm = warp_m0(warp), wn = warp_n0(warp);
          for (int ks = 0; ks < kI8BK / 32; ++ks) {
            std::array<std::array<Reg8, 4>, 32> a[2], bw[2];
            std::array<std::array<Reg8, 2>, 32> b[4];
            for (int i = 0; i < 2; ++i) {
              std::array<int64_t, 32> addr;  // in 16-bit units
              for (int l = 0; l < 32; ++l)
                addr[sz(l)] = (int64_t(wm + 16 * i + ldsm_a_row(l)) * kI8Stride + ks * 32) / 2 + ldsm_a_unit(l);
              ldsm_x4<Reg8>(addr, byte_fetch(s.q, poison_read), a[i]);
            }
            for (int p = 0; p < 2; ++p) {
              std::array<int64_t, 32> addr;
              for (int l = 0; l < 32; ++l)
                addr[sz(l)] = (int64_t(wn + 16 * p + ldsm_b8_row(l)) * kI8Stride + ks * 32) / 2 + ldsm_b8_unit(l);
              ldsm_x4<Reg8>(addr, byte_fetch(s.w, poison_read), bw[p]);
              for (int l = 0; l < 32; ++l) {
                b[2 * p][sz(l)] = {bw[p][sz(l)][0], bw[p][sz(l)][1]};
                b[2 * p + 1][sz(l)] = {bw[p][sz(l)][2], bw[p][sz(l)][3]};
              }
            }
            for (int i = 0; i < 2; ++i)
              for (int j = 0; j < 4; ++j) mma_s8_emulate(a[i], b[j], acc[sz(warp)][sz(i * 4 + j)]);
          }
        }
      }
      for_each_output(acc, m0, n0, M, N, [&](int64_t t, int64_t o, int64_t v) {  // tokens are A rows
        y[sz(t * N + o)] += v;
        ++writes[sz(t * N + o)];
      });
    }
  }
  return y;
}

void test_i8_block(Rng& rng, int64_t M, int64_t N, int64_t K, int64_t per) {
  std::uniform_int_distribution<int> val(-127, 127);
  std::vector<int8_t> q(sz(M * K)), wq(sz(N * K));
  for (auto& v : q) v = int8_t(val(rng));
  for (auto& v : wq) v = int8_t(val(rng));
  bool poison = false;
  std::vector<int> writes;
  const std::vector<int64_t> y = i8_emulate(q, wq, M, N, K, per, poison, writes);
  const int64_t splits = ((K + kI8BK - 1) / kI8BK + per - 1) / per;
  for (int w : writes) CHECK(w == splits);
  CHECK_MSG(!poison, "int8 M=%lld N=%lld K=%lld: a shared byte no copy wrote was read", (long long)M,
            (long long)N, (long long)K);
  long bad = 0;
  for (int64_t t = 0; t < M; ++t)
    for (int64_t o = 0; o < N; ++o) {
      int64_t want = 0;
      for (int64_t k = 0; k < K; ++k) want += int64_t(q[sz(t * K + k)]) * int64_t(wq[sz(o * K + k)]);
      bad += y[sz(t * N + o)] != want ? 1 : 0;
    }
  CHECK_MSG(bad == 0, "int8 M=%lld N=%lld K=%lld: %ld wrong outputs", (long long)M, (long long)N, (long long)K,
            bad);
}

// ---------------------------------------------------------------- nm 2:4 int8 block algorithm

// y[M, N] = q[M, K] @ W[N, K].T through nm24_int8_linear_tc_kernel's block algorithm
// (values / meta: W in canonical 2:4 storage), split-K partial sums added in split order.
std::vector<int64_t> nm_i8_emulate(const std::vector<int8_t>& q, const std::vector<int8_t>& values,
                                   const std::vector<uint8_t>& meta, int64_t M, int64_t N, int64_t K, int64_t per,
                                   bool& ordered, bool& poison_read, std::vector<int>& writes) {
  std::vector<int64_t> y(sz(M * N), 0);
  writes.assign(sz(M * N), 0);
  const int64_t kblocks = K / kNmI8BK;
  for (int64_t kb0 = 0; kb0 < kblocks; kb0 += per)  // one split at a time (grid z)
    for (int64_t n0 = 0; n0 < N; n0 += kTileM)
      for (int64_t m0 = 0; m0 < M; m0 += kTileN) {
        std::vector<std::array<int64_t[16][8], 8>> acc(4);
        for (auto& w : acc)
          for (auto& t : w) std::memset(t, 0, sizeof t);
        for (int64_t kb = kb0; kb < std::min(kblocks, kb0 + per); ++kb) {
          std::vector<int> vals(sz(kTileM * kNmI8ValStride), 1000), qs(sz(kTileN * kNmI8QStride), 1000);
          std::vector<uint8_t> ms(sz(kTileM * kNmI8MetaStride), 0xEE);
          stage_rows(vals, kNmI8ValStride, values, N, K / 2, n0, kb * (kNmI8BK / 2), K / 2, kNmI8BK / 2);
          stage_rows(qs, kNmI8QStride, q, M, K, m0, kb * kNmI8BK, K, kNmI8BK);
          for (int r = 0; r < kTileM; ++r)  // the 8-byte meta copy of threads tid < kTileM
            for (int u = 0; u < kNmI8MetaStride; ++u)
              ms[sz(r * kNmI8MetaStride + u)] = n0 + r < N ? meta[sz((n0 + r) * (K / 8) + kb * kNmI8MetaStride + u)] : 0;
          for (int warp = 0; warp < 4; ++warp) {
            const int wm = warp_m0(warp), wn = warp_n0(warp);
            std::array<std::array<Reg8, 4>, 32> a[2], b[4];
            std::array<uint32_t, 32> e[2];
            for (int i = 0; i < 2; ++i) {
              std::array<int64_t, 32> addr;  // in 16-bit units
              for (int l = 0; l < 32; ++l) {
                addr[sz(l)] = (int64_t(wm + 16 * i + ldsm_a_row(l)) * kNmI8ValStride) / 2 + ldsm_a_unit(l);
                const int r = wm + 16 * i + sp_meta_row(l), byte = 2 * sp8_meta_quarter(l);
                auto m16 = [&](int row) {
                  return uint32_t(ms[sz(row * kNmI8MetaStride + byte)]) |
                         uint32_t(ms[sz(row * kNmI8MetaStride + byte + 1)]) << 8;
                };
                e[i][sz(l)] = sp_meta_word(m16(r), m16(r + 8));
              }
              ldsm_x4<Reg8>(addr, byte_fetch(vals, poison_read), a[i]);
            }
            for (int j = 0; j < 4; ++j) {
              std::array<int64_t, 32> addr;
              for (int l = 0; l < 32; ++l)
                addr[sz(l)] = (int64_t(wn + 8 * j + ldsm_b16_row(l)) * kNmI8QStride) / 2 + ldsm_b16_unit(l);
              ldsm_x4<Reg8>(addr, byte_fetch(qs, poison_read), b[j]);
            }
            for (int i = 0; i < 2; ++i)
              for (int j = 0; j < 4; ++j)
                mma_sp_s8_emulate(a[i], b[j], e[i], acc[sz(warp)][sz(i * 4 + j)], ordered);
          }
        }
        for_each_output(acc, n0, m0, N, M, [&](int64_t o, int64_t t, int64_t v) {  // features are A rows
          y[sz(t * N + o)] += v;
          ++writes[sz(t * N + o)];
        });
      }
  return y;
}

void test_nm_i8_block(Rng& rng, int64_t M, int64_t N, int64_t K, int64_t per) {
  // every group one of the six 2:4 patterns, some kept values zero, the extreme bytes included
  std::uniform_int_distribution<int> val(-128, 127), pat(0, 5), coin(0, 9);
  static const int kPatterns[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::vector<int8_t> W(sz(N * K), 0), q(sz(M * K));
  for (int64_t r = 0; r < N; ++r)
    for (int64_t g = 0; g < K / 4; ++g) {
      const int p = pat(rng);
      for (int s = 0; s < 2; ++s) W[sz(r * K + 4 * g + kPatterns[p][s])] = coin(rng) == 0 ? 0 : int8_t(val(rng));
    }
  for (auto& v : q) v = coin(rng) == 0 ? int8_t(-128) : int8_t(val(rng));
  // compressed as floats (exact for bytes), as effdl's int8 2:4 weights are
  const std::vector<float> Wf(W.begin(), W.end());
  std::vector<float> values_f(sz(N * K / 2));
  std::vector<uint8_t> meta(sz(N * core::nm_meta_bytes(K)));
  for (int64_t r = 0; r < N; ++r) {
    CHECK(core::nm_compress_row(&Wf[sz(r * K)], K, 2, 4, &values_f[sz(r * K / 2)],
                                &meta[sz(r * core::nm_meta_bytes(K))]) == -1);
  }
  const std::vector<int8_t> values(values_f.begin(), values_f.end());
  bool ordered = true, poison = false;
  std::vector<int> writes;
  const std::vector<int64_t> y = nm_i8_emulate(q, values, meta, M, N, K, per, ordered, poison, writes);
  const int64_t splits = (K / kNmI8BK + per - 1) / per;
  for (int w : writes) CHECK(w == splits);
  CHECK_MSG(ordered && !poison, "nm int8 M=%lld N=%lld K=%lld: unordered metadata or a poisoned read",
            (long long)M, (long long)N, (long long)K);
  long bad = 0;
  for (int64_t t = 0; t < M; ++t)
    for (int64_t o = 0; o < N; ++o) {
      int64_t want = 0;
      for (int64_t k = 0; k < K; ++k) want += int64_t(q[sz(t * K + k)]) * int64_t(W[sz(o * K + k)]);
      bad += y[sz(t * N + o)] != want ? 1 : 0;
    }
  CHECK_MSG(bad == 0, "nm int8 M=%lld N=%lld K=%lld: %ld wrong outputs", (long long)M, (long long)N,
            (long long)K, bad);
}

}  // namespace

int main() {
  test_nibbles();
  test_copy_plan();
  test_splitk_plan();
  Rng rng(7);
  // ragged M and N (tails of the 64 x 64 block and of the 16 x 8 mma tiles), several K blocks
  // (M, N, K, K blocks per split): unsplit, and split-K with a short last range
  const int64_t nm_shapes[][4] = {{1, 16, 64, 1},   {8, 64, 64, 1},  {70, 72, 128, 2},
                                  {3, 130, 192, 3}, {129, 65, 64, 1}, {5, 40, 448, 4}, {2, 24, 640, 4}};
  for (const auto& s : nm_shapes) test_nm_block(rng, s[0], s[1], s[2], s[3]);
  // int8: K a multiple of 16 but not of the 64-byte K block too (zero-filled chunks)
  const int64_t i8_shapes[][4] = {{1, 8, 16, 1},    {16, 64, 64, 1}, {70, 72, 112, 2}, {65, 130, 208, 4},
                                  {3, 5, 32, 1},    {4, 20, 592, 4}, {2, 9, 1040, 5}};
  for (const auto& s : i8_shapes) test_i8_block(rng, s[0], s[1], s[2], s[3]);
  for (const auto& s : nm_shapes) test_nm_i8_block(rng, s[0], s[1], s[2], s[3]);
  return effdl_test::finish("test_mma_layout");
}
