// Shared by the CUDA kernel cores (torch-free): device storage types, the
// compute type of each, exact conversions, grid-stride indexing and the
// "first failing index" device flag.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "../core/dtype.h"

namespace effdl::gpu {

// core storage type -> CUDA storage type (the same 16 bits for bf16 / fp16).
template <typename T>
struct device_type {
  using type = T;
};
template <>
struct device_type<core::bf16> {
  using type = __nv_bfloat16;
};
template <>
struct device_type<core::fp16> {
  using type = __half;
};
template <typename T>
using device_t = typename device_type<T>::type;

// Compute type: fp32 for fp32/bf16/fp16 (core::acc_t's default also covers the
// device 16-bit types), fp64 for fp64.
template <typename T>
using acc_t = core::acc_t<T>;

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ double load(double v) { return v; }
__device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float load(__half v) { return __half2float(v); }

// Round-to-nearest-even stores, as core::store.
template <typename T>
__device__ __forceinline__ T store(acc_t<T> v);
template <>
__device__ __forceinline__ float store<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ double store<double>(double v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 store<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half store<__half>(float v) {
  return __float2half_rn(v);
}

// Launch shape: 1-D grids, every kernel loops grid-stride over its items, so
// the grid is capped far below the 2^31 - 1 limit of gridDim.x.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

// Blocks for `items` work items of `per_block` items each (>= 1, <= kMaxBlocks).
inline unsigned grid_for(int64_t items, int64_t per_block = kThreads) {
  const int64_t blocks = items / per_block + (items % per_block != 0 ? 1 : 0);
  return unsigned(std::min<int64_t>(std::max<int64_t>(blocks, 1), kMaxBlocks));
}

__device__ __forceinline__ int64_t global_thread() {
  return int64_t(blockIdx.x) * int64_t(blockDim.x) + int64_t(threadIdx.x);
}
__device__ __forceinline__ int64_t grid_threads() {
  return int64_t(gridDim.x) * int64_t(blockDim.x);
}

// *first = min(*first, idx); idx >= 0 and *first starts at INT64_MAX, so the
// unsigned order is the signed one.
__device__ __forceinline__ void record_first(int64_t* first, int64_t idx) {
  static_assert(sizeof(int64_t) == sizeof(unsigned long long), "int64_t is 64 bits");
  atomicMin(reinterpret_cast<unsigned long long*>(first), static_cast<unsigned long long>(idx));
}

}  // namespace effdl::gpu
