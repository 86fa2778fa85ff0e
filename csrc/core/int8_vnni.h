// int8_linear on AVX-512 VNNI: the avx512_vnni level's int8_linear_block
// (kernel_table_level.inc picks it through int8_linear_kernel below; every other
// level keeps the portable template of int8.h). Torch-free.
//
// vpdpbusd multiplies unsigned bytes by signed bytes, four at a time, and adds
// the four products to an int32 lane. Both operands are signed here, so the
// weight bytes are shifted to the unsigned w + 128 (an XOR 0x80 in register)
// and the shift is taken back out exactly, once per row of q:
//   sum_k (w[k] + 128) * q[k] = sum_k q[k] * w[k] + 128 * sum_k q[k]
// (Shifting the weights rather than the activations puts the correction on the
// rows of q, computed once per call, instead of on every output column.)
//
// Exactness: every instruction here (vpdpbusd, vpaddd, the horizontal adds)
// wraps modulo 2^32, and so does the final subtraction (done in uint32), so
// the result is congruent to the true dot product modulo 2^32 whatever the
// intermediate sums do (sum_k (w + 128) * q alone reaches 255 * 128 * K, past
// int32 once K > 65793). The true dot product lies in [-2^31, 2^31) because
// K <= kInt8MaxK (|q|, |w| <= 128), so the wrapped result *is* the true result,
// bit for bit, with no blocking of K.
//
// Layout: no packing. Each micro-tile is R rows of q (R <= 4) x 4 rows of wq
// (output columns), both read along K in 64-byte steps; the K tail is a masked
// load that zero-fills, and a zero activation byte adds 0 to both sums. The 4R
// accumulators are reduced horizontally once per tile. Row blocks of q sized
// to stay in L2 are swept by every column tile of the chunk, and the 4 weight
// rows of a tile (4K bytes) stay in L1 while the block's rows pass.
#pragma once

#include <algorithm>
#include <cstdint>

#include "int8.h"
#include "isa.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

#if EFFDL_X86_LEVELS

// The level's own attribute (kernel_table_avx512_vnni.cpp), so these inline into its entry point.
#define EFFDL_VNNI_TARGET __attribute__((target("arch=x86-64-v4,avx512vnni")))

namespace vnni {

constexpr int kCols = 4;                    // output columns per micro-tile
constexpr int kMaxRows = 4;                 // rows of q per micro-tile
constexpr int64_t kRowBlockBytes = 1 << 18;  // rows of q swept per column tile: ~L2
constexpr int64_t kMaxBlockRows = 256;       // and at most this many (their shift sums sit on the stack)

// 512 -> 128 bits: four lanes whose sum is the sum of v's sixteen.
EFFDL_VNNI_TARGET inline __m128i fold(__m512i v) {
  // maskz extracts: the casts and plain extracts trip GCC 12's -Wmaybe-uninitialized
  // on the undefined source vector they pass
  const __m256i lo = _mm512_maskz_extracti64x4_epi64(__mmask8(0xff), v, 0);
  const __m256i hi = _mm512_maskz_extracti64x4_epi64(__mmask8(0xff), v, 1);
  const __m256i h = _mm256_add_epi32(lo, hi);
  return _mm_add_epi32(_mm256_extracti128_si256(h, 0), _mm256_extracti128_si256(h, 1));
}

// The four int32 sums of the lanes of v0..v3, as one vector [sum v0, .., sum v3].
EFFDL_VNNI_TARGET inline __m128i hsum4(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  return _mm_hadd_epi32(_mm_hadd_epi32(fold(v0), fold(v1)), _mm_hadd_epi32(fold(v2), fold(v3)));
}

// One 64-byte step along K of dot_tile; masked-off bytes load as 0 (the
// weight then shifts to 128, but its activation byte is 0).
template <int R>
EFFDL_VNNI_TARGET inline void dot_step(const int8_t* const* q, const int8_t* const* w, int64_t k,
                                       __mmask64 mask, __m512i (&s)[R][kCols]) {
  const __m512i shift = _mm512_set1_epi8(char(0x80));
  __m512i wv[kCols];
  for (int c = 0; c < kCols; ++c) wv[c] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, w[c] + k), shift);
  for (int r = 0; r < R; ++r) {
    const __m512i a = _mm512_maskz_loadu_epi8(mask, q[r] + k);
    for (int c = 0; c < kCols; ++c) s[r][c] = _mm512_dpbusd_epi32(s[r][c], wv[c], a);
  }
}

// acc[r][c] = sum_k (w[c][k] + 128) * q[r][k] for R rows and kCols columns,
// modulo 2^32 (the caller takes 128 * sum_k q[r][k] back out).
template <int R>
EFFDL_VNNI_TARGET inline void dot_tile(const int8_t* const* q, const int8_t* const* w, int64_t K,
                                       int32_t acc[R][kCols]) {
  __m512i s[R][kCols];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) s[r][c] = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) dot_step<R>(q, w, k, ~__mmask64(0), s);
  if (k < K) dot_step<R>(q, w, k, _bzhi_u64(~uint64_t(0), unsigned(K - k)), s);
  for (int r = 0; r < R; ++r)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(acc[r]), hsum4(s[r][0], s[r][1], s[r][2], s[r][3]));
}

// 128 * sum_k q[k], modulo 2^32 (as int32: it fits, |sum| <= 128 * kInt8MaxK).
EFFDL_VNNI_TARGET inline int32_t shifted_row_sum(const int8_t* q, int64_t K) {
  const __m512i shift = _mm512_set1_epi8(char(0x80));
  __m512i s = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) s = _mm512_dpbusd_epi32(s, shift, _mm512_loadu_si512(q + k));
  if (k < K) s = _mm512_dpbusd_epi32(s, shift, _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t(0), unsigned(K - k)), q + k));
  const __m512i z = _mm512_setzero_si512();
  return _mm_cvtsi128_si32(hsum4(s, z, z, z));
}

// Rows [i0, i0 + R) x columns [o0, o0 + cols) of out, cols <= kCols (a short
// last tile repeats its last column and drops the copies).
template <int R, typename Out>
EFFDL_VNNI_TARGET inline void tile(const int8_t* q, int64_t ldq, const float* q_scale, int64_t K,
                                   const int8_t* wq, const float* w_scale, const float* bias, Out* out,
                                   int64_t ldo, const int32_t* row_shift, int64_t i0, int64_t o0,
                                   int cols) {
  const int8_t* qr[R];
  const int8_t* wr[kCols];
  for (int r = 0; r < R; ++r) qr[r] = q + (i0 + r) * ldq;
  for (int c = 0; c < kCols; ++c) wr[c] = wq + (o0 + std::min(c, cols - 1)) * K;
  int32_t acc[R][kCols];
  dot_tile<R>(qr, wr, K, acc);
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < cols; ++c) {
      const int64_t o = o0 + c;
      // wrapping subtraction (unsigned): the true sum fits int32, see the top
      const int32_t dot = int32_t(uint32_t(acc[r][c]) - uint32_t(row_shift[r]));
      out[(i0 + r) * ldo + o] = int8_epilogue<Out>(dot, q_scale[i0 + r], w_scale[o], bias ? bias + o : nullptr);
    }
  }
}

}  // namespace vnni

// int8_linear_block (int8.h) with the same contract and the same results, bit
// for bit, on CPUs with AVX-512 VNNI.
template <typename Out>
EFFDL_VNNI_TARGET void int8_linear_block_vnni(const int8_t* q, int64_t ldq, const float* q_scale,
                                              int64_t M, int64_t K, const int8_t* wq,
                                              const float* w_scale, const float* bias, Out* out,
                                              int64_t ldo, int64_t o_begin, int64_t o_end) {
  using namespace vnni;
  const int64_t rows_per_block = std::min<int64_t>(
      kMaxBlockRows,
      std::max<int64_t>(kMaxRows, kRowBlockBytes / std::max<int64_t>(K, 1) / kMaxRows * kMaxRows));
  int32_t row_shift[kMaxBlockRows];  // 128 * sum_k q[i, k] of the block's rows
  for (int64_t i_begin = 0; i_begin < M; i_begin += rows_per_block) {
    const int64_t i_end = std::min(M, i_begin + rows_per_block);
    for (int64_t i = i_begin; i < i_end; ++i) row_shift[i - i_begin] = shifted_row_sum(q + i * ldq, K);
    for (int64_t o0 = o_begin; o0 < o_end; o0 += kCols) {
      const int cols = int(std::min<int64_t>(kCols, o_end - o0));
      int64_t i = i_begin;
      for (; i + 4 <= i_end; i += 4)
        tile<4>(q, ldq, q_scale, K, wq, w_scale, bias, out, ldo, row_shift + (i - i_begin), i, o0, cols);
      const int32_t* rs = row_shift + (i - i_begin);
      switch (i_end - i) {
        case 3:
          tile<3>(q, ldq, q_scale, K, wq, w_scale, bias, out, ldo, rs, i, o0, cols);
          break;
        case 2:
          tile<2>(q, ldq, q_scale, K, wq, w_scale, bias, out, ldo, rs, i, o0, cols);
          break;
        case 1:
          tile<1>(q, ldq, q_scale, K, wq, w_scale, bias, out, ldo, rs, i, o0, cols);
          break;
        default:
          break;
      }
    }
  }
}

#undef EFFDL_VNNI_TARGET

// The int8_linear core each level's table holds: the VNNI kernel on avx512_vnni,
// the portable template (vectorised by the level's attribute) elsewhere.
template <Isa L, typename Out>
constexpr auto int8_linear_kernel = &int8_linear_block<Out>;
template <typename Out>
constexpr auto int8_linear_kernel<Isa::kAvx512Vnni, Out> = &int8_linear_block_vnni<Out>;

#else

template <Isa L, typename Out>
constexpr auto int8_linear_kernel = &int8_linear_block<Out>;

#endif

}  // namespace effdl::core
