// nm_int8_linear on AVX-512 VNNI: the avx512_vnni level's nm_int8_linear_block
// (nm_int8_linear_kernel below picks the core of each level). Torch-free.
// 2:4 weights go to nm_int8_select.h, which computes only the kept products;
// every other N:M pattern takes the expanding kernel here.
//
// Each tile of 4 weight rows is first expanded into dense rows of shifted
// bytes w + 128 (kept weights at their columns, 0 + 128 elsewhere) in L1,
// through the decoded column list, then multiplied with up to 4 rows of q at
// a time by vpdpbusd, 64 products per instruction, q read straight from
// memory. The weights stream once and the expansion is amortised over all
// rows of q, but the dot work is dense.
//
// Exactness is int8_vnni.h's argument: vpdpbusd multiplies the unsigned
// w + 128 by the signed q, so each sum is dot + 128 * sum_k q[k] modulo 2^32;
// the second term is taken back out per row of q (wrapping, in uint32), and
// the true dot product of the kept weights lies in [-2^31, 2^31) since
// K * n / m <= kInt8MaxK, so the wrapped result is the exact one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "int8.h"
#include "isa.h"
#include "nm_format.h"
#include "nm_int8_linear.h"
#include "nm_int8_select.h"
#include "nm_linear_simd.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

#if EFFDL_X86_LEVELS

namespace nm_vnni {
#define EFFDL_NMQ_TARGET __attribute__((target("arch=x86-64-v4,avx512vnni")))

constexpr int kCols = 4;  // weight rows (output columns) per tile
constexpr int kRows = 4;  // rows of q per tile

// dst[0, round_up(K, 64)) = the shifted dense bytes of one row (valid meta).
// cols: scratch of K * n / m + 8 entries.
EFFDL_NMQ_TARGET inline void expand_row(const int8_t* v, const uint8_t* meta, int64_t K, int n, int m,
                                        int32_t* cols, uint8_t* dst) {
  const int64_t kp = (K + 63) / 64 * 64;
  std::memset(dst, 0x80, size_t(kp));
  nm_row_cols(meta, K, cols);
  const int64_t kept = nm_kept(K, n, m);
  for (int64_t j = 0; j < kept; ++j) dst[cols[j]] = uint8_t(uint8_t(v[j]) ^ 0x80u);
}

// The sum of the 16 int32 lanes, modulo 2^32 (maskz extracts: the plain
// reduction trips GCC 12's -Wmaybe-uninitialized).
EFFDL_NMQ_TARGET inline int32_t hsum(__m512i v) {
  const __m256i h = _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(__mmask8(0xff), v, 0),
                                     _mm512_maskz_extracti64x4_epi64(__mmask8(0xff), v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

// acc[r][c] = sum_k w[c][k] * q[r][k] over the shifted dense rows w (padded
// to a multiple of 64 bytes), modulo 2^32.
template <int R>
EFFDL_NMQ_TARGET inline void dot_tile(const int8_t* const* q, const uint8_t* const* w, int64_t K,
                                      int32_t (&acc)[kRows][kCols]) {
  __m512i s[R][kCols];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) s[r][c] = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    __m512i wv[kCols];
    for (int c = 0; c < kCols; ++c) wv[c] = _mm512_loadu_si512(w[c] + k);
    for (int r = 0; r < R; ++r) {
      const __m512i a = _mm512_loadu_si512(q[r] + k);
      for (int c = 0; c < kCols; ++c) s[r][c] = _mm512_dpbusd_epi32(s[r][c], wv[c], a);
    }
  }
  if (k < K) {  // masked q bytes load as 0 and add nothing
    const __mmask64 mask = _bzhi_u64(~uint64_t(0), unsigned(K - k));
    __m512i wv[kCols];
    for (int c = 0; c < kCols; ++c) wv[c] = _mm512_loadu_si512(w[c] + k);
    for (int r = 0; r < R; ++r) {
      const __m512i a = _mm512_maskz_loadu_epi8(mask, q[r] + k);
      for (int c = 0; c < kCols; ++c) s[r][c] = _mm512_dpbusd_epi32(s[r][c], wv[c], a);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kCols; ++c) acc[r][c] = hsum(s[r][c]);
}

// 128 * sum_k q[k], modulo 2^32.
EFFDL_NMQ_TARGET inline int32_t row_shift(const int8_t* q, int64_t K) {
  const __m512i shift = _mm512_set1_epi8(char(0x80));
  __m512i s = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 <= K; k += 64) s = _mm512_dpbusd_epi32(s, shift, _mm512_loadu_si512(q + k));
  if (k < K)
    s = _mm512_dpbusd_epi32(s, shift, _mm512_maskz_loadu_epi8(_bzhi_u64(~uint64_t(0), unsigned(K - k)), q + k));
  return hsum(s);
}

}  // namespace nm_vnni

// nm_int8_linear_block (nm_int8_linear.h), same contract and bit-identical
// results; qt is not needed (q is read directly at every M).
template <typename Out>
EFFDL_NMQ_TARGET bool nm_int8_linear_block_vnni(const int8_t* q, int64_t ldq, const float* /*qt*/,
                                                const float* q_scale, int64_t M, int64_t K,
                                                const int8_t* values, const uint8_t* meta, int n, int m,
                                                const float* w_scale, const float* bias, Out* out,
                                                int64_t ldo, int64_t o_begin, int64_t o_end) {
  using namespace nm_vnni;
  if (n == 2 && m == 4)  // only the kept products: nm_int8_select.h
    return nm24_int8_linear_block_select<Out>(q, ldq, q_scale, M, K, values, meta, w_scale, bias, out, ldo, o_begin,
                                              o_end);
  const int64_t kept = nm_kept(K, n, m), mb = nm_meta_bytes(K), kp = (K + 63) / 64 * 64;
  std::vector<uint8_t> dense(size_t(kCols * kp));
  std::vector<int32_t> cols(static_cast<size_t>(kept + 8)), shift(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) shift[size_t(i)] = row_shift(q + i * ldq, K);
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kCols) {
    const int cn = int(std::min<int64_t>(kCols, o_end - o0));
    const uint8_t* w[kCols];
    for (int c = 0; c < kCols; ++c) {
      w[c] = dense.data() + std::min(c, cn - 1) * kp;  // a short tile repeats its last row
      if (c >= cn) continue;
      const uint8_t* mrow = meta + (o0 + c) * mb;
      if (!nm_meta_row_valid(mrow, K, n, m)) return false;
      expand_row(values + (o0 + c) * kept, mrow, K, n, m, cols.data(), dense.data() + c * kp);
    }
    for (int64_t i0 = 0; i0 < M; i0 += kRows) {
      const int rn = int(std::min<int64_t>(kRows, M - i0));
      const int8_t* qr[kRows];
      for (int r = 0; r < kRows; ++r) qr[r] = q + (i0 + std::min(r, rn - 1)) * ldq;
      int32_t acc[kRows][kCols];
      switch (rn) {
        case 4: dot_tile<4>(qr, w, K, acc); break;
        case 3: dot_tile<3>(qr, w, K, acc); break;
        case 2: dot_tile<2>(qr, w, K, acc); break;
        default: dot_tile<1>(qr, w, K, acc); break;
      }
      for (int r = 0; r < rn; ++r)
        for (int c = 0; c < cn; ++c) {
          const int64_t i = i0 + r, o = o0 + c;
          const int32_t dot = int32_t(uint32_t(acc[r][c]) - uint32_t(shift[size_t(i)]));  // see the top
          out[i * ldo + o] = int8_epilogue<Out>(dot, q_scale[i], w_scale[o], bias ? bias + o : nullptr);
        }
    }
  }
  return true;
}

#undef EFFDL_NMQ_TARGET

#endif  // EFFDL_X86_LEVELS

// The nm_int8_linear core of each level: the VNNI kernel above on avx512_vnni;
// on avx2 / avx512 the strip kernel of nm_linear_simd.h when q is packed (exact
// int32 sums of fp32 chunks), else the portable template.
template <Isa L, typename Out>
constexpr auto nm_int8_pick() {
#if EFFDL_X86_LEVELS
  if constexpr (L == Isa::kAvx512Vnni) return &nm_int8_linear_block_vnni<Out>;
  else if constexpr (L == Isa::kAvx512) return &nm_avx512::nm_int8_linear_block_simd<Out>;
  else if constexpr (L == Isa::kAvx2) return &nm_avx2::nm_int8_linear_block_simd<Out>;
  else return &nm_int8_linear_block<Out>;
#else
  return &nm_int8_linear_block<Out>;
#endif
}
template <Isa L, typename Out>
constexpr auto nm_int8_linear_kernel = nm_int8_pick<L, Out>();

// Whether the level's core reads the packed qt (KernelTable::nm_int8_reads_qt):
// the VNNI kernel reads q directly at every M, so the glue packs nothing for it.
inline bool nm_int8_reads_no_qt(int64_t /*M*/) { return false; }
template <Isa L>
constexpr auto nm_int8_reads_qt_pick() {
#if EFFDL_X86_LEVELS
  if constexpr (L == Isa::kAvx512Vnni) return &nm_int8_reads_no_qt;
  else return &nm_int8_reads_qt;
#else
  return &nm_int8_reads_qt;
#endif
}
template <Isa L>
constexpr auto nm_int8_reads_qt_kernel = nm_int8_reads_qt_pick<L>();

}  // namespace effdl::core
