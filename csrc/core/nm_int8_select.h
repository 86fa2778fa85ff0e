// 2:4 nm_int8_linear on AVX-512 VNNI by selecting activations: only the kept
// products are computed (half of dense), read straight from the canonical
// values + meta. Torch-free; nm_int8_vnni.h calls it for 2:4 weights.
//
// Kept values and columns. 64 consecutive kept values of a weight row (one
// zmm) are 32 groups, 128 dense columns (a block). Its 128-bit lane L holds
// the kept values of columns 32L .. 32L + 31; bytes 0..7 of the lane come from
// the first 16 of those columns ("window A"), bytes 8..15 from the second 16
// ("window B"). vpshufb selects in lane from 16 bytes, so each row of q is
// arranged once per call as two vectors per block: A (lane L = q at columns
// 32L .. 32L + 15) and B (columns 32L + 16 .. 32L + 31).
//
// Pairs of weight rows. A shuffle of A can fill only 8 useful bytes per lane
// for one weight row (its 8 kept columns of window A), so weight rows go in
// pairs c1, c2: lane bytes 0..7 select c1's kept columns of window A, bytes
// 8..15 c2's (idxA), and the weights line up the same way (wA: the low 8 bytes
// of each lane of c1's kept values, then of c2's; vpunpcklqdq). Window B
// likewise with the high 8 bytes (vpunpckhqdq). Per row of q and pair of
// weight rows, a block costs 2 vpshufb + 2 vpdpbusd for 256 kept products;
// dword lanes 0, 1 of each 128-bit lane accumulate c1, lanes 2, 3 c2. With
// one or a few rows of q a pair's block is built and used at once; with more,
// a tile of pairs is built once per call into a small buffer and reused by
// every row of q.
//
// Indices. Byte b of a lane (group b / 2 of its window half, the (b % 2)-th
// kept column) selects in-window byte 4 * ((b % 8) / 2) + p, p the position
// of the (b % 2)-th set bit of the group's meta nibble. One 16-bit word per
// group holds both: the meta bytes are laid out in pair order, widened to a
// dword each (two groups), the high nibble moved to the high word, the word's
// group position within the window added, and a 64-entry vpermt2w table
// gives the word; nibbles without exactly two bits set bit 7 (valid-mask
// check, and a zero from vpshufb).
//
// Exactness. vpdpbusd multiplies unsigned by signed bytes, so q goes in as
// q + 128 (XOR 0x80 when arranged): each sum is dot + 128 * (sum of the kept
// weights), modulo 2^32. The accumulators start at minus the second term
// (computed from the same weight vectors, so per lane), and everything wraps
// modulo 2^32 (vpdpbusd, vpsubd); the true dot product lies in [-2^31, 2^31)
// because K / 2 <= kInt8MaxK, so the wrapped result is the exact one. Past K
// in the last block the weights load as 0 (masked), so whatever q bytes they
// select add nothing.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>

#include "int8.h"
#include "isa.h"
#include "nm_format.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

#if EFFDL_X86_LEVELS

namespace nm_select {
#define EFFDL_NMS_TARGET __attribute__((target("arch=x86-64-v4,avx512vnni")))
// (maskz forms of broadcasts, unpacks and lane shuffles throughout: the plain
// ones trip GCC 12's -Wmaybe-uninitialized)

constexpr int64_t kBlock = 128;      // dense columns per block (64 kept values)
constexpr int64_t kPairBytes = 256;  // one pair's block in the buffer: idxA, idxB, wA, wB
constexpr int kRows = 4;             // rows of q per pass
constexpr int kPairs = 4;            // pairs of weight rows per buffered tile: 16 accumulators
constexpr int64_t kAhead = 2048;     // prefetch distance (bytes) along each stream of kept values

inline int64_t blocks(int64_t K) { return (K + kBlock - 1) / kBlock; }

// The index words of the pair layout (below), 64 entries for vpermt2w: entry
// 16 * g + v, for the group at position g of its 16-column window with keep
// nibble v, holds the in-window bytes of its two kept columns, 4 g + (first,
// second set bit of v). A nibble without exactly two bits sets bit 7 of both
// bytes: vpshufb writes zeros there, and the caller sees the row is invalid.
struct PairIndexTable {
  alignas(64) uint16_t e[64];
  constexpr PairIndexTable() : e() {
    for (int i = 0; i < 64; ++i) {
      const int g = i / 16, v = i % 16;
      int pos[2] = {0, 0}, bits = 0;
      for (int t = 0; t < 4; ++t)
        if ((v >> t) & 1) {
          if (bits < 2) pos[bits] = t;
          ++bits;
        }
      const int bad = bits == 2 ? 0 : 0x80;
      e[i] = uint16_t((4 * g + pos[0]) | bad | ((4 * g + pos[1]) | bad) << 8);
    }
  }
};
inline constexpr PairIndexTable kPairIndex{};

// The vpshufb indices of one window of a pair of rows from src, whose bytes
// 4L .. 4L + 3 are the meta bytes of lane L (first row's two, then the
// second's): each byte becomes a dword (vpmovzxbd) holding two groups, its
// high nibble moves to the high word (x | x << 12), the word keeps its nibble
// and gains its group's window position (bits 4, 5), and vpermt2w looks it up.
EFFDL_NMS_TARGET inline __m512i window_index(__m128i src) {
  const __m512i x = _mm512_maskz_cvtepu8_epi32(__mmask16(0xffff), src);
  const __m512i y = _mm512_or_si512(x, _mm512_maskz_slli_epi32(__mmask16(0xffff), x, 12));
  // word w of a lane is group w % 4 of its window: 0x00, 0x10, 0x20, 0x30
  const __m512i pos = _mm512_set1_epi64(0x0030002000100000ll);
  const __m512i key = _mm512_ternarylogic_epi32(y, _mm512_set1_epi32(0x000f000f), pos, 0xea);  // (a & b) | c
  return _mm512_permutex2var_epi16(_mm512_load_si512(kPairIndex.e), key, _mm512_load_si512(kPairIndex.e + 32));
}

// qa[(i * blocks(K) + b) * 128 ...]: block b of row i of q as A (64 bytes)
// then B (64 bytes), shifted to q + 128; zeros past K (they meet zero weights).
EFFDL_NMS_TARGET inline void arrange_q(const int8_t* q, int64_t ldq, int64_t M, int64_t K, uint8_t* qa) {
  const int64_t nb = blocks(K);
  const __m512i flip = _mm512_set1_epi8(char(0x80));
  for (int64_t i = 0; i < M; ++i) {
    const int8_t* row = q + i * ldq;
    uint8_t* dst = qa + i * nb * kBlock;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t k = b * kBlock, rem = K - k;
      __m512i x0, x1;
      if (rem >= kBlock) {
        x0 = _mm512_loadu_si512(row + k);
        x1 = _mm512_loadu_si512(row + k + 64);
      } else {
        x0 = _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t(0), unsigned(std::min<int64_t>(rem, 64))), row + k);
        x1 = _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t(0), unsigned(std::max<int64_t>(rem - 64, 0))),
                                     row + k + 64);
      }
      x0 = _mm512_xor_si512(x0, flip);
      x1 = _mm512_xor_si512(x1, flip);
      // A: 128-bit lanes 0, 2 of x0 then of x1; B: lanes 1, 3
      _mm512_storeu_si512(dst + b * kBlock, _mm512_maskz_shuffle_i64x2(__mmask8(0xff), x0, x1, 0x88));
      _mm512_storeu_si512(dst + b * kBlock + 64, _mm512_maskz_shuffle_i64x2(__mmask8(0xff), x0, x1, 0xdd));
    }
  }
}

// Prefetches the line `ahead` bytes past p (no access: p + ahead may lie past the array).
template <_mm_hint Hint = _MM_HINT_T0>
EFFDL_NMS_TARGET inline void prefetch(const void* p, int64_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + uintptr_t(ahead)), Hint);
}

// One block of a pair of weight rows, as vpshufb indices and weights of the
// two windows (the top of the file).
struct PairBlock {
  __m512i ia, ib, wa, wb;
};

// Two weight rows (values, meta) of K columns, output columns o1 and o2 (o2
// < 0: the second row repeats the first and has no output), and where their
// pair accumulates.
struct Pair {
  int64_t o1, o2;
  const int8_t* v1;
  const uint8_t* m1;
  const int8_t* v2;
  const uint8_t* m2;
  int64_t K;
  __m512i shift_a, shift_b;  // 128 * the kept-weight sums per accumulator lane, windows A and B apart
  __m512i bad;    // bit 7 set somewhere: an invalid group (block_index)

  // Block b into *pb; the rows are prefetched kAhead bytes further along (a
  // fixed distance: whole rows ahead at K = 11008 crowded L1).
  EFFDL_NMS_TARGET inline void block(int64_t b, PairBlock* pb) {
    const int64_t rem = K - b * kBlock;  // (b * 64 and b * 16, not k / 2 and k / 8: no signed-division fixups)
    __m512i k1, k2;
    prefetch<>(v1 + b * 64, kAhead);
    prefetch<>(v2 + b * 64, kAhead);
    prefetch<>(m1 + b * 16, kAhead / 4);  // meta: a quarter of the value bytes
    prefetch<>(m2 + b * 16, kAhead / 4);
    __m128i t1, t2;
    if (rem >= kBlock) {
      k1 = _mm512_loadu_si512(v1 + b * 64);
      k2 = _mm512_loadu_si512(v2 + b * 64);
      t1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m1 + b * 16));
      t2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m2 + b * 16));
    } else {  // K % 4 == 0: rem / 2 kept values, ceil(rem / 8) meta bytes
      const __mmask16 mlive = __mmask16(_bzhi_u32(~0u, unsigned((rem + 7) / 8)));
      k1 = _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t(0), unsigned(rem / 2)), v1 + b * 64);
      k2 = _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t(0), unsigned(rem / 2)), v2 + b * 64);
      t1 = _mm_maskz_loadu_epi8(mlive, m1 + b * 16);
      t2 = _mm_maskz_loadu_epi8(mlive, m2 + b * 16);
    }
    // lane L of window A: meta bytes 4L, 4L + 1 of each row (its groups 8L .. 8L + 3); of B: 4L + 2, 4L + 3
    pb->ia = window_index(_mm_blend_epi16(t1, _mm_slli_epi32(t2, 16), 0xaa));
    pb->ib = window_index(_mm_blend_epi16(_mm_srli_epi32(t1, 16), t2, 0xaa));
    if (rem >= kBlock) {
      bad = _mm512_ternarylogic_epi32(bad, pb->ia, pb->ib, 0xfe);  // a | b | c
    } else {  // groups past K (nibble 0) are flagged too: only the live bytes count
      const uint64_t live = _bzhi_u64(~uint64_t(0), unsigned(rem / 2));
      uint64_t live_a = 0, live_b = 0;
      for (int L = 0; L < 4; ++L) {
        const uint64_t a = (live >> (16 * L)) & 0xff, b2 = (live >> (16 * L + 8)) & 0xff;
        live_a |= (a | a << 8) << (16 * L);
        live_b |= (b2 | b2 << 8) << (16 * L);
      }
      bad = _mm512_ternarylogic_epi32(bad, _mm512_maskz_mov_epi8(live_a, pb->ia), _mm512_maskz_mov_epi8(live_b, pb->ib),
                                      0xfe);
    }
    pb->wa = _mm512_maskz_unpacklo_epi64(__mmask8(0xff), k1, k2);
    pb->wb = _mm512_maskz_unpackhi_epi64(__mmask8(0xff), k1, k2);
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    shift_a = _mm512_dpbusd_epi32(shift_a, flip, pb->wa);  // two chains: one would bound the loop
    shift_b = _mm512_dpbusd_epi32(shift_b, flip, pb->wb);
  }

  // Whether both rows were valid masks: no bad group below K and, where K % 8
  // == 4, no bit past K in the last meta byte.
  EFFDL_NMS_TARGET inline bool valid() const {
    const int64_t last = nm_meta_bytes(K) - 1;
    const bool tail_clear = K % 8 == 0 || ((m1[last] | m2[last]) >> (K % 8)) == 0;
    return tail_clear && _mm512_movepi8_mask(bad) == 0;
  }
};

// Pair j of the columns [o_begin, o_end): columns o_begin + j and o_begin + j
// + h, h = ceil(count / 2) (the last pair of an odd count has one). Pairing
// neighbouring rows instead would read two streams 2 KB apart inside one
// 4 KB page, which this CPU's prefetchers follow at half the bandwidth; so
// the pairs walk two halves of the weight, each a sequential stream.
EFFDL_NMS_TARGET inline Pair pair_at(const int8_t* values, const uint8_t* meta, int64_t K, int64_t o_begin,
                                     int64_t o_end, int64_t j) {
  const int64_t kept = nm_kept(K, 2, 4), mb = nm_meta_bytes(K), h = (o_end - o_begin + 1) / 2;
  const int64_t o1 = o_begin + j, o2 = o1 + h < o_end ? o1 + h : -1, r2 = o2 < 0 ? o1 : o2;
  const __m512i z = _mm512_setzero_si512();
  return Pair{o1, o2, values + o1 * kept, meta + o1 * mb, values + r2 * kept, meta + r2 * mb, K, z, z, z};
}

// The two sums of a pair's accumulator: dwords 0, 1 of each 128-bit lane (the
// pair's first row) and dwords 2, 3 (its second), modulo 2^32 (maskz
// extracts, as above).
EFFDL_NMS_TARGET inline void pair_sums(__m512i v, int32_t* first, int32_t* second) {
  const __m256i h = _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(__mmask8(0xff), v, 0),
                                     _mm512_maskz_extracti64x4_epi64(__mmask8(0xff), v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));  // dwords 0 and 2 hold the two sums
  *first = _mm_cvtsi128_si32(s);
  *second = _mm_extract_epi32(s, 2);
}

// The output of row i, column o (o < 0: none).
template <typename Out>
inline void store_one(int32_t dot, int64_t i, int64_t o, const float* q_scale, const float* w_scale,
                      const float* bias, Out* out, int64_t ldo) {
  if (o >= 0) out[i * ldo + o] = int8_epilogue<Out>(dot, q_scale[i], w_scale[o], bias ? bias + o : nullptr);
}

// M = R <= kRows: each pair's blocks are built and used at once, no buffer.
template <int R, typename Out>
EFFDL_NMS_TARGET inline bool run_direct(const uint8_t* qa, int64_t K, const int8_t* values, const uint8_t* meta,
                                        const float* q_scale, const float* w_scale, const float* bias, Out* out,
                                        int64_t ldo, int64_t o_begin, int64_t o_end) {
  const int64_t nb = blocks(K);
  for (int64_t j = 0; j < (o_end - o_begin + 1) / 2; ++j) {
    Pair pair = pair_at(values, meta, K, o_begin, o_end, j);
    __m512i acc_a[R], acc_b[R];  // windows A and B apart: two dependency chains
    EFFDL_UNROLL
    for (int r = 0; r < R; ++r) acc_a[r] = acc_b[r] = _mm512_setzero_si512();
    for (int64_t b = 0; b < nb; ++b) {
      PairBlock pb;
      pair.block(b, &pb);
      EFFDL_UNROLL
      for (int r = 0; r < R; ++r) {
        const uint8_t* qb = qa + (r * nb + b) * kBlock;
        acc_a[r] = _mm512_dpbusd_epi32(acc_a[r], _mm512_shuffle_epi8(_mm512_loadu_si512(qb), pb.ia), pb.wa);
        acc_b[r] = _mm512_dpbusd_epi32(acc_b[r], _mm512_shuffle_epi8(_mm512_loadu_si512(qb + 64), pb.ib), pb.wb);
      }
    }
    if (!pair.valid()) return false;
    const __m512i shift = _mm512_add_epi32(pair.shift_a, pair.shift_b);
    int32_t dot[R][2];
    EFFDL_UNROLL
    for (int r = 0; r < R; ++r)
      pair_sums(_mm512_sub_epi32(_mm512_add_epi32(acc_a[r], acc_b[r]), shift), &dot[r][0], &dot[r][1]);
    for (int r = 0; r < R; ++r) {
      store_one(dot[r][0], r, pair.o1, q_scale, w_scale, bias, out, ldo);
      store_one(dot[r][1], r, pair.o2, q_scale, w_scale, bias, out, ldo);
    }
  }
  return true;
}

// Rows [i0, i0 + R) of q against the buffered tile of kPairs pairs, of output
// columns cols (-1: none): buf holds the pairs of each block side by side.
// next (or null): the pairs of the next tile, prefetched along. (The
// accumulators live in this function: passed by reference to a helper, GCC
// kept them in memory.)
template <int R, typename Out>
EFFDL_NMS_TARGET inline void run_tile_rows(const uint8_t* qa, int64_t nb, int64_t i0, const uint8_t* buf,
                                           const __m512i* neg_shift, const int64_t (*cols)[2], const Pair* next,
                                           const float* q_scale, const float* w_scale, const float* bias, Out* out,
                                           int64_t ldo) {
  const uint8_t* rows[R];
  __m512i acc[R][kPairs];
  EFFDL_UNROLL
  for (int r = 0; r < R; ++r) {
    rows[r] = qa + (i0 + r) * nb * kBlock;
    EFFDL_UNROLL
    for (int p = 0; p < kPairs; ++p) acc[r][p] = neg_shift[p];
  }
  for (int64_t b = 0; b < nb; ++b) {
    __m512i a[R], c[R];
    EFFDL_UNROLL
    for (int r = 0; r < R; ++r) {
      a[r] = _mm512_loadu_si512(rows[r] + b * kBlock);
      c[r] = _mm512_loadu_si512(rows[r] + b * kBlock + 64);
    }
    const uint8_t* s = buf + b * kPairs * kPairBytes;
    EFFDL_UNROLL
    for (int p = 0; p < kPairs; ++p) {
      if (next) {  // the next tile's rows, into L2 while this one computes
        prefetch<_MM_HINT_T1>(next[p].v1 + b * 64, 0);
        prefetch<_MM_HINT_T1>(next[p].v2 + b * 64, 0);
        if (b % 4 == 0) {
          prefetch<_MM_HINT_T1>(next[p].m1 + b * 16, 0);
          prefetch<_MM_HINT_T1>(next[p].m2 + b * 16, 0);
        }
      }
      const uint8_t* d = s + p * kPairBytes;
      const __m512i ia = _mm512_loadu_si512(d), ib = _mm512_loadu_si512(d + 64);
      const __m512i wa = _mm512_loadu_si512(d + 128), wb = _mm512_loadu_si512(d + 192);
      EFFDL_UNROLL
      for (int r = 0; r < R; ++r) {
        acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], _mm512_shuffle_epi8(a[r], ia), wa);
        acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], _mm512_shuffle_epi8(c[r], ib), wb);
      }
    }
  }
  int32_t dot[R][2 * kPairs];  // (a run-time index into acc would keep it in memory all along)
  EFFDL_UNROLL
  for (int r = 0; r < R; ++r)
    EFFDL_UNROLL
    for (int p = 0; p < kPairs; ++p) pair_sums(acc[r][p], &dot[r][2 * p], &dot[r][2 * p + 1]);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 2 * kPairs; ++c) store_one(dot[r][c], i0 + r, cols[c / 2][c % 2], q_scale, w_scale, bias, out, ldo);
}

// M > kRows: each tile of kPairs pairs is built once into buf, then every
// group of kRows rows of q runs over it.
template <typename Out>
EFFDL_NMS_TARGET inline bool run_buffered(const uint8_t* qa, int64_t M, int64_t K, const int8_t* values,
                                          const uint8_t* meta, const float* q_scale, const float* w_scale,
                                          const float* bias, Out* out, int64_t ldo, int64_t o_begin, int64_t o_end,
                                          uint8_t* buf) {
  const int64_t nb = blocks(K), pairs = (o_end - o_begin + 1) / 2;
  for (int64_t j0 = 0; j0 < pairs; j0 += kPairs) {
    __m512i neg_shift[kPairs];
    int64_t cols[kPairs][2];
    Pair next[kPairs];
    for (int p = 0; p < kPairs; ++p)
      next[p] = pair_at(values, meta, K, o_begin, o_end, std::min(j0 + kPairs + p, pairs - 1));
    for (int p = 0; p < kPairs; ++p) {
      Pair pair = pair_at(values, meta, K, o_begin, o_end, std::min(j0 + p, pairs - 1));
      cols[p][0] = j0 + p < pairs ? pair.o1 : -1;  // a short tile repeats its last pair, without outputs
      cols[p][1] = j0 + p < pairs ? pair.o2 : -1;
      for (int64_t b = 0; b < nb; ++b) {
        PairBlock pb;
        pair.block(b, &pb);
        uint8_t* d = buf + (b * kPairs + p) * kPairBytes;
        _mm512_storeu_si512(d, pb.ia);
        _mm512_storeu_si512(d + 64, pb.ib);
        _mm512_storeu_si512(d + 128, pb.wa);
        _mm512_storeu_si512(d + 192, pb.wb);
      }
      if (!pair.valid()) return false;
      neg_shift[p] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_add_epi32(pair.shift_a, pair.shift_b));
    }
    const Pair* pf = j0 + kPairs < pairs ? next : nullptr;  // prefetched during the first rows
    int64_t i0 = 0;
    for (; i0 + kRows <= M; i0 += kRows)
      run_tile_rows<kRows>(qa, nb, i0, buf, neg_shift, cols, i0 == 0 ? pf : nullptr, q_scale, w_scale, bias, out, ldo);
    const Pair* pf_tail = i0 == 0 ? pf : nullptr;
    switch (M - i0) {
      case 3: run_tile_rows<3>(qa, nb, i0, buf, neg_shift, cols, pf_tail, q_scale, w_scale, bias, out, ldo); break;
      case 2: run_tile_rows<2>(qa, nb, i0, buf, neg_shift, cols, pf_tail, q_scale, w_scale, bias, out, ldo); break;
      case 1: run_tile_rows<1>(qa, nb, i0, buf, neg_shift, cols, pf_tail, q_scale, w_scale, bias, out, ldo); break;
      default: break;
    }
  }
  return true;
}

}  // namespace nm_select

// nm_int8_linear_block (nm_int8_linear.h) for 2:4 weights, same contract and
// bit-identical results: output columns [o_begin, o_end) of out[M, N].
template <typename Out>
EFFDL_NMS_TARGET bool nm24_int8_linear_block_select(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M,
                                                    int64_t K, const int8_t* values, const uint8_t* meta,
                                                    const float* w_scale, const float* bias, Out* out, int64_t ldo,
                                                    int64_t o_begin, int64_t o_end) {
  using namespace nm_select;
  if (M <= 0 || o_begin >= o_end) return true;
  const int64_t nb = blocks(K);
  // every byte is written before it is read: no value-initialisation
  const std::unique_ptr<uint8_t[]> qa(new uint8_t[size_t(M * nb * kBlock)]);
  arrange_q(q, ldq, M, K, qa.get());
  switch (M) {
    case 1: return run_direct<1>(qa.get(), K, values, meta, q_scale, w_scale, bias, out, ldo, o_begin, o_end);
    case 2: return run_direct<2>(qa.get(), K, values, meta, q_scale, w_scale, bias, out, ldo, o_begin, o_end);
    case 3: return run_direct<3>(qa.get(), K, values, meta, q_scale, w_scale, bias, out, ldo, o_begin, o_end);
    case 4: return run_direct<4>(qa.get(), K, values, meta, q_scale, w_scale, bias, out, ldo, o_begin, o_end);
    default: break;
  }
  const std::unique_ptr<uint8_t[]> buf(new uint8_t[size_t(nb * kPairs * kPairBytes)]);
  return run_buffered(qa.get(), M, K, values, meta, q_scale, w_scale, bias, out, ldo, o_begin, o_end, buf.get());
}

#undef EFFDL_NMS_TARGET

#endif  // EFFDL_X86_LEVELS

}  // namespace effdl::core
