// Host side of the int8 split-K path that the int8_linear and nm_int8_linear
// glue share: the int32 partial sums a split plan needs, and the launch of
// int8_splitk_reduce_kernel that adds them and applies the int8 epilogue.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "int8_tc_kernels.cuh"
#include "mma_layout.h"

namespace effdl::gpu {

// [splits, M, N] int32 on like's device when the plan splits K; undefined
// otherwise (the main kernel then writes y itself).
inline at::Tensor splitk_partial(const mma::SplitK& plan, int64_t M, int64_t N, const at::Tensor& like) {
  return plan.splits > 1 ? at::empty({plan.splits, M, N}, like.options().dtype(at::kInt)) : at::Tensor();
}

// The main kernels' `partial` argument: null means "no split, write y".
inline int32_t* partial_ptr(const at::Tensor& partial) {
  return partial.defined() ? partial.data_ptr<int32_t>() : nullptr;
}

// After a split main kernel: y = epilogue(sum over splits of partial); nothing
// to do when partial is undefined.
template <typename Out>
void launch_int8_splitk_reduce(const at::Tensor& partial, const float* q_scale, const float* w_scale,
                               const float* bias, int64_t M, int64_t N, Out* y, cudaStream_t stream) {
  if (!partial.defined()) return;
  int8_splitk_reduce_kernel<Out><<<grid_for(M * N), kThreads, 0, stream>>>(
      partial.data_ptr<int32_t>(), partial.size(0), q_scale, w_scale, bias, M, N, y);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace effdl::gpu
