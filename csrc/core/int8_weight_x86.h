// int8_weight_linear on AVX2 and AVX-512: the avx2 / avx512 / avx512_vnni
// levels' int8_weight_linear_block (the portable template of int8.h elsewhere).
// Torch-free.
//
// At small M this is a matrix-vector product bound by the weight bytes, so the
// weights are read once, as int8 (16 or 8 bytes per load), widened and
// converted in registers and multiplied into fp32 accumulators; several weight
// rows share each load of x, and up to 4 rows of x share each converted weight
// vector. Each accumulator is summed horizontally once per output.
// Rows of x are taken in blocks that stay in L2 while every weight row of the
// chunk passes, so larger M reads the weights once per block, not per row.
//
// bf16 x on avx512_bf16 skips the widening of x to fp32: every int8 weight is
// exact in bf16 (8 significant bits), so vdpbf16ps forms each product exactly
// and adds 32 of them per instruction into fp32 accumulators, twice the
// products of an FMA. The weights' conversion (5 instructions per 32) is shared
// by 8 rows of x, which at M = 16 leaves the dot products as the bulk of the
// work. vdpbf16ps treats subnormal inputs and results as zero.
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

#define EFFDL_WEIGHT_AVX2 __attribute__((target("arch=x86-64-v3")))
#define EFFDL_WEIGHT_AVX512 __attribute__((target("arch=x86-64-v4")))
#define EFFDL_WEIGHT_BF16 __attribute__((target("arch=x86-64-v4,avx512bf16")))

namespace weight {

// Vectors travel by pointer (see int8_packed_x86.h): the generic kernel below
// has no vector-typed parameters, and the level's `flatten` entry inlines it.
struct F256 {
  using vec = __m256;
  using x_type = float;
  static constexpr int kLanes = 8;
  static constexpr int kRowsX = 2;  // 16 ymm: 8 accumulators, 4 weights, x
  static constexpr int kRowsW = 4;
  EFFDL_WEIGHT_AVX2 static inline void zero(vec* d) { *d = _mm256_setzero_ps(); }
  EFFDL_WEIGHT_AVX2 static inline void load_w(vec* d, const int8_t* w) {
    *d = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w))));
  }
  EFFDL_WEIGHT_AVX2 static inline void load_x(vec* d, const float* x) { *d = _mm256_loadu_ps(x); }
  EFFDL_WEIGHT_AVX2 static inline void fma(vec* acc, const vec* x, const vec* w) {
    *acc = _mm256_fmadd_ps(*x, *w, *acc);
  }
  EFFDL_WEIGHT_AVX2 static inline float sum(const vec* v) {
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(*v), _mm256_extractf128_ps(*v, 1));
    const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
  }
};

struct F512 {
  using vec = __m512;
  using x_type = float;
  static constexpr int kLanes = 16;
  static constexpr int kRowsX = 4;  // 32 zmm: 16 accumulators, 4 weights, x
  static constexpr int kRowsW = 4;
  EFFDL_WEIGHT_AVX512 static inline void zero(vec* d) { *d = _mm512_setzero_ps(); }
  EFFDL_WEIGHT_AVX512 static inline void load_w(vec* d, const int8_t* w) {
    // maskz forms: the plain ones trip GCC 12's -Wmaybe-uninitialized on their undefined source vector
    const __mmask16 all = 0xffff;
    *d = _mm512_maskz_cvtepi32_ps(
        all, _mm512_maskz_cvtepi8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w))));
  }
  EFFDL_WEIGHT_AVX512 static inline void load_x(vec* d, const float* x) { *d = _mm512_loadu_ps(x); }
  EFFDL_WEIGHT_AVX512 static inline void fma(vec* acc, const vec* x, const vec* w) {
    *acc = _mm512_fmadd_ps(*x, *w, *acc);
  }
  EFFDL_WEIGHT_AVX512 static inline float sum(const vec* v) {
    // maskz extracts, not _mm512_reduce_add_ps: see load_w
    const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, *v, 0), _mm512_maskz_extractf32x8_ps(0xff, *v, 1));
    return F256::sum(&h);
  }
};

// bf16 x: 32 bf16 per vector (x, and the weights widened to bf16), fp32
// accumulators; all three kinds are held as __m512 and reinterpreted.
struct B512 {
  using vec = __m512;
  using x_type = bf16;
  static constexpr int kLanes = 32;
  static constexpr int kRowsX = 8;  // 32 zmm: 24 accumulators, 3 weights, x, 2 for the conversion
  static constexpr int kRowsW = 3;
  EFFDL_WEIGHT_BF16 static inline void zero(vec* d) { *d = _mm512_setzero_ps(); }
  EFFDL_WEIGHT_BF16 static inline void load_w(vec* d, const int8_t* w) {
    // int8 -> int32 -> fp32 -> bf16, all exact; maskz forms as in F512::load_w
    const __mmask16 all = 0xffff;
    const __m512 lo = _mm512_maskz_cvtepi32_ps(
        all, _mm512_maskz_cvtepi8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w))));
    const __m512 hi = _mm512_maskz_cvtepi32_ps(
        all, _mm512_maskz_cvtepi8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16))));
    *d = reinterpret_cast<vec>(_mm512_cvtne2ps_pbh(hi, lo));  // lo -> elements 0..15, hi -> 16..31
  }
  EFFDL_WEIGHT_BF16 static inline void load_x(vec* d, const bf16* x) { *d = _mm512_loadu_ps(x); }
  EFFDL_WEIGHT_BF16 static inline void fma(vec* acc, const vec* x, const vec* w) {
    *acc = _mm512_dpbf16_ps(*acc, reinterpret_cast<__m512bh>(*x), reinterpret_cast<__m512bh>(*w));
  }
  EFFDL_WEIGHT_BF16 static inline float sum(const vec* v) { return F512::sum(v); }
};

inline float x_float(float v) { return v; }
inline float x_float(bf16 v) { return to_float(v); }

// out rows [i, i + RX) x columns [o, o + RW): the dot products over K, then
// the scale and bias. The K tail (< one vector) is summed in scalar.
template <class V, int RX, int RW, typename Out>
inline void tile(const typename V::x_type* x, int64_t ldx, int64_t K, const int8_t* wq, const float* w_scale,
                 const float* bias, Out* out, int64_t ldo, int64_t i, int64_t o) {
  using vec = typename V::vec;
  vec acc[RX][RW];
  EFFDL_UNROLL
  for (int r = 0; r < RX; ++r)
    EFFDL_UNROLL
    for (int c = 0; c < RW; ++c) V::zero(&acc[r][c]);
  const int64_t kv = K / V::kLanes * V::kLanes;
  // the next RW weight rows, a line each per 64 bytes of this tile's: each row
  // is a short stream (often one page) that the hardware prefetchers learn too
  // late. Addresses as integers: past the last row they point nowhere, and a
  // prefetch never faults.
  const uintptr_t next = reinterpret_cast<uintptr_t>(wq) + uintptr_t((o + RW) * K);
  for (int64_t k = 0; k < kv; k += V::kLanes) {
    if (k % 64 == 0) {
      EFFDL_UNROLL
      for (int c = 0; c < RW; ++c) __builtin_prefetch(reinterpret_cast<const void*>(next + uintptr_t(c * K + k)), 0, 2);
    }
    vec w[RW];
    EFFDL_UNROLL
    for (int c = 0; c < RW; ++c) V::load_w(&w[c], wq + (o + c) * K + k);
    EFFDL_UNROLL
    for (int r = 0; r < RX; ++r) {
      vec xv;
      V::load_x(&xv, x + (i + r) * ldx + k);
      EFFDL_UNROLL
      for (int c = 0; c < RW; ++c) V::fma(&acc[r][c], &xv, &w[c]);
    }
  }
  EFFDL_UNROLL
  for (int r = 0; r < RX; ++r)
    EFFDL_UNROLL
    for (int c = 0; c < RW; ++c) {
      const typename V::x_type* xr = x + (i + r) * ldx;
      const int8_t* wr = wq + (o + c) * K;
      float s = V::sum(&acc[r][c]);
      for (int64_t k = kv; k < K; ++k) s += x_float(xr[k]) * float(wr[k]);
      float v = s * w_scale[o + c];
      if (bias) v += bias[o + c];
      out[(i + r) * ldo + o + c] = store_from_float<Out>(v);
    }
}

// tile<V, RX, RW> for run-time counts rows <= RX, cols <= RW.
template <class V, int RX, int RW, typename Out>
inline void tile_upto(int64_t rows, int64_t cols, const typename V::x_type* x, int64_t ldx, int64_t K,
                      const int8_t* wq, const float* w_scale, const float* bias, Out* out, int64_t ldo, int64_t i,
                      int64_t o) {
  if constexpr (RX > 1) {
    if (rows < RX) return tile_upto<V, RX - 1, RW, Out>(rows, cols, x, ldx, K, wq, w_scale, bias, out, ldo, i, o);
  }
  if constexpr (RW > 1) {
    if (cols < RW) return tile_upto<V, RX, RW - 1, Out>(rows, cols, x, ldx, K, wq, w_scale, bias, out, ldo, i, o);
  }
  tile<V, RX, RW, Out>(x, ldx, K, wq, w_scale, bias, out, ldo, i, o);
}

constexpr int64_t kBlockXBytes = 1 << 18;  // rows of x per block: ~L2

template <class V, typename Out>
inline void run(const typename V::x_type* x, int64_t ldx, int64_t M, int64_t K, const int8_t* wq,
                const float* w_scale, const float* bias, Out* out, int64_t ldo, int64_t o_begin, int64_t o_end) {
  const int64_t x_row_bytes = int64_t(sizeof(typename V::x_type)) * K;
  const int64_t block = std::max<int64_t>(V::kRowsX, kBlockXBytes / std::max<int64_t>(x_row_bytes, 1));
  for (int64_t i0 = 0; i0 < M; i0 += block) {
    const int64_t i1 = std::min(M, i0 + block);
    for (int64_t o = o_begin; o < o_end; o += V::kRowsW) {
      const int64_t cols = std::min<int64_t>(V::kRowsW, o_end - o);
      for (int64_t i = i0; i < i1; i += V::kRowsX)
        tile_upto<V, V::kRowsX, V::kRowsW, Out>(std::min<int64_t>(V::kRowsX, i1 - i), cols, x, ldx, K, wq,
                                                w_scale, bias, out, ldo, i, o);
    }
  }
}

}  // namespace weight

// int8_weight_linear_block (int8.h)'s contract on AVX2 and on AVX-512.
template <typename Out>
EFFDL_WEIGHT_AVX2 void int8_weight_linear_block_avx2(const float* x, int64_t ldx, int64_t M, int64_t K,
                                                     const int8_t* wq, const float* w_scale, const float* bias,
                                                     Out* out, int64_t ldo, int64_t o_begin, int64_t o_end) {
  weight::run<weight::F256, Out>(x, ldx, M, K, wq, w_scale, bias, out, ldo, o_begin, o_end);
}

template <typename Out>
EFFDL_WEIGHT_AVX512 void int8_weight_linear_block_avx512(const float* x, int64_t ldx, int64_t M, int64_t K,
                                                         const int8_t* wq, const float* w_scale, const float* bias,
                                                         Out* out, int64_t ldo, int64_t o_begin, int64_t o_end) {
  weight::run<weight::F512, Out>(x, ldx, M, K, wq, w_scale, bias, out, ldo, o_begin, o_end);
}

// int8_weight_linear_bf16_block (int8.h)'s contract on avx512_bf16. `flatten`
// inlines the templates below it, as a table's Entry does for the others: the
// table holds this pointer itself, or null (which Entry cannot wrap).
EFFDL_WEIGHT_BF16 __attribute__((flatten)) inline void int8_weight_linear_bf16_block_avx512bf16(
    const bf16* x, int64_t ldx, int64_t M, int64_t K, const int8_t* wq, const float* w_scale, const float* bias,
    bf16* out, int64_t ldo, int64_t o_begin, int64_t o_end) {
  weight::run<weight::B512, bf16>(x, ldx, M, K, wq, w_scale, bias, out, ldo, o_begin, o_end);
}

#undef EFFDL_WEIGHT_AVX2
#undef EFFDL_WEIGHT_AVX512
#undef EFFDL_WEIGHT_BF16

// The int8_weight_linear core each level's table holds.
template <Isa L, typename Out>
constexpr auto int8_weight_linear_kernel = &int8_weight_linear_block<Out>;
template <typename Out>
constexpr auto int8_weight_linear_kernel<Isa::kAvx2, Out> = &int8_weight_linear_block_avx2<Out>;
template <typename Out>
constexpr auto int8_weight_linear_kernel<Isa::kAvx512, Out> = &int8_weight_linear_block_avx512<Out>;
template <typename Out>
constexpr auto int8_weight_linear_kernel<Isa::kAvx512Vnni, Out> = &int8_weight_linear_block_avx512<Out>;

// The bf16-x core each level's table holds: null below avx512_bf16 (the glue
// widens x to fp32 for int8_weight_linear_kernel there).
template <Isa L>
constexpr Int8WeightBf16Fn int8_weight_linear_bf16_kernel = nullptr;
template <>
constexpr Int8WeightBf16Fn int8_weight_linear_bf16_kernel<Isa::kAvx512Bf16> =
    &int8_weight_linear_bf16_block_avx512bf16;

#else

template <Isa L>
constexpr Int8WeightBf16Fn int8_weight_linear_bf16_kernel = nullptr;

template <Isa L, typename Out>
constexpr auto int8_weight_linear_kernel = &int8_weight_linear_block<Out>;

#endif

}  // namespace effdl::core
