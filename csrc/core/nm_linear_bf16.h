// nm_linear for bf16 2:4 weights on AVX-512 BF16 (the avx512_bf16 level),
// torch-free, and the choice of each level's nm_linear core.
//
// vdpbf16ps multiplies the two bf16 halves of each 32-bit lane of two vectors
// and adds both products to an fp32 lane, so bf16 operands are never widened.
// In 2:4 every group of four columns keeps exactly two values, stored next to
// each other: a 32-bit word of the canonical values (nm_format.h) is one
// weight pair, the pair vdpbf16ps wants. Two kernels, as in nm_linear_simd.h:
//   direct (x read directly, small M: memory-bound): 32 columns of a weight row
//     are expanded from its 16 kept values into dense position in register
//     (vpexpandw, the row's 32 meta bits as the mask) and dotted with 32
//     columns of x straight from its bf16 rows: one load, one expand and one
//     vdpbf16ps per 32 columns and x row, x never converted.
//   pairs (packed xt, larger M): for a chunk of groups and a strip of up to 64
//     rows of x, x is packed once as the six possible pairs of each group,
//     (x[i, 4g + a], x[i, 4g + b]) for a < b, one 32-bit lane per row i; an
//     output column then adds, per group, vdpbf16ps(x pairs of its pattern,
//     broadcast weight pair) to a strip of accumulators: only the kept
//     products, half the dot instructions of a dense bf16 GEMM.
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

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

#if EFFDL_X86_LEVELS
namespace nm_bf16dot {
#define EFFDL_NMB_TARGET __attribute__((target("arch=x86-64-v4,avx512bf16,avx512vbmi2")))

// Up to this many rows of x the direct kernel runs (the glue packs xt above
// kNmGatherMaxRows, so both kernels are possible between the two).
constexpr int64_t kDirectMaxRows = 16;
constexpr int kTileRows = 4;           // weight rows of a direct tile (x rows: up to 4 more)
constexpr int kPrefetchBytes = 1024;   // how far ahead of a weight row's reads to prefetch
constexpr int64_t kPackBytes = 24 << 10;  // the x pairs of one chunk: within L1
constexpr int64_t kBlockBytes = 512 << 10;  // weight rows (values, patterns) a block revisits: L2

// The six kept pairs (a, b) of a group of four, and the pair of each valid
// 2-bit nibble of the keep-mask (-1: not exactly two bits).
constexpr int kPairs = 6;
constexpr int kPairA[kPairs] = {0, 0, 0, 1, 1, 2};
constexpr int kPairB[kPairs] = {1, 2, 3, 2, 3, 3};
constexpr int8_t kNibblePair[16] = {-1, -1, -1, 0, -1, 1, 3, -1, -1, 2, 4, -1, 5, -1, -1, -1};

EFFDL_NMB_TARGET inline __m512 dot(__m512 acc, __m512i x, __m512i w) {
  return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)w);
}

// -------------------------------------------------------------- direct

// The dense bf16 weights of 32 columns whose keep-mask is `bits` (16 set), from
// their 16 kept values at v.
EFFDL_NMB_TARGET inline __m512i expand32(const bf16* v, uint32_t bits) {
  const __m256i kept = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v));
  return _mm512_maskz_expand_epi16(__mmask32(bits), _mm512_zextsi256_si512(kept));
}

// out[i][r] = sum_k x[i][k] * W[r][k] for MR rows of x and kTileRows 2:4
// weight rows (kept values v[r], meta rows meta[r], both valid).
template <int MR>
EFFDL_NMB_TARGET inline void direct_tile(const bf16* const* x, const bf16* const* v,
                                         const uint8_t* const* meta, int64_t K, float* out) {
  __m512 acc[MR][kTileRows];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kTileRows; ++r) acc[i][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    __m512i w[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
      uint32_t bits;
      std::memcpy(&bits, meta[r] + k / 8, 4);
      const bf16* p = v[r] + k / 2;
      // four weight streams at once outrun the hardware prefetcher: help it
      _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
      w[r] = expand32(p, bits);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_loadu_si512(x[i] + k);
      for (int r = 0; r < kTileRows; ++r) acc[i][r] = dot(acc[i][r], xv, w[r]);
    }
  }
  if (k < K) {  // K % 4 == 0: rem / 2 kept values, rem / 8 meta bytes and maybe a nibble
    const int rem = int(K - k);
    __m512i w[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
      uint32_t bits = 0;  // zero past K (validated)
      for (int t = 0; t < (rem + 7) / 8; ++t) bits |= uint32_t(meta[r][k / 8 + t]) << (8 * t);
      const __m256i kept = _mm256_maskz_loadu_epi16(__mmask16((1u << (rem / 2)) - 1), v[r] + k / 2);
      w[r] = _mm512_maskz_expand_epi16(__mmask32(bits), _mm512_zextsi256_si512(kept));
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_maskz_loadu_epi16(__mmask32((1u << rem) - 1), x[i] + k);
      for (int r = 0; r < kTileRows; ++r) acc[i][r] = dot(acc[i][r], xv, w[r]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kTileRows; ++r) out[i * kTileRows + r] = nm_avx512::vsum(acc[i][r]);
}

// nm_linear_block's contract for 2:4, x read directly (any M; meant for small M).
EFFDL_NMB_TARGET inline bool direct_block(const bf16* x, int64_t ldx, int64_t M, int64_t K,
                                          const bf16* values, const uint8_t* meta, const bf16* bias,
                                          bf16* y, int64_t ldy, int64_t o_begin, int64_t o_end) {
  const int64_t kept = K / 2, mb = nm_meta_bytes(K);
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kTileRows) {
    const int rows = int(std::min<int64_t>(kTileRows, o_end - o0));
    const bf16* v[kTileRows];
    const uint8_t* mr[kTileRows];
    for (int r = 0; r < kTileRows; ++r) {
      const int64_t o = o0 + std::min(r, rows - 1);  // a short tile repeats its last row
      mr[r] = meta + o * mb;
      v[r] = values + o * kept;
      if (r < rows && !nm_meta_row_valid(mr[r], K, 2, 4)) return false;
    }
    for (int64_t i0 = 0; i0 < M; i0 += 4) {
      const int mr_rows = int(std::min<int64_t>(4, M - i0));
      const bf16* xi[4];
      for (int i = 0; i < 4; ++i) xi[i] = x + (i0 + std::min(i, mr_rows - 1)) * ldx;
      float out[4 * kTileRows];
      switch (mr_rows) {
        case 4: direct_tile<4>(xi, v, mr, K, out); break;
        case 3: direct_tile<3>(xi, v, mr, K, out); break;
        case 2: direct_tile<2>(xi, v, mr, K, out); break;
        default: direct_tile<1>(xi, v, mr, K, out); break;
      }
      for (int i = 0; i < mr_rows; ++i)
        for (int r = 0; r < rows; ++r) {
          const float b = bias ? load(bias[o0 + r]) : 0.f;
          y[(i0 + i) * ldy + o0 + r] = store<bf16>(out[i * kTileRows + r] + b);
        }
    }
  }
  return true;
}

// -------------------------------------------------------------- pairs

// The x pairs of groups [g0, g0 + G) for a strip of S vectors of rows from
// column i0 of xt: xp[(j * kPairs + p) * 16 * S + lane] holds, for row
// i0 + lane, x[., 4(g0 + j) + kPairA[p]] in its low half and
// x[., 4(g0 + j) + kPairB[p]] in its high half. xt holds bf16 values widened
// to fp32 (exact): a bf16 is the top half of its fp32.
template <int S>
EFFDL_NMB_TARGET inline void pack_pairs(const float* xt, int64_t ld, int64_t i0, int64_t g0,
                                        int64_t G, uint32_t* xp) {
  const __m512i top = _mm512_set1_epi32(int(0xffff0000u));
  for (int64_t j = 0; j < G; ++j) {
    const float* r = xt + 4 * (g0 + j) * ld + i0;
    uint32_t* dst = xp + j * kPairs * 16 * S;
    for (int s = 0; s < S; ++s) {
      __m512i lo[4], hi[4];
      for (int t = 0; t < 4; ++t) {
        const __m512i c = _mm512_castps_si512(_mm512_loadu_ps(r + t * ld + 16 * s));
        lo[t] = _mm512_srli_epi32(c, 16);
        hi[t] = _mm512_and_si512(c, top);
      }
      for (int p = 0; p < kPairs; ++p)
        _mm512_storeu_si512(dst + p * 16 * S + 16 * s, _mm512_or_si512(lo[kPairA[p]], hi[kPairB[p]]));
    }
  }
}

// part[r][0, 16 S) (+)= the sums over G groups of R weight rows: w[r][j] is
// row r's weight pair of group j (w[r][2j], w[r][2j + 1] as one 32-bit word),
// pat[r][j] the
// pair index of its pattern. R * S independent accumulators hide the latency.
template <int S, int R>
EFFDL_NMB_TARGET inline void pair_rows(const uint32_t* xp, const bf16* const* w,
                                       const uint8_t* const* pat, int64_t G, float* const* part,
                                       bool first) {
  constexpr int64_t kStride = 16 * S;  // one pair's lanes
  __m512 acc[R][S];
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) acc[r][s] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(part[r] + 16 * s);
  for (int64_t j = 0; j < G; ++j) {
    const uint32_t* xg = xp + j * kPairs * kStride;
    for (int r = 0; r < R; ++r) {
      uint32_t wv;
      std::memcpy(&wv, w[r] + 2 * j, 4);
      const __m512i wb = _mm512_set1_epi32(int(wv));
      const uint32_t* xs = xg + pat[r][j] * kStride;
      for (int s = 0; s < S; ++s) acc[r][s] = dot(acc[r][s], _mm512_loadu_si512(xs + 16 * s), wb);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) _mm512_storeu_ps(part[r] + 16 * s, acc[r][s]);
}

// Rows [0, rows) of a block: R at a time, the rest one by one.
template <int S>
EFFDL_NMB_TARGET inline void pair_block_rows(const uint32_t* xp, const bf16* w0, int64_t wld,
                                             const uint8_t* pat0, int64_t pld, int64_t rows,
                                             int64_t G, float* part0, bool first) {
  constexpr int R = 12 / S;
  int64_t r0 = 0;
  for (; r0 + R <= rows; r0 += R) {
    const bf16* w[R];
    const uint8_t* pat[R];
    float* part[R];
    for (int r = 0; r < R; ++r) {
      w[r] = w0 + (r0 + r) * wld;
      pat[r] = pat0 + (r0 + r) * pld;
      part[r] = part0 + (r0 + r) * kNmStrip;
    }
    pair_rows<S, R>(xp, w, pat, G, part, first);
  }
  for (; r0 < rows; ++r0) {
    const bf16* w[1] = {w0 + r0 * wld};
    const uint8_t* pat[1] = {pat0 + r0 * pld};
    float* part[1] = {part0 + r0 * kNmStrip};
    pair_rows<S, 1>(xp, w, pat, G, part, first);
  }
}

// One strip of S vectors of rows at i0: chunk by chunk of groups, pack the
// pairs, then every row of the block adds its chunk sums to part.
template <int S>
EFFDL_NMB_TARGET inline void pair_strip(const float* xt, int64_t ld, int64_t i0, int64_t groups,
                                        const bf16* w0, int64_t wld, const uint8_t* pat0,
                                        int64_t rows, uint32_t* xp, float* part) {
  const int64_t G = std::max<int64_t>(1, kPackBytes / (kPairs * 64 * S));
  for (int64_t g0 = 0; g0 < groups; g0 += G) {
    const int64_t gn = std::min(G, groups - g0);
    pack_pairs<S>(xt, ld, i0, g0, gn, xp);
    pair_block_rows<S>(xp, w0 + 2 * g0, wld, pat0 + g0, groups, rows, gn, part, g0 == 0);
  }
}

// nm_linear_block's contract for 2:4 from the packed xt (nm_linear.h layout).
EFFDL_NMB_TARGET inline bool pair_block(const float* xt, int64_t M, int64_t K, const bf16* values,
                                        const uint8_t* meta, const bf16* bias, bf16* y, int64_t ldy,
                                        int64_t o_begin, int64_t o_end) {
  const int64_t groups = K / 4, kept = K / 2, mb = nm_meta_bytes(K);
  const int64_t Mp = nm_padded_rows(M), ld = nm_xt_stride(M);
  // a block's weight values (K bytes a row) and patterns (K / 4) stay in L2
  // while every strip of x passes over them
  const int64_t nb = std::clamp<int64_t>(kBlockBytes / std::max<int64_t>(K + groups, 1), 12, 256);
  std::vector<uint8_t> pat(size_t(nb * groups + 1));
  std::vector<float> part(size_t(nb * kNmStrip));
  std::vector<uint32_t> xp(size_t(kPackBytes / 4 + kPairs * 16 * 4));
  for (int64_t ob = o_begin; ob < o_end; ob += nb) {
    const int64_t oe = std::min(o_end, ob + nb);
    for (int64_t o = ob; o < oe; ++o) {
      const uint8_t* mrow = meta + o * mb;
      if (!nm_meta_row_valid(mrow, K, 2, 4)) return false;
      uint8_t* pr = pat.data() + (o - ob) * groups;
      for (int64_t g = 0; g < groups; ++g) pr[g] = uint8_t(kNibblePair[(mrow[g / 2] >> (4 * (g & 1))) & 15]);
    }
    const bf16* w0 = values + ob * kept;
    for (int64_t i0 = 0; i0 < Mp; i0 += kNmStrip) {
      const int64_t wdt = std::min(kNmStrip, Mp - i0);
      switch (wdt / 16) {
        case 1: pair_strip<1>(xt, ld, i0, groups, w0, kept, pat.data(), oe - ob, xp.data(), part.data()); break;
        case 2: pair_strip<2>(xt, ld, i0, groups, w0, kept, pat.data(), oe - ob, xp.data(), part.data()); break;
        case 3: pair_strip<3>(xt, ld, i0, groups, w0, kept, pat.data(), oe - ob, xp.data(), part.data()); break;
        default: pair_strip<4>(xt, ld, i0, groups, w0, kept, pat.data(), oe - ob, xp.data(), part.data()); break;
      }
      const int64_t rows = std::min(wdt, M - i0);
      for (int64_t o = ob; o < oe; ++o) {
        const float* p = part.data() + (o - ob) * kNmStrip;
        const float b = bias ? load(bias[o]) : 0.f;
        for (int64_t t = 0; t < rows; ++t) y[(i0 + t) * ldy + o] = store<bf16>(p[t] + b);
      }
    }
  }
  return true;
}

// nm_linear_block (nm_linear.h) for bf16: the kernels above for 2:4, the
// AVX-512 kernel of nm_linear_simd.h for every other pattern.
EFFDL_NMB_TARGET inline bool nm_linear_block_bf16(const bf16* x, int64_t ldx, const float* xt, int64_t M,
                                                  int64_t K, const bf16* values, const uint8_t* meta, int n,
                                                  int m, const bf16* bias, bf16* y, int64_t ldy,
                                                  int64_t o_begin, int64_t o_end) {
  if (n != 2 || m != 4 || K == 0)
    return nm_avx512::nm_linear_block_simd<bf16>(x, ldx, xt, M, K, values, meta, n, m, bias, y, ldy,
                                                 o_begin, o_end);
  if (xt == nullptr || M <= kDirectMaxRows)
    return direct_block(x, ldx, M, K, values, meta, bias, y, ldy, o_begin, o_end);
  return pair_block(xt, M, K, values, meta, bias, y, ldy, o_begin, o_end);
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

}  // namespace effdl::core
