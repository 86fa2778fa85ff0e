// int8 kernels, torch-free:
//   quantize_rows       dynamic symmetric per-row int8 quantization
//   int8_linear         int8 x int8 -> exact int32, fused per-row x per-channel
//                       scale, bias and output cast
//   int8_weight_linear  float x int8 weights dequantised on the fly
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "dtype.h"

namespace effdl::core {

// For the entry points of kernels that end in int8_epilogue: no FMA contraction
// (GCC contracts across statements by default in C++; clang does not).
#if defined(__GNUC__) && !defined(__clang__)
#define EFFDL_NO_FP_CONTRACT __attribute__((flatten, optimize("fp-contract=off")))
#else
#define EFFDL_NO_FP_CONTRACT
#endif

// Fully unrolls a micro-kernel's loop over its registers (a template-constant
// trip count): rolled, GCC keeps the accumulators in memory.
#define EFFDL_UNROLL _Pragma("GCC unroll 16")

// Smallest scale: keeps a zero row's scale positive (no 0/0, no NaN) and normal.
constexpr float kQuantScaleEps = FLT_MIN;

// int32 accumulation is exact while K * 128 * 128 <= 2^31 - 1.
constexpr int64_t kInt8MaxK = 131071;

// Rows [r_begin, r_end) of x[R, K] -> q[R, K] (row stride ldq), scale[R].
// Returns -1 on success, else the first row holding NaN or Inf.
template <typename T>
int64_t quantize_rows_block(const T* x, int64_t ldx, int64_t K, int8_t* q, int64_t ldq,
                            float* scale, int64_t r_begin, int64_t r_end) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const T* xr = x + r * ldx;
    float absmax = 0.f;
    float poison = 0.f;  // becomes NaN iff the row holds NaN or Inf
#pragma omp simd reduction(max : absmax) reduction(+ : poison)
    for (int64_t k = 0; k < K; ++k) {
      const float v = load(xr[k]);
      absmax = std::max(absmax, std::fabs(v));
      poison += v - v;
    }
    if (!(poison == 0.f)) return r;
    const float s = std::max(absmax / 127.f, kQuantScaleEps);
    scale[r] = s;
    int8_t* qr = q + r * ldq;
    for (int64_t k = 0; k < K; ++k) {
      const float v = std::nearbyint(load(xr[k]) / s);
      qr[k] = int8_t(std::min(127.f, std::max(-127.f, v)));
    }
  }
  return -1;
}

// The fused epilogue of the int8 matmuls: float(acc) * q_scale * w_scale (+ *bias),
// in this order, cast to Out. One definition so that every int8 kernel (and the
// reference, which multiplies in the same order) rounds alike. A kernel whose
// level has FMA must be compiled with EFFDL_NO_FP_CONTRACT (below): GCC would
// otherwise fuse the last multiply and the bias add into one rounding.
template <typename Out>
inline Out int8_epilogue(int32_t acc, float q_scale, float w_scale, const float* bias) {
  float v = float(acc) * q_scale * w_scale;
  if (bias) v += *bias;
  return store_from_float<Out>(v);
}

// Output columns [o_begin, o_end) of out[M, N] (row stride ldo):
//   out[i, o] = float(sum_k q[i, k] * wq[o, k]) * q_scale[i] * w_scale[o] + bias[o]
// `bias` (may be null) is fp32. Blocking: a block of weight rows stays in cache
// while every row of q streams past it.
template <typename Out>
void int8_linear_block(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M, int64_t K,
                       const int8_t* wq, const float* w_scale, const float* bias, Out* out,
                       int64_t ldo, int64_t o_begin, int64_t o_end) {
  constexpr int64_t kBlockN = 16;
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kBlockN) {
    const int64_t o1 = std::min(o_end, o0 + kBlockN);
    for (int64_t i = 0; i < M; ++i) {
      const int8_t* qr = q + i * ldq;
      for (int64_t o = o0; o < o1; ++o) {
        const int8_t* wr = wq + o * K;
        int32_t acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += int32_t(qr[k]) * int32_t(wr[k]);
        out[i * ldo + o] = int8_epilogue<Out>(acc, q_scale[i], w_scale[o], bias ? bias + o : nullptr);
      }
    }
  }
}

// Output columns [o_begin, o_end) of out[M, N]:
//   out[i, o] = (sum_k x[i, k] * wq[o, k]) * w_scale[o] + bias[o]
// x is fp32 (the glue converts 16-bit activations once); bias fp32 or null.
template <typename Out>
void int8_weight_linear_block(const float* x, int64_t ldx, int64_t M, int64_t K,
                              const int8_t* wq, const float* w_scale, const float* bias,
                              Out* out, int64_t ldo, int64_t o_begin, int64_t o_end) {
  constexpr int64_t kBlockN = 8;
  for (int64_t o0 = o_begin; o0 < o_end; o0 += kBlockN) {
    const int64_t o1 = std::min(o_end, o0 + kBlockN);
    for (int64_t i = 0; i < M; ++i) {
      const float* xr = x + i * ldx;
      for (int64_t o = o0; o < o1; ++o) {
        const int8_t* wr = wq + o * K;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * float(wr[k]);
        float v = acc * w_scale[o];
        if (bias) v += bias[o];
        out[i * ldo + o] = store_from_float<Out>(v);
      }
    }
  }
}

// int8_weight_linear_block's contract for bf16 x read as it is, not widened
// to fp32 by the glue: out[i, o] = (sum_k x[i, k] * wq[o, k]) * w_scale[o] +
// bias[o], summed in fp32 (bias fp32 or null). Levels with a kernel for it hold
// one in their table (int8_weight_x86.h); the others hold null.
using Int8WeightBf16Fn = void (*)(const bf16* x, int64_t ldx, int64_t M, int64_t K, const int8_t* wq,
                                  const float* w_scale, const float* bias, bf16* out, int64_t ldo,
                                  int64_t o_begin, int64_t o_end);

}  // namespace effdl::core
