// The vector types the tiled dwsep core (dwsep_tiled.h) is written against,
// one per instruction-set level, all with the same static interface:
//   W                      lanes per vector; A the lane (accumulator) type
//   zero(), set1(a)        constants
//   load(p)                W lanes of A
//   load_x(p, n)           n <= W lanes of a storage type (float/double/bf16/fp16),
//                          converted to A; lanes past n are 0 and never read
//   fma(a, b, c)           a * b + c
//   act(v, act)            the activation, NaN passing through as in core::activate
//   store_y(p, v, n)       n <= W lanes, converted to the storage type
// Generic<A, W> is plain C++ (the portable level, and double everywhere): the
// level's target attribute vectorises its lane loops. Avx2 / Avx512 hold fp32
// in __m256 / __m512; bf16 and fp16 are converted in registers.
// Torch-free.
#pragma once

#include <cstdint>
#include <cstring>

#include "dtype.h"
#include "dwsep_conv.h"
#include "isa.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core::dwsep {

// Inlined everywhere: a call per lane loop costs more than the loop.
#define EFFDL_DWSEP_INLINE __attribute__((always_inline)) inline

template <typename A_, int W_>
struct Generic {
  using A = A_;
  static constexpr int W = W_;
  struct V {
    A v[W];
  };
  EFFDL_DWSEP_INLINE static V zero() {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = A(0);
    return r;
  }
  EFFDL_DWSEP_INLINE static V set1(A a) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = a;
    return r;
  }
  EFFDL_DWSEP_INLINE static V load(const A* p) {
    V r;
    for (int i = 0; i < W; ++i) r.v[i] = p[i];
    return r;
  }
  template <typename T>
  EFFDL_DWSEP_INLINE static V load_x(const T* p, int n) {
    V r;
    if (n == W) {  // the common case, as a loop without a branch per lane
      for (int i = 0; i < W; ++i) r.v[i] = A(core::load(p[i]));
    } else {
      for (int i = 0; i < W; ++i) r.v[i] = i < n ? A(core::load(p[i])) : A(0);
    }
    return r;
  }
  EFFDL_DWSEP_INLINE static V fma(V a, V b, V c) {
    for (int i = 0; i < W; ++i) c.v[i] += a.v[i] * b.v[i];
    return c;
  }
  EFFDL_DWSEP_INLINE static V act(V a, Activation f) {
    if (f == Activation::kNone) return a;
    for (int i = 0; i < W; ++i) a.v[i] = activate(a.v[i], f);
    return a;
  }
  EFFDL_DWSEP_INLINE static void store(A* p, V a) {
    for (int i = 0; i < W; ++i) p[i] = a.v[i];
  }
  template <typename T>
  EFFDL_DWSEP_INLINE static void store_y(T* p, V a, int n) {
    if (n == W) {
      for (int i = 0; i < W; ++i) p[i] = core::store<T>(a.v[i]);
    } else {
      for (int i = 0; i < n; ++i) p[i] = core::store<T>(a.v[i]);
    }
  }
};

#if EFFDL_X86_LEVELS

#define EFFDL_DWSEP_AVX2 __attribute__((target("arch=x86-64-v3")))
#define EFFDL_DWSEP_AVX512 __attribute__((target("arch=x86-64-v4")))

struct Avx2 {
  using A = float;
  static constexpr int W = 8;
  using V = __m256;
  EFFDL_DWSEP_AVX2 static inline V zero() { return _mm256_setzero_ps(); }
  EFFDL_DWSEP_AVX2 static inline V set1(float a) { return _mm256_set1_ps(a); }
  EFFDL_DWSEP_AVX2 static inline V load(const float* p) { return _mm256_loadu_ps(p); }
  EFFDL_DWSEP_AVX2 static inline __m256i lanes_below(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  EFFDL_DWSEP_AVX2 static inline V load_x(const float* p, int n) {
    return n == W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes_below(n));
  }
  // 16-bit lanes: a partial vector goes through a zeroed buffer (AVX2 has no
  // 16-bit masked load)
  EFFDL_DWSEP_AVX2 static inline __m128i load16(const uint16_t* p, int n) {
    if (n == W) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    uint16_t buf[W] = {};
    std::memcpy(buf, p, sizeof(uint16_t) * size_t(n));
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(buf));
  }
  EFFDL_DWSEP_AVX2 static inline V load_x(const bf16* p, int n) {
    const __m128i h = load16(reinterpret_cast<const uint16_t*>(p), n);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  EFFDL_DWSEP_AVX2 static inline V load_x(const fp16* p, int n) {
    return _mm256_cvtph_ps(load16(reinterpret_cast<const uint16_t*>(p), n));
  }
  EFFDL_DWSEP_AVX2 static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  EFFDL_DWSEP_AVX2 static inline V act(V a, Activation f) {
    // max(0, a) / min(6, .) return their second operand when either is NaN
    if (f == Activation::kNone) return a;
    a = _mm256_max_ps(_mm256_setzero_ps(), a);
    return f == Activation::kRelu6 ? _mm256_min_ps(_mm256_set1_ps(6.f), a) : a;
  }
  EFFDL_DWSEP_AVX2 static inline void store(float* p, V a) { _mm256_storeu_ps(p, a); }
  EFFDL_DWSEP_AVX2 static inline void store_y(float* p, V a, int n) {
    if (n == W)
      _mm256_storeu_ps(p, a);
    else
      _mm256_maskstore_ps(p, lanes_below(n), a);
  }
  EFFDL_DWSEP_AVX2 static inline void store16(uint16_t* p, __m128i h, int n) {
    if (n == W) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
      return;
    }
    uint16_t buf[W];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(buf), h);
    std::memcpy(p, buf, sizeof(uint16_t) * size_t(n));
  }
  EFFDL_DWSEP_AVX2 static inline void store_y(bf16* p, V a, int n) {
    // round to nearest even as core::bf16_from_float, NaN kept quiet
    const __m256i u = _mm256_castps_si256(a);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    // lanes are 0..0xffff: the unsigned pack is exact; it interleaves 128-bit halves
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    store16(reinterpret_cast<uint16_t*>(p), _mm256_castsi256_si128(packed), n);
  }
  EFFDL_DWSEP_AVX2 static inline void store_y(fp16* p, V a, int n) {
    store16(reinterpret_cast<uint16_t*>(p), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), n);
  }
};

struct Avx512 {
  using A = float;
  static constexpr int W = 16;
  using V = __m512;
  // all lanes, for the maskz forms: the plain intrinsics pass an undefined
  // source vector that trips GCC 12's -Wmaybe-uninitialized
  static constexpr __mmask16 kAll = 0xffff;
  EFFDL_DWSEP_AVX512 static inline __mmask16 mask(int n) { return __mmask16((1u << n) - 1u); }
  EFFDL_DWSEP_AVX512 static inline V zero() { return _mm512_setzero_ps(); }
  EFFDL_DWSEP_AVX512 static inline V set1(float a) { return _mm512_set1_ps(a); }
  EFFDL_DWSEP_AVX512 static inline V load(const float* p) { return _mm512_loadu_ps(p); }
  EFFDL_DWSEP_AVX512 static inline V load_x(const float* p, int n) {
    return n == W ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask(n), p);
  }
  EFFDL_DWSEP_AVX512 static inline __m256i load16(const void* p, int n) {
    return n == W ? _mm256_loadu_si256(static_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(mask(n), p);
  }
  EFFDL_DWSEP_AVX512 static inline V load_x(const bf16* p, int n) {
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, _mm512_maskz_cvtepu16_epi32(kAll, load16(p, n)), 16));
  }
  EFFDL_DWSEP_AVX512 static inline V load_x(const fp16* p, int n) { return _mm512_maskz_cvtph_ps(kAll, load16(p, n)); }
  EFFDL_DWSEP_AVX512 static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  EFFDL_DWSEP_AVX512 static inline V act(V a, Activation f) {
    if (f == Activation::kNone) return a;
    a = _mm512_maskz_max_ps(kAll, _mm512_setzero_ps(), a);
    return f == Activation::kRelu6 ? _mm512_maskz_min_ps(kAll, _mm512_set1_ps(6.f), a) : a;
  }
  EFFDL_DWSEP_AVX512 static inline void store(float* p, V a) { _mm512_storeu_ps(p, a); }
  EFFDL_DWSEP_AVX512 static inline void store_y(float* p, V a, int n) {
    if (n == W)
      _mm512_storeu_ps(p, a);
    else
      _mm512_mask_storeu_ps(p, mask(n), a);
  }
  EFFDL_DWSEP_AVX512 static inline void store16(void* p, __m256i h, int n) {
    if (n == W)
      _mm256_storeu_si256(static_cast<__m256i*>(p), h);
    else
      _mm256_mask_storeu_epi16(p, mask(n), h);
  }
  EFFDL_DWSEP_AVX512 static inline void store_y(bf16* p, V a, int n) {
    const __m512i u = _mm512_castps_si512(a);
    const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(kAll, u, 16), _mm512_set1_epi32(1));
    const __m512i rounded = _mm512_maskz_srli_epi32(kAll, _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)), 16);
    const __m512i quiet = _mm512_or_si512(_mm512_maskz_srli_epi32(kAll, u, 16), _mm512_set1_epi32(0x40));
    const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    store16(p, _mm512_maskz_cvtepi32_epi16(kAll, _mm512_mask_blend_epi32(nan, rounded, quiet)), n);
  }
  EFFDL_DWSEP_AVX512 static inline void store_y(fp16* p, V a, int n) {
    store16(p, _mm512_maskz_cvtps_ph(kAll, a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), n);
  }
};

#undef EFFDL_DWSEP_AVX2
#undef EFFDL_DWSEP_AVX512

#endif  // EFFDL_X86_LEVELS

#undef EFFDL_DWSEP_INLINE

}  // namespace effdl::core::dwsep
