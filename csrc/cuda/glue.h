// ATen helpers shared by the CUDA glue files: the device-side failure flag
// that kernels report bad input through (checked on the host after launch).
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace effdl::gpu {

constexpr int64_t kNoFailure = std::numeric_limits<int64_t>::max();

// One int64 on like's device holding kNoFailure; kernels lower it with
// record_first() to the first failing index.
inline at::Tensor failure_flag(const at::Tensor& like) {
  return at::full({1}, kNoFailure, like.options().dtype(at::kLong));
}

// Waits for the kernels on the current stream (a host sync) and returns the
// first failing index, or kNoFailure.
inline int64_t first_failure(const at::Tensor& flag) { return flag.item<int64_t>(); }

// EFFDL_CUDA_SIMPLE_KERNELS=1 keeps the simple CUDA kernels for every shape
// (no tensor-core, GEMV or one-pass kernels), e.g. to compare both on one GPU.
inline bool simple_kernels_only() {
  const char* env = std::getenv("EFFDL_CUDA_SIMPLE_KERNELS");
  return env != nullptr && std::strcmp(env, "1") == 0;
}

// EFFDL_CUDA_WGMMA=1 lets int8_linear use its Hopper wgmma kernel
// (int8_wgmma_kernels.cuh) for prefill sizes on sm_90. Off by default: the
// kernel has not been validated on a GPU yet (bench/device_check.sh runs the
// int8_linear cuda tests a second time with it set); EFFDL_CUDA_SIMPLE_KERNELS=1
// wins over it.
inline bool wgmma_requested() {
  const char* env = std::getenv("EFFDL_CUDA_WGMMA");
  return env != nullptr && std::strcmp(env, "1") == 0 && !simple_kernels_only();
}

// Whether this build holds an sm_90a image (the only one with the wgmma kernels'
// bodies): TORCH_CUDA_ARCH_LIST named 9.0a.
inline bool built_for_sm90a() {
#ifdef EFFDL_CUDA_ARCHS
  return std::strstr(EFFDL_CUDA_ARCHS, "9.0a") != nullptr;
#else
  return false;
#endif
}

// Whether int8_linear may launch its wgmma kernel on t's device: requested, an
// sm_90a image built, and a compute capability 9.0 device (the sm_90a image
// runs on nothing else).
inline bool wgmma_usable(const at::Tensor& t) {
  if (!wgmma_requested() || !built_for_sm90a()) return false;
  const cudaDeviceProp* p = at::cuda::getDeviceProperties(t.device().index());
  return p->major == 9 && p->minor == 0;
}

// Whether t's device may run the tensor-core kernels: sm_80 or newer.
inline bool tensor_cores_usable(const at::Tensor& t) {
  return !simple_kernels_only() && at::cuda::getDeviceProperties(t.device().index())->major >= 8;
}

inline int64_t multiprocessors(const at::Tensor& t) {
  return at::cuda::getDeviceProperties(t.device().index())->multiProcessorCount;
}

inline bool aligned_to(const at::Tensor& t, uintptr_t bytes) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % bytes == 0;
}

// Grid of a tile kernel: x over n_tiles column tiles, y over row tiles (the
// kernels loop over row tiles past the 65535 limit of gridDim.y), z over
// `splits` K ranges.
inline dim3 tile_grid(int64_t n_tiles, int64_t m_tiles, int64_t splits = 1) {
  return dim3(unsigned(n_tiles), unsigned(std::min<int64_t>(std::max<int64_t>(m_tiles, 1), 65535)),
              unsigned(splits));
}

}  // namespace effdl::gpu
