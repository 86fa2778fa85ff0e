// Register-only loops that measure how many arithmetic operations a core can
// issue per second: the compute ceilings the benchmarks report next to each
// kernel's achieved rate (DESIGN.md §6). Torch-free.
//
// Each loop keeps kChains independent accumulators so the instruction's
// throughput, not its latency, is what is timed, and returns a value that
// depends on every iteration so the compiler keeps them all. The operands
// never touch memory.
#pragma once

#include <cstdint>

#include "isa.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

enum class PeakKind : int {
  kFp32Fma = 0,   // fp32 multiply-adds at the widest vector width of the level
  kInt8Dot = 1,   // int8 multiply-adds: vpdpbusd (VNNI), else vpmaddubsw + vpmaddwd
  kBf16Dot = 2,   // bf16 multiply-adds: vdpbf16ps (AVX512-BF16)
};

// The operations (multiply and add each count one) one call to the loop of
// `kind` does per iteration, for the instruction set it runs.
struct PeakLoop {
  double ops_per_iteration;
  int64_t (*run)(int64_t iterations);  // returns a value depending on every iteration
};

#if EFFDL_X86_LEVELS

constexpr int kPeakChains = 12;

// The sum of every lane of the accumulators (Lane: their element type),
// through memory: GCC 12's _mm512_reduce_add_* trip -Werror=uninitialized on
// their undefined temporaries.
template <typename Lane, typename V>
inline int64_t sum_lanes(const V (&acc)[kPeakChains]) {
  double s = 0.0;
  for (const V& v : acc) {
    Lane lanes[sizeof(V) / sizeof(Lane)];
    __builtin_memcpy(lanes, &v, sizeof(V));
    for (Lane x : lanes) s += double(x);
  }
  return int64_t(s);
}

__attribute__((target("arch=x86-64-v4"))) inline int64_t peak_fp32_fma_avx512(int64_t iterations) {
  __m512 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  return sum_lanes<float>(acc);
}

__attribute__((target("arch=x86-64-v3"))) inline int64_t peak_fp32_fma_avx2(int64_t iterations) {
  __m256 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm256_set1_ps(float(c));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  alignas(32) float lanes[8];
  float s = 0.f;
  for (int c = 0; c < kPeakChains; ++c) {
    _mm256_store_ps(lanes, acc[c]);
    for (float v : lanes) s += v;
  }
  return int64_t(s);
}

__attribute__((target("arch=x86-64-v4,avx512vnni"))) inline int64_t peak_int8_vnni(int64_t iterations) {
  __m512i acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
  return sum_lanes<int32_t>(acc);
}

// Without VNNI an int8 dot step is two instructions (pairs to int16, then to int32).
__attribute__((target("arch=x86-64-v3"))) inline int64_t peak_int8_avx2(int64_t iterations) {
  __m256i acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm256_set1_epi32(c);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kPeakChains; ++c)
      acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
  alignas(32) int32_t lanes[8];
  int64_t s = 0;
  for (int c = 0; c < kPeakChains; ++c) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc[c]);
    for (int32_t v : lanes) s += v;
  }
  return s;
}

__attribute__((target("arch=x86-64-v4,avx512bf16"))) inline int64_t peak_bf16_dot(int64_t iterations) {
  __m512 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(float(c));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.5f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (int64_t i = 0; i < iterations; ++i)
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  return sum_lanes<float>(acc);
}

#endif

// The loop measuring `kind` on a CPU running `isa` (with `has_bf16`: AVX512-BF16
// present); run == nullptr when that CPU has no instruction for it.
inline PeakLoop peak_loop(PeakKind kind, Isa isa, bool has_bf16) {
#if EFFDL_X86_LEVELS
  const bool avx512 = isa >= Isa::kAvx512, avx2 = isa >= Isa::kAvx2;
  switch (kind) {
    case PeakKind::kFp32Fma:
      if (avx512) return {2.0 * 16 * kPeakChains, &peak_fp32_fma_avx512};
      if (avx2) return {2.0 * 8 * kPeakChains, &peak_fp32_fma_avx2};
      break;
    case PeakKind::kInt8Dot:
      if (isa >= Isa::kAvx512Vnni) return {2.0 * 64 * kPeakChains, &peak_int8_vnni};
      if (avx2) return {2.0 * 32 * kPeakChains, &peak_int8_avx2};
      break;
    case PeakKind::kBf16Dot:
      if (avx512 && has_bf16) return {2.0 * 32 * kPeakChains, &peak_bf16_dot};
      break;
  }
#else
  (void)kind;
  (void)isa;
  (void)has_bf16;
#endif
  return {0.0, nullptr};
}

}  // namespace effdl::core
