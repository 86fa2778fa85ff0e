// nm_linear for bf16 2:4 weights on AVX-512 BF16 (the avx512_bf16 level),
// torch-free, and the choice of each level's nm_linear core.
//
// vdpbf16ps multiplies the two bf16 halves of each 32-bit lane of two vectors
// and adds both products to an fp32 lane, so bf16 operands are never widened.
// In 2:4 every group of four columns keeps exactly two values, stored next to
// each other: a 32-bit word of the canonical values (nm_format.h) is one
// weight pair, the pair vdpbf16ps wants. Two kernels, both reading x directly:
//   direct (small M: memory-bound): 32 columns of a weight row are expanded
//     from its 16 kept values into dense position in register (vpexpandw, the
//     row's 32 meta bits as the mask) and dotted with 32 columns of x straight
//     from its bf16 rows: one load, one expand and one vdpbf16ps per 32
//     columns and x row, x never converted. Weight rows stream once.
//   lanes (larger M): a vector holds 16 output columns. Per group, lane l
//     needs the pair of x's four columns that column l keeps: one vpermw of a
//     register holding eight groups of an x row, with word indices decoded
//     from the 16 columns' meta, then one vdpbf16ps with the 16 columns' weight
//     pairs. Only kept products are computed (half the dot instructions of a
//     dense bf16 GEMM), and every loaded x register serves eight groups: a
//     kernel that loaded one x vector per dot would be bound by loads at half
//     the dot rate.
//   packed: the lanes kernel on the panels of nm_packed.h (nm_linear_packed),
//     whose pairs and lane-aligned nibbles make the per-chunk decode a load
//     and three vector ops per group: what the lanes kernel pays most for at a
//     dozen rows. Same sums, same order: the bits of the lanes kernel.
// Sums are fp32, rounded to bf16 once with the bias added, as on the other
// levels. vdpbf16ps treats bf16 subnormal inputs and fp32 subnormal results as
// zero (the other levels keep them): a difference far below bf16's tolerance.
// Meta is validated per row (nm_meta_row_valid) before any of it is used.
// Other N:M patterns take nm_linear_simd.h's AVX-512 kernel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "dtype.h"
#include "isa.h"
#include "nm_format.h"
#include "nm_linear.h"
#include "nm_linear_simd.h"
#include "nm_packed.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

#if EFFDL_X86_LEVELS
namespace nm_bf16dot {
#define EFFDL_NMB_TARGET __attribute__((target("arch=x86-64-v4,avx512bf16,avx512vbmi2")))

// Up to this many rows of x the direct kernel runs, the lanes kernel above
// (measured crossover: the lanes kernel's decode of each chunk of weights
// pays off from about a dozen rows).
constexpr int64_t kDirectMaxRows = 12;

// The six kept pairs (a, b) of a group of four.
constexpr int kPairs = 6;
constexpr int kPairA[kPairs] = {0, 0, 0, 1, 1, 2};
constexpr int kPairB[kPairs] = {1, 2, 3, 2, 3, 3};

// All lanes, for the maskz forms: the plain intrinsics pass an undefined
// source vector that trips GCC 12's -Wmaybe-uninitialized.
constexpr __mmask16 kAll16 = 0xffff;
constexpr __mmask8 kAll8 = 0xff;

EFFDL_NMB_TARGET inline __m512 dot(__m512 acc, __m512i x, __m512i w) {
  return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w);
}

// -------------------------------------------------------------- direct

// The dense bf16 weights of 32 columns whose keep-mask is `bits` (16 set), from
// their 16 kept values at v.
EFFDL_NMB_TARGET inline __m512i expand32(const bf16* v, uint32_t bits) {
  // a masked load: the upper half zero without a zero-extension (which trips
  // GCC 12's -Wmaybe-uninitialized), and nothing read past the 16 values
  const __m512i kept = _mm512_maskz_loadu_epi16(__mmask32(0xffff), v);
  return _mm512_maskz_expand_epi16(__mmask32(bits), kept);
}

// out[i][r] = sum_k x[i][k] * W[r][k] for MR rows of x and TR 2:4 weight rows
// (kept values v[r], meta rows meta[r], both valid). ahead: bytes from a value
// read to the one prefetched meanwhile, in a later row (each row is a short
// stream the hardware prefetchers learn too late); addresses as integers: past
// the last row they point nowhere, and a prefetch never faults.
template <int MR, int TR>
EFFDL_NMB_TARGET inline void direct_tile(const bf16* const* x, const bf16* const* v,
                                         const uint8_t* const* meta, int64_t K, uintptr_t ahead, float* out) {
  __m512 acc[MR][TR];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < TR; ++r) acc[i][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512i w[TR];
    for (int r = 0; r < TR; ++r) {
      uint32_t bits;
      std::memcpy(&bits, meta[r] + k / 8, 4);
      const bf16* p = v[r] + k / 2;
      _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + ahead), _MM_HINT_T0);
      w[r] = expand32(p, bits);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_loadu_si512(x[i] + k);
      for (int r = 0; r < TR; ++r) acc[i][r] = dot(acc[i][r], xv, w[r]);
    }
  }
  if (k < K) {  // K % 4 == 0: rem / 2 kept values, rem / 8 meta bytes and maybe a nibble
    const int rem = int(K - k);
    __m512i w[TR];
    for (int r = 0; r < TR; ++r) {
      uint32_t bits = 0;  // zero past K (validated)
      for (int t = 0; t < (rem + 7) / 8; ++t) bits |= uint32_t(meta[r][k / 8 + t]) << (8 * t);
      const __m512i kept = _mm512_maskz_loadu_epi16(__mmask32((1u << (rem / 2)) - 1), v[r] + k / 2);
      w[r] = _mm512_maskz_expand_epi16(__mmask32(bits), kept);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_maskz_loadu_epi16(__mmask32((1u << rem) - 1), x[i] + k);
      for (int r = 0; r < TR; ++r) acc[i][r] = dot(acc[i][r], xv, w[r]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < TR; ++r) out[i * TR + r] = nm_avx512::vsum(acc[i][r]);
}

// nm_linear_block's contract for 2:4, x read directly (any M; meant for small
// M), TR weight rows a tile.
template <int TR>
EFFDL_NMB_TARGET inline bool direct_rows(const bf16* x, int64_t ldx, int64_t M, int64_t K,
                                         const bf16* values, const uint8_t* meta, const bf16* bias,
                                         bf16* y, int64_t ldy, int64_t o_begin, int64_t o_end) {
  const int64_t kept = K / 2, mb = nm_meta_bytes(K);
  // four-row tiles prefetch the next tile's rows; eight-row tiles (M <= 2) already stream eight rows, and
  // eight more in flight measured slower than one row ahead (22 vs 25 GB/s at 4096², 2 threads)
  const uintptr_t ahead = uintptr_t((TR > 4 ? 1 : TR) * kept) * sizeof(bf16);
  for (int64_t o0 = o_begin; o0 < o_end; o0 += TR) {
    const int rows = int(std::min<int64_t>(TR, o_end - o0));
    const bf16* v[TR];
    const uint8_t* mr[TR];
    for (int r = 0; r < TR; ++r) {
      const int64_t o = o0 + std::min(r, rows - 1);  // a short tile repeats its last row
      mr[r] = meta + o * mb;
      v[r] = values + o * kept;
      if (r < rows && !nm_meta_row_valid(mr[r], K, 2, 4)) return false;
    }
    for (int64_t i0 = 0; i0 < M; i0 += 4) {
      const int mr_rows = int(std::min<int64_t>(4, M - i0));
      const bf16* xi[4];
      for (int i = 0; i < 4; ++i) xi[i] = x + (i0 + std::min(i, mr_rows - 1)) * ldx;
      float out[4 * TR];
      if constexpr (TR > 4) {  // wide tiles only for M <= 2 (direct_block)
        if (mr_rows == 2) direct_tile<2, TR>(xi, v, mr, K, ahead, out);
        else direct_tile<1, TR>(xi, v, mr, K, ahead, out);
      } else {
        switch (mr_rows) {
          case 4: direct_tile<4, TR>(xi, v, mr, K, ahead, out); break;
          case 3: direct_tile<3, TR>(xi, v, mr, K, ahead, out); break;
          case 2: direct_tile<2, TR>(xi, v, mr, K, ahead, out); break;
          default: direct_tile<1, TR>(xi, v, mr, K, ahead, out); break;
        }
      }
      for (int i = 0; i < mr_rows; ++i)
        for (int r = 0; r < rows; ++r) {
          const float b = bias ? load(bias[o0 + r]) : 0.f;
          y[(i0 + i) * ldy + o0 + r] = store<bf16>(out[i * TR + r] + b);
        }
    }
  }
  return true;
}

// Up to two rows of x, eight weight rows a tile (more loads in flight; the
// bandwidth-bound regime), else four (16 accumulators for four x rows).
EFFDL_NMB_TARGET inline bool direct_block(const bf16* x, int64_t ldx, int64_t M, int64_t K,
                                          const bf16* values, const uint8_t* meta, const bf16* bias,
                                          bf16* y, int64_t ldy, int64_t o_begin, int64_t o_end) {
  if (M <= 2) return direct_rows<8>(x, ldx, M, K, values, meta, bias, y, ldy, o_begin, o_end);
  return direct_rows<4>(x, ldx, M, K, values, meta, bias, y, ldy, o_begin, o_end);
}

// -------------------------------------------------------------- lanes

// The lanes kernel: 16 output columns per vector. For a group g and a row of
// x, lane l needs the pair of x[4g .. 4g + 4) that column l's weight keeps: one
// vpermw of a register holding x[32c .. 32c + 32) (eight groups) with word
// indices decoded from the 16 columns' meta, then one vdpbf16ps with the
// 16 columns' weight pairs. Indices and pairs are decoded once per chunk of
// groups and serve every row of x; an x register serves eight groups.
constexpr int64_t kLaneGroups = 64;  // groups (256 columns) decoded at once

// bf16_from_float (dtype.h) of 16 lanes, the bits in the low half of each:
// round to nearest even, NaN kept quiet.
EFFDL_NMB_TARGET inline __m512i to_bf16_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_maskz_srli_epi32(kAll16, u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_maskz_srli_epi32(kAll16, _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(rounded, nan, _mm512_maskz_srli_epi32(kAll16, u, 16), _mm512_set1_epi32(0x40));
}

// The 16 x 16 transpose of 32-bit elements: 4 x 4 blocks within the 128-bit
// lanes (unpacks), then the 4 x 4 transpose of the lanes (shuffles).
EFFDL_NMB_TARGET inline void transpose16(__m512i (&v)[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_maskz_unpacklo_epi32(kAll16, v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_epi32(kAll16, v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // lane k of v[4i + c]: column 4k + c of rows 4i .. 4i + 3
    v[4 * i] = _mm512_maskz_unpacklo_epi64(kAll8, t[4 * i], t[4 * i + 2]);
    v[4 * i + 1] = _mm512_maskz_unpackhi_epi64(kAll8, t[4 * i], t[4 * i + 2]);
    v[4 * i + 2] = _mm512_maskz_unpacklo_epi64(kAll8, t[4 * i + 1], t[4 * i + 3]);
    v[4 * i + 3] = _mm512_maskz_unpackhi_epi64(kAll8, t[4 * i + 1], t[4 * i + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i s0 = _mm512_maskz_shuffle_i32x4(kAll16, v[c], v[4 + c], 0x44), s1 = _mm512_maskz_shuffle_i32x4(kAll16, v[c], v[4 + c], 0xee);
    const __m512i s2 = _mm512_maskz_shuffle_i32x4(kAll16, v[8 + c], v[12 + c], 0x44), s3 = _mm512_maskz_shuffle_i32x4(kAll16, v[8 + c], v[12 + c], 0xee);
    t[c] = _mm512_maskz_shuffle_i32x4(kAll16, s0, s2, 0x88);
    t[4 + c] = _mm512_maskz_shuffle_i32x4(kAll16, s0, s2, 0xdd);
    t[8 + c] = _mm512_maskz_shuffle_i32x4(kAll16, s1, s3, 0x88);
    t[12 + c] = _mm512_maskz_shuffle_i32x4(kAll16, s1, s3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) v[i] = t[i];
}

// For each 2-bit keep nibble of a group, its kept positions a | b << 16 (0 for
// the other nibbles, which validated meta never holds).
struct PairWords {
  int32_t w[16];
  constexpr PairWords() : w() {
    for (int p = 0; p < kPairs; ++p) w[(1 << kPairA[p]) | (1 << kPairB[p])] = kPairA[p] | (kPairB[p] << 16);
  }
};
inline constexpr PairWords kPairWords{};

// wv[j]: lane l holds the weight pair of column o0 + l at group g0 + j (zero
// for l >= L); ix[j]: lane l's two word indices into a register of x holding
// the eight groups from g0 + 8 (j / 8) on. Groups [g0, g0 + gn), g0 % 16 == 0.
// The pairs: 16 rows' next 16 pairs transposed; the indices: from each row's
// 32 meta bits of eight groups, gathered across the rows.
EFFDL_NMB_TARGET inline void lane_decode(const bf16* values, const uint8_t* meta, int64_t kept, int64_t mb,
                                         int64_t o0, int L, int64_t g0, int64_t gn, __m512i* wv, __m512i* ix) {
  const __m512i pair_words = _mm512_loadu_si512(kPairWords.w);
  const __mmask16 live = __mmask16((1u << L) - 1);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i moff = _mm512_mullo_epi32(lane, _mm512_set1_epi32(int32_t(mb)));
  const uint8_t* mbase = meta + o0 * mb;
  for (int64_t q = 0; q < gn; q += 16) {
    const int cnt = int(std::min<int64_t>(16, gn - q));  // groups of this step
    __m512i w[16];
    for (int l = 0; l < 16; ++l)
      w[l] = l < L ? _mm512_maskz_loadu_epi32(__mmask16((1u << cnt) - 1), values + (o0 + l) * kept + 2 * (g0 + q))
                   : _mm512_setzero_si512();
    transpose16(w);
    for (int j = 0; j < cnt; ++j) wv[q + j] = w[j];
    for (int j8 = 0; j8 < cnt; j8 += 8) {
      const int64_t byte0 = (g0 + q + j8) / 2;
      __m512i md;
      if (byte0 + 4 <= mb) {
        md = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, moff, mbase + byte0, 1);
      } else {  // the row's last bytes: no reading past them
        alignas(64) uint32_t words[16] = {};
        for (int l = 0; l < L; ++l) std::memcpy(&words[l], mbase + l * mb + byte0, size_t(mb - byte0));
        md = _mm512_load_si512(words);
      }
      for (int jj = 0; jj < std::min(8, cnt - j8); ++jj) {
        const __m512i nib = _mm512_and_si512(_mm512_maskz_srl_epi32(kAll16, md, _mm_cvtsi32_si128(4 * jj)), _mm512_set1_epi32(15));
        ix[q + j8 + jj] = _mm512_add_epi16(_mm512_maskz_permutexvar_epi32(kAll16, nib, pair_words), _mm512_set1_epi16(int16_t(4 * jj)));
      }
    }
  }
}

// For two vectors of 16 columns v (their pairs at wv + v * kLaneGroups, indices
// likewise): part[v][i][0, 16) (+)= the sums over groups [g0, g0 + gn) of MB
// rows of x (part[v] at part + v * ldp). Each x register serves both vectors.
template <int MB>
EFFDL_NMB_TARGET inline void lane_rows(const bf16* x, int64_t ldx, int64_t K, int64_t g0, int64_t gn,
                                       const __m512i* wv, const __m512i* ix, float* part, int64_t ldp,
                                       bool first) {
  __m512 acc[2][MB];
  for (int v = 0; v < 2; ++v)
    for (int i = 0; i < MB; ++i)
      acc[v][i] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(part + v * ldp + 16 * i);
  auto step = [&](const __m512i(&xr)[MB], int64_t j) EFFDL_NMB_TARGET {
    for (int v = 0; v < 2; ++v) {
      const __m512i w = wv[v * kLaneGroups + j], id = ix[v * kLaneGroups + j];
      for (int i = 0; i < MB; ++i) acc[v][i] = dot(acc[v][i], _mm512_permutexvar_epi16(id, xr[i]), w);
    }
  };
  for (int64_t j8 = 0; j8 < gn; j8 += 8) {
    const int64_t c0 = 4 * (g0 + j8);
    __m512i xr[MB];
    if (K - c0 >= 32) {
      for (int i = 0; i < MB; ++i) xr[i] = _mm512_loadu_si512(x + i * ldx + c0);
    } else {  // the row's last columns, zero past K
      const __mmask32 mask = __mmask32((1u << (K - c0)) - 1);
      for (int i = 0; i < MB; ++i) xr[i] = _mm512_maskz_loadu_epi16(mask, x + i * ldx + c0);
    }
    if (gn - j8 >= 8) {
      for (int jj = 0; jj < 8; ++jj) step(xr, j8 + jj);
    } else {
      for (int64_t jj = 0; jj < gn - j8; ++jj) step(xr, j8 + jj);
    }
  }
  for (int v = 0; v < 2; ++v)
    for (int i = 0; i < MB; ++i) _mm512_storeu_ps(part + v * ldp + 16 * i, acc[v][i]);
}

EFFDL_NMB_TARGET inline void lane_rows_n(int rows, const bf16* x, int64_t ldx, int64_t K, int64_t g0, int64_t gn,
                                         const __m512i* wv, const __m512i* ix, float* part, int64_t ldp,
                                         bool first) {
  switch (rows) {
    case 8: return lane_rows<8>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    case 7: return lane_rows<7>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    case 6: return lane_rows<6>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    case 5: return lane_rows<5>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    case 4: return lane_rows<4>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    case 3: return lane_rows<3>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    case 2: return lane_rows<2>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
    default: return lane_rows<1>(x, ldx, K, g0, gn, wv, ix, part, ldp, first);
  }
}

// The lanes kernel's driver: output columns [o_begin, o_end) 32 at a time (two
// vectors; the second may be short or empty), groups kLaneGroups at a time.
// decode(o, L, g0, gn, wv, ix) fills the pairs and indices of the L <= 16
// columns from o on (lane_decode's contract) and returns false to refuse the
// weight. K > 0.
template <typename Decode>
EFFDL_NMB_TARGET inline bool lane_columns(const bf16* x, int64_t ldx, int64_t M, int64_t K, Decode&& decode,
                                          const bf16* bias, bf16* y, int64_t ldy, int64_t o_begin, int64_t o_end) {
  const int64_t groups = K / 4;
  __m512i wv[2 * kLaneGroups], ix[2 * kLaneGroups];
  std::vector<float> part(size_t(2 * M * 16));
  const int64_t ldp = M * 16;
  for (int64_t o0 = o_begin; o0 < o_end; o0 += 32) {
    const int L[2] = {int(std::min<int64_t>(16, o_end - o0)), int(std::clamp<int64_t>(o_end - o0 - 16, 0, 16))};
    for (int64_t g0 = 0; g0 < groups; g0 += kLaneGroups) {
      const int64_t gn = std::min(kLaneGroups, groups - g0);
      for (int v = 0; v < 2; ++v)
        if (!decode(o0 + 16 * v, L[v], g0, gn, wv + v * kLaneGroups, ix + v * kLaneGroups)) return false;
      // rows in near-equal blocks of at most 8: each block's accumulators are
      // its independent dot chains (a block of 2 would wait on their latency)
      const int64_t nblk = (M + 7) / 8;
      for (int64_t b = 0, i = 0; b < nblk; ++b) {
        const int64_t rows = (M - i) / (nblk - b);
        lane_rows_n(int(rows), x + i * ldx, ldx, K, g0, gn, wv, ix, part.data() + 16 * i, ldp, g0 == 0);
        i += rows;
      }
    }
    for (int v = 0; v < 2 && L[v] > 0; ++v) {
      const __mmask16 live = __mmask16((1u << L[v]) - 1);
      const int64_t ov = o0 + 16 * v;
      const __m512 b = bias ? _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll16, 
                                  _mm512_maskz_cvtepu16_epi32(kAll16, _mm256_maskz_loadu_epi16(live, bias + ov)), 16))
                            : _mm512_setzero_ps();
      for (int64_t i = 0; i < M; ++i)
        _mm512_mask_cvtepi32_storeu_epi16(y + i * ldy + ov, live,
                                          to_bf16_bits(_mm512_add_ps(_mm512_loadu_ps(part.data() + v * ldp + 16 * i), b)));
    }
  }
  return true;
}

// nm_linear_block's contract for 2:4, x read directly (any M), K > 0.
EFFDL_NMB_TARGET inline bool lane_block(const bf16* x, int64_t ldx, int64_t M, int64_t K, const bf16* values,
                                        const uint8_t* meta, const bf16* bias, bf16* y, int64_t ldy,
                                        int64_t o_begin, int64_t o_end) {
  const int64_t kept = K / 2, mb = nm_meta_bytes(K);
  for (int64_t o = o_begin; o < o_end; ++o)
    if (!nm_meta_row_valid(meta + o * mb, K, 2, 4)) return false;
  auto decode = [&](int64_t o, int L, int64_t g0, int64_t gn, __m512i* wv, __m512i* ix) EFFDL_NMB_TARGET {
    lane_decode(values, meta, kept, mb, o, L, g0, gn, wv, ix);
    return true;
  };
  return lane_columns(x, ldx, M, K, decode, bias, y, ldy, o_begin, o_end);
}

// -------------------------------------------------------------- packed

// lane_decode's contract from a panel of nm_packed.h (the L live columns of the
// panel at `panel`): the pairs are loaded as they lie, the indices come from
// the lane-aligned nibble words (vpermd reads only an index's low four bits,
// so a shift selects the group). Refuses a live nibble that is not a 2:4 mask:
// kPairWords maps exactly those to 0. Prefetches the panel's next chunk, which
// the dot work of this one hides. g0 % 8 == 0.
EFFDL_NMB_TARGET inline bool packed_decode(const bf16* panel, int64_t K, int L, int64_t g0, int64_t gn,
                                           __m512i* wv, __m512i* ix) {
  if (L == 0) {  // an empty second vector: its sums are never stored
    for (int64_t j = 0; j < gn; ++j) wv[j] = ix[j] = _mm512_setzero_si512();
    return true;
  }
  const uint32_t* words = nm_panel_words(panel, K);
  const __m512i pair_words = _mm512_loadu_si512(kPairWords.w);
  const __mmask16 live = __mmask16((1u << L) - 1);
  __mmask16 ok = live;
  for (int64_t j8 = 0; j8 < gn; j8 += 8) {
    const int64_t w = (g0 + j8) / kNmWordGroups;
    const __m512i md = _mm512_loadu_si512(words + w * kNmPanelCols);
    _mm_prefetch(reinterpret_cast<const char*>(words + (w + kLaneGroups / kNmWordGroups) * kNmPanelCols), _MM_HINT_T0);
    const int cnt = int(std::min<int64_t>(8, gn - j8));
    for (int jj = 0; jj < cnt; ++jj) {
      const int64_t g = g0 + j8 + jj;
      const __m512i pw = _mm512_maskz_permutexvar_epi32(kAll16, _mm512_maskz_srl_epi32(kAll16, md, _mm_cvtsi32_si128(4 * jj)), pair_words);
      ok = _mm512_mask_test_epi32_mask(ok, pw, pw);
      ix[j8 + jj] = _mm512_add_epi16(pw, _mm512_set1_epi16(int16_t(4 * jj)));
      wv[j8 + jj] = _mm512_loadu_si512(panel + g * 2 * kNmPanelCols);
      _mm_prefetch(reinterpret_cast<const char*>(panel + (g + kLaneGroups) * 2 * kNmPanelCols), _MM_HINT_T0);
    }
  }
  return ok == live;
}

// nm_linear_packed_block's contract (nm_packed.h) for bf16: the lanes kernel on
// the packed panels, the same sums in the same order as lane_block on the
// canonical weight, so the two agree bit for bit.
EFFDL_NMB_TARGET inline bool packed_block_bf16(const bf16* x, int64_t ldx, int64_t M, int64_t K, const bf16* packed,
                                               int64_t N, const bf16* bias, bf16* y, int64_t ldy, int64_t p_begin,
                                               int64_t p_end) {
  if (K == 0) return nm_linear_packed_block(x, ldx, M, K, packed, N, bias, y, ldy, p_begin, p_end);
  const int64_t cols = nm_packed_cols(K, sizeof(bf16));
  auto decode = [&](int64_t o, int L, int64_t g0, int64_t gn, __m512i* wv, __m512i* ix) EFFDL_NMB_TARGET {
    return packed_decode(packed + o / kNmPanelCols * cols, K, L, g0, gn, wv, ix);
  };
  return lane_columns(x, ldx, M, K, decode, bias, y, ldy, p_begin * kNmPanelCols,
                      std::min(N, p_end * kNmPanelCols));
}

// Both 2:4 kernels read x directly: no packed xt for them.
inline bool reads_xt(int64_t M, int n, int m) { return !(n == 2 && m == 4) && nm_reads_xt(M, n, m); }

// nm_linear_block (nm_linear.h) for bf16: the kernels above for 2:4, the
// AVX-512 kernel of nm_linear_simd.h for every other pattern.
EFFDL_NMB_TARGET inline bool nm_linear_block_bf16(const bf16* x, int64_t ldx, const float* xt, int64_t M,
                                                  int64_t K, const bf16* values, const uint8_t* meta, int n,
                                                  int m, const bf16* bias, bf16* y, int64_t ldy,
                                                  int64_t o_begin, int64_t o_end) {
  if (n != 2 || m != 4 || K == 0)
    return nm_avx512::nm_linear_block_simd<bf16>(x, ldx, xt, M, K, values, meta, n, m, bias, y, ldy,
                                                 o_begin, o_end);
  if (M <= kDirectMaxRows) return direct_block(x, ldx, M, K, values, meta, bias, y, ldy, o_begin, o_end);
  return lane_block(x, ldx, M, K, values, meta, bias, y, ldy, o_begin, o_end);
}

#undef EFFDL_NMB_TARGET
}  // namespace nm_bf16dot
#endif  // EFFDL_X86_LEVELS

// The nm_linear core each level's table holds: for fp32 and bf16 the kernels of
// nm_linear_simd.h on the x86 levels (bf16 on avx512_bf16: the vdpbf16ps
// kernels above), the portable template otherwise.
template <Isa L, typename T>
constexpr auto nm_linear_pick() {
#if EFFDL_X86_LEVELS
  if constexpr (std::is_same_v<T, bf16> && L >= Isa::kAvx512Bf16) {
    return &nm_bf16dot::nm_linear_block_bf16;
  } else if constexpr (std::is_same_v<T, float> || std::is_same_v<T, bf16>) {
    if constexpr (L == Isa::kAvx2) return &nm_avx2::nm_linear_block_simd<T>;
    else if constexpr (L >= Isa::kAvx512) return &nm_avx512::nm_linear_block_simd<T>;
    else return &nm_linear_block<T>;
  } else {
    return &nm_linear_block<T>;
  }
#else
  return &nm_linear_block<T>;
#endif
}
template <Isa L, typename T>
constexpr auto nm_linear_kernel = nm_linear_pick<L, T>();

// The nm_linear_packed core of each level's table, and the rows of x from
// which it beats the level's nm_linear core (-1: never; the module then keeps
// the canonical path): the lanes kernel for bf16 on avx512_bf16, where the
// direct kernel wins up to kDirectMaxRows; the portable template elsewhere.
template <Isa L, typename T>
constexpr auto nm_linear_packed_pick() {
#if EFFDL_X86_LEVELS
  if constexpr (std::is_same_v<T, bf16> && L >= Isa::kAvx512Bf16) return &nm_bf16dot::packed_block_bf16;
  else return &nm_linear_packed_block<T>;
#else
  return &nm_linear_packed_block<T>;
#endif
}
template <Isa L, typename T>
constexpr auto nm_linear_packed_kernel = nm_linear_packed_pick<L, T>();

template <Isa L, typename T>
constexpr int64_t nm_packed_min_rows() {
#if EFFDL_X86_LEVELS
  if constexpr (std::is_same_v<T, bf16> && L >= Isa::kAvx512Bf16) return nm_bf16dot::kDirectMaxRows + 1;
#endif
  return -1;
}

// Whether the level's nm_linear core reads the packed xt (KernelTable::nm_reads_xt).
template <Isa L, typename T>
constexpr auto nm_reads_xt_pick() {
#if EFFDL_X86_LEVELS
  if constexpr (std::is_same_v<T, bf16> && L >= Isa::kAvx512Bf16) return &nm_bf16dot::reads_xt;
  else return &nm_reads_xt;
#else
  return &nm_reads_xt;
#endif
}
template <Isa L, typename T>
constexpr auto nm_reads_xt_kernel = nm_reads_xt_pick<L, T>();

}  // namespace effdl::core
