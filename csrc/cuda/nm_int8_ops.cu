// CUDA glue for nm_int8_linear: the shared checks, the CPU glue's layout, then
// nm_int8_kernels.cuh. Invalid meta is found on the device (the kernels stay
// in bounds for any meta) and raised on the host with the CPU glue's message.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dispatch.h"
#include "glue.h"
#include "int8_splitk.cuh"
#include "nm_int8_kernels.cuh"

namespace effdl {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The sparse int8 tensor-core kernel covers 2:4 with K a positive multiple of
// 64 (its K block), 16-byte aligned q and values and 8-byte aligned meta, on
// sm_80+; everything else keeps the simple kernel.
bool nm24_int8_tensor_core_path(const at::Tensor& q2, const at::Tensor& values, const at::Tensor& meta, int64_t n,
                                int64_t m, int64_t K) {
  return n == 2 && m == 4 && K >= mma::kNmI8BK && K % mma::kNmI8BK == 0 && gpu::aligned_to(q2, 16) &&
         gpu::aligned_to(values, 16) && gpu::aligned_to(meta, 8) && gpu::tensor_cores_usable(values);
}

at::Tensor nm_int8_linear_cuda(const at::Tensor& q, const at::Tensor& q_scale, const at::Tensor& values_in,
                               const at::Tensor& meta_in, int64_t n, int64_t m, const at::Tensor& w_scale_in,
                               const c10::optional<at::Tensor>& bias, c10::optional<at::ScalarType> out_dtype) {
  const at::ScalarType out_t = check_nm_int8_linear(q, q_scale, values_in, meta_in, n, m, w_scale_in, bias, out_dtype);
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t K = q.size(-1), N = values_in.size(0);
  const at::Tensor q2 = as_rows(q).contiguous();
  const at::Tensor qs = q_scale.reshape({-1}).contiguous();
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous(), ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const float* bp = b32.defined() ? b32.data_ptr<float>() : nullptr;
  const int64_t M = q2.size(0), meta_bytes = meta.size(1), groups = K / m;
  at::Tensor y = at::empty(linear_out_shape(q, N), q.options().dtype(out_t));
  if (M == 0 || N == 0) return y;
  const at::Tensor first_bad = gpu::failure_flag(values);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (groups > 0) {
    gpu::nm_validate_meta_kernel<<<gpu::grid_for(N * groups), gpu::kThreads, 0, stream>>>(
        meta.data_ptr<uint8_t>(), N, K, meta_bytes, int(n), int(m), first_bad.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  dispatch_act_float(out_t, "nm_int8_linear", [&](auto tag) {
    using Out = gpu::device_t<typename decltype(tag)::type>;
    if (nm24_int8_tensor_core_path(q2, values, meta, n, m, K)) {
      const int64_t n_tiles = ceil_div(N, mma::kTileM), m_tiles = ceil_div(M, mma::kTileN);
      const mma::SplitK plan = mma::splitk_plan(K / mma::kNmI8BK, n_tiles * std::min<int64_t>(m_tiles, 65535),
                                                gpu::multiprocessors(values));
      const at::Tensor partial = gpu::splitk_partial(plan, M, N, q2);
      gpu::nm24_int8_linear_tc_kernel<Out>
          <<<gpu::tile_grid(n_tiles, m_tiles, plan.splits), mma::kTileThreads, 0, stream>>>(
              q2.data_ptr<int8_t>(), qs.data_ptr<float>(), values.data_ptr<int8_t>(), meta.data_ptr<uint8_t>(),
              ws.data_ptr<float>(), bp, M, N, K, plan.per, gpu::partial_ptr(partial), data_as<Out>(y));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gpu::launch_int8_splitk_reduce(partial, qs.data_ptr<float>(), ws.data_ptr<float>(), bp, M, N, data_as<Out>(y),
                                     stream);
      return;
    }
    gpu::nm_int8_linear_kernel<Out><<<gpu::grid_for(M * N), gpu::kThreads, 0, stream>>>(
        q2.data_ptr<int8_t>(), qs.data_ptr<float>(), values.data_ptr<int8_t>(), meta.data_ptr<uint8_t>(),
        ws.data_ptr<float>(), bp, M, N, K, meta_bytes, int(n), int(m), data_as<Out>(y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  TORCH_CHECK(gpu::first_failure(first_bad) == gpu::kNoFailure, "effdl.nm_int8_linear: meta is not a valid ", n,
              ":", m, " mask (exactly ", n, " bits per group of ", m, "); build it with effdl.nm_compress");
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CUDA, m) { m.impl("nm_int8_linear", &nm_int8_linear_cuda); }

}  // namespace effdl
