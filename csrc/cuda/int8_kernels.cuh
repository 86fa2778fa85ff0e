// int8 kernels, torch-free (semantics of core/int8.h):
//   quantize_rows_kernel       one block per row: absmax reduction, then quantize
//   quantize_rows_fused_kernel the same in one pass over x (rows up to 8192)
//   int8_linear_kernel         one thread per output, exact int32 accumulation
//   int8_weight_linear_kernel  one thread per output, fp32 accumulation
// All arrays are contiguous row-major.
#pragma once

#include <cfloat>
#include <cstdint>

#include "common.cuh"

namespace effdl::gpu {

// Smallest scale, = core::kQuantScaleEps (core/int8.h is not included here: its
// `#pragma omp simd` is unknown to the nvcc host pass).
constexpr float kQuantScaleEps = FLT_MIN;

// x[R, K] -> q[R, K], scale[R], launched with kBlock threads per block; blocks
// loop over rows. Bit for bit as core::quantize_rows_block: scale =
// max(absmax / 127, FLT_MIN), q = clamp(rint(x / scale), -127, 127), IEEE
// division and round-half-to-even. A row holding NaN or Inf records its index
// in *first_bad_row and writes nothing.
template <typename T, int kBlock>
__global__ void __launch_bounds__(kBlock)
    quantize_rows_kernel(const T* __restrict__ x, int64_t R, int64_t K, int8_t* __restrict__ q,
                         float* __restrict__ scale, int64_t* first_bad_row) {
  static_assert(kBlock > 0 && (kBlock & (kBlock - 1)) == 0, "kBlock must be a power of two");
  __shared__ float s_max[kBlock];
  __shared__ int s_bad[kBlock];
  const int tid = int(threadIdx.x);
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {  // uniform across the block
    const T* xr = x + r * K;
    float amax = 0.f;
    int bad = 0;
    for (int64_t k = tid; k < K; k += kBlock) {
      const float v = load(xr[k]);
      if (isfinite(v)) {
        amax = fmaxf(amax, fabsf(v));
      } else {
        bad = 1;
      }
    }
    s_max[tid] = amax;
    s_bad[tid] = bad;
    __syncthreads();
    for (int half = kBlock / 2; half > 0; half /= 2) {
      if (tid < half) {
        s_max[tid] = fmaxf(s_max[tid], s_max[tid + half]);
        s_bad[tid] |= s_bad[tid + half];
      }
      __syncthreads();
    }
    const float absmax = s_max[0];
    const int row_bad = s_bad[0];
    __syncthreads();  // all have read s_*[0] before the next row overwrites them
    if (row_bad != 0) {
      if (tid == 0) record_first(first_bad_row, r);
      continue;
    }
    const float s = fmaxf(__fdiv_rn(absmax, 127.f), kQuantScaleEps);
    if (tid == 0) scale[r] = s;
    int8_t* qr = q + r * K;
    for (int64_t k = tid; k < K; k += kBlock) {
      const float v = rintf(__fdiv_rn(load(xr[k]), s));
      qr[k] = int8_t(fminf(127.f, fmaxf(-127.f, v)));
    }
  }
}

// quantize_rows in one pass over x: a block per row keeps the kCache elements
// each thread reads in registers while the block reduces absmax (warp
// shuffles, then one value per warp through shared memory), and quantizes
// them from there; rows longer than kBlock * kCache keep quantize_rows_kernel.
// Bit for bit as quantize_rows_kernel (same ops on the same values).
template <typename T, int kBlock, int kCache>
__global__ void __launch_bounds__(kBlock)
    quantize_rows_fused_kernel(const T* __restrict__ x, int64_t R, int64_t K, int8_t* __restrict__ q,
                               float* __restrict__ scale, int64_t* first_bad_row) {
  static_assert(kBlock % 32 == 0 && kBlock <= 1024, "whole warps");
  constexpr int kWarps = kBlock / 32;
  __shared__ float s_max[kWarps];
  __shared__ int s_bad[kWarps];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {  // uniform across the block
    const T* xr = x + r * K;
    float v[kCache];
    float amax = 0.f;
    bool bad = false;
#pragma unroll
    for (int i = 0; i < kCache; ++i) {
      const int64_t k = tid + int64_t(i) * kBlock;
      v[i] = k < K ? load(xr[k]) : 0.f;
      if (isfinite(v[i])) {
        amax = fmaxf(amax, fabsf(v[i]));
      } else {
        bad = true;
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const bool warp_bad = __any_sync(0xffffffffu, bad) != 0;
    if (lane == 0) {
      s_max[warp] = amax;
      s_bad[warp] = warp_bad ? 1 : 0;
    }
    __syncthreads();
    float absmax = s_max[0];
    int row_bad = s_bad[0];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) {
      absmax = fmaxf(absmax, s_max[w]);
      row_bad |= s_bad[w];
    }
    __syncthreads();  // all have read s_* before the next row overwrites them
    if (row_bad != 0) {
      if (tid == 0) record_first(first_bad_row, r);
      continue;
    }
    const float s = fmaxf(__fdiv_rn(absmax, 127.f), kQuantScaleEps);
    if (tid == 0) scale[r] = s;
    int8_t* qr = q + r * K;
#pragma unroll
    for (int i = 0; i < kCache; ++i) {
      const int64_t k = tid + int64_t(i) * kBlock;
      if (k < K) qr[k] = int8_t(fminf(127.f, fmaxf(-127.f, rintf(__fdiv_rn(v[i], s)))));
    }
  }
}

// y[i, o] = float(sum_k q[i, k] * wq[o, k]) * q_scale[i] * w_scale[o] + bias[o]
// for q[M, K], wq[N, K], y[M, N]; bias fp32 [N] or null. The sum is exact in
// int32 (K <= core::kInt8MaxK, checked by the glue); the epilogue uses
// non-contractible fp32 ops so it rounds exactly like the CPU, in that order.
template <typename Out>
__global__ void int8_linear_kernel(const int8_t* __restrict__ q, const float* __restrict__ q_scale,
                                   const int8_t* __restrict__ wq,
                                   const float* __restrict__ w_scale,
                                   const float* __restrict__ bias, int64_t M, int64_t N, int64_t K,
                                   Out* __restrict__ y) {
  const int64_t total = M * N;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t i = t / N, o = t % N;
    const int8_t* qr = q + i * K;
    const int8_t* wr = wq + o * K;
    int32_t acc = 0;
    for (int64_t k = 0; k < K; ++k) acc += int32_t(qr[k]) * int32_t(wr[k]);
    float v = __fmul_rn(__fmul_rn(__int2float_rn(acc), q_scale[i]), w_scale[o]);
    if (bias != nullptr) v = __fadd_rn(v, bias[o]);
    y[t] = store<Out>(v);  // y is [M, N] contiguous: t = i * N + o
  }
}

// y[i, o] = (sum_k x[i, k] * float(wq[o, k])) * w_scale[o] + bias[o] for fp32
// x[M, K] (the glue converts 16-bit activations once), wq[N, K], y[M, N];
// bias fp32 [N] or null.
template <typename Out>
__global__ void int8_weight_linear_kernel(const float* __restrict__ x,
                                          const int8_t* __restrict__ wq,
                                          const float* __restrict__ w_scale,
                                          const float* __restrict__ bias, int64_t M, int64_t N,
                                          int64_t K, Out* __restrict__ y) {
  const int64_t total = M * N;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t i = t / N, o = t % N;
    const float* xr = x + i * K;
    const int8_t* wr = wq + o * K;
    float acc = 0.f;
    for (int64_t k = 0; k < K; ++k) acc += xr[k] * float(wr[k]);
    float v = __fmul_rn(acc, w_scale[o]);
    if (bias != nullptr) v = __fadd_rn(v, bias[o]);
    y[t] = store<Out>(v);
  }
}

}  // namespace effdl::gpu
