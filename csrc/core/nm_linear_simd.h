// AVX2 and AVX-512 kernels of the N:M ops for fp32 / bf16 (nm_linear) and the
// packed int8 path of nm_int8_linear, torch-free. They read the canonical
// storage (nm_format.h) directly: the keep-mask bitmap is the decode.
//
// Two kernels, as in nm_linear.h:
//   dense tile (x read directly, small M): each vector of kLanes columns of a
//     weight row is expanded from its kept values into dense position in
//     register (AVX-512 vexpandps with the row's meta bits as the mask; AVX2 a
//     masked load and a lane permute from a 256-entry table), then multiplied
//     with dense x by FMA. Weight rows stream once, x stays in L1, and no
//     index is ever computed: this is the memory-bound regime.
//   strip (packed xt, larger M): a block of weight rows is decoded once into
//     column indices and fp32 values (L2), then every kept weight adds
//     value * xt[col, strip] to a strip of up to kNmStrip outputs held in
//     registers. Only the kept products are computed; the xt rows a chunk of
//     K touches stay in L1 while the block's rows pass.
// Meta is validated per row (nm_meta_row_valid) before any of it is used.
#pragma once

#include <algorithm>
#include <cstdint>
#include <climits>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "dtype.h"
#include "int8.h"
#include "isa.h"
#include "nm_format.h"
#include "nm_int8_linear.h"
#include "nm_linear.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

// Weight rows decoded at once by the strip kernel (their columns and values, in
// L2), and the bytes of xt a chunk of K spans per strip (in L1).
constexpr int64_t kNmBlockDecodeBytes = 1 << 20;
constexpr int64_t kNmChunkBytes = 1 << 14;
// The int8 path sums each chunk's products in fp32, exact while a chunk holds
// at most kNmInt8ExactChunk (1024) products: a chunk spans at most
// kNmChunkBytes / (4 * kNmPad) = 256 columns.
static_assert(kNmChunkBytes / (4 * kNmPad) <= 1024, "int8 strip chunks must stay exact in fp32");

#if EFFDL_X86_LEVELS

// -------------------------------------------------------------- AVX-512
namespace nm_avx512 {
#define EFFDL_NMV_TARGET __attribute__((target("arch=x86-64-v4")))
using vf = __m512;
constexpr int kLanes = 16;
constexpr int kChains = 4;  // independent FMA chains that hide the FMA latency

EFFDL_NMV_TARGET inline vf vzero() { return _mm512_setzero_ps(); }
EFFDL_NMV_TARGET inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
EFFDL_NMV_TARGET inline vf vload_n(const float* p, int n) {  // first n < kLanes lanes, rest 0
  return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p);
}
EFFDL_NMV_TARGET inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
EFFDL_NMV_TARGET inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
EFFDL_NMV_TARGET inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
EFFDL_NMV_TARGET inline vf vset1(float v) { return _mm512_set1_ps(v); }
EFFDL_NMV_TARGET inline float vsum(vf v) {
  // maskz extracts: _mm512_reduce_add_ps trips GCC 12's -Wmaybe-uninitialized
  const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(__mmask8(0xff), v, 0),
                                 _mm512_maskz_extractf32x8_ps(__mmask8(0xff), v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
// (maskz: the plain conversion trips GCC 12's -Wmaybe-uninitialized)
EFFDL_NMV_TARGET inline __m512i cvt_int(vf v) { return _mm512_maskz_cvtps_epi32(__mmask16(0xffff), v); }
// p[0, kLanes) += the lanes of v, which hold integers (exact conversion)
EFFDL_NMV_TARGET inline void vadd_int(int32_t* p, vf v) {
  const __m512i a = _mm512_loadu_si512(p);
  _mm512_storeu_si512(p, _mm512_add_epi32(a, cvt_int(v)));
}
EFFDL_NMV_TARGET inline void vstore_int(int32_t* p, vf v) { _mm512_storeu_si512(p, cvt_int(v)); }
// The dense weights of kLanes columns whose keep-mask is `bits`, from their
// popcount(bits) kept values at v (reads no further).
// (A masked load and a register expand: the memory form of vexpandps is
// microcoded on some cores.)
EFFDL_NMV_TARGET inline vf expand(const float* v, uint32_t bits) {
  const vf kept = _mm512_maskz_loadu_ps(__mmask16(_bzhi_u32(~0u, unsigned(__builtin_popcount(bits)))), v);
  return _mm512_maskz_expand_ps(__mmask16(bits), kept);
}
// expand() of a mask known to hold c bits
EFFDL_NMV_TARGET inline vf expand_n(const float* v, uint32_t bits, int c) {
  return _mm512_maskz_expand_ps(__mmask16(bits), vload_n(v, c));
}
EFFDL_NMV_TARGET inline uint32_t full_bits(const uint8_t* meta, int64_t k) {  // k % kLanes == 0
  uint16_t b;
  std::memcpy(&b, meta + k / 8, 2);
  return b;
}
#include "nm_linear_simd.inc"
#undef EFFDL_NMV_TARGET
}  // namespace nm_avx512

// -------------------------------------------------------------- AVX2
namespace nm_avx2 {
#define EFFDL_NMV_TARGET __attribute__((target("arch=x86-64-v3")))
using vf = __m256;
constexpr int kLanes = 8;
constexpr int kChains = 8;  // two FMA ports

// For each byte of keep-mask bits, the source lane of each dense lane: the
// rank of its bit among the set ones, or lane 7 for a clear bit (a zero lane
// of the masked load whenever fewer than 8 bits are set).
struct ExpandTable {
  uint8_t idx[256][8];
  constexpr ExpandTable() : idx() {
    for (int v = 0; v < 256; ++v) {
      int r = 0;
      for (int l = 0; l < 8; ++l) idx[v][l] = uint8_t((v >> l) & 1 ? r++ : 7);
    }
  }
};
inline constexpr ExpandTable kExpandTable{};

EFFDL_NMV_TARGET inline __m256i first_lanes(int n) {  // lanes < n all ones
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
EFFDL_NMV_TARGET inline vf vzero() { return _mm256_setzero_ps(); }
EFFDL_NMV_TARGET inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
EFFDL_NMV_TARGET inline vf vload_n(const float* p, int n) { return _mm256_maskload_ps(p, first_lanes(n)); }
EFFDL_NMV_TARGET inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
EFFDL_NMV_TARGET inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
EFFDL_NMV_TARGET inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
EFFDL_NMV_TARGET inline vf vset1(float v) { return _mm256_set1_ps(v); }
EFFDL_NMV_TARGET inline float vsum(vf v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
EFFDL_NMV_TARGET inline void vadd_int(int32_t* p, vf v) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_add_epi32(a, _mm256_cvtps_epi32(v)));
}
EFFDL_NMV_TARGET inline void vstore_int(int32_t* p, vf v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvtps_epi32(v));
}
EFFDL_NMV_TARGET inline vf expand_n(const float* v, uint32_t bits, int c) {
  const vf kept = vload_n(v, c);
  const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kExpandTable.idx[bits])));
  return _mm256_permutevar8x32_ps(kept, idx);
}
EFFDL_NMV_TARGET inline vf expand(const float* v, uint32_t bits) {
  return expand_n(v, bits, __builtin_popcount(bits));
}
EFFDL_NMV_TARGET inline uint32_t full_bits(const uint8_t* meta, int64_t k) { return meta[k / 8]; }
#include "nm_linear_simd.inc"
#undef EFFDL_NMV_TARGET
}  // namespace nm_avx2

#endif  // EFFDL_X86_LEVELS

// (Each level's choice among these kernels, nm_linear_pick, is in nm_linear_bf16.h.)

}  // namespace effdl::core
