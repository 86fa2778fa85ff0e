// ATen helpers shared by the CUDA glue files: the device-side failure flag
// that kernels report bad input through (checked on the host after launch).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
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

}  // namespace effdl::gpu
