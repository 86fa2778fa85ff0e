// CUDA glue for the int8 ops: the shared checks, the CPU glue's layout, then
// the kernels. int8_linear takes, in order: the Hopper wgmma kernel (opt-in,
// EFFDL_CUDA_WGMMA=1), the mma.sync tensor-core kernel, the simple kernel.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dispatch.h"
#include "glue.h"
#include "int8_gemv_kernel.cuh"
#include "int8_kernels.cuh"
#include "int8_splitk.cuh"
#include "int8_tc_kernels.cuh"
#include "int8_wgmma_kernels.cuh"

namespace effdl {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The int8 tensor-core kernel needs K % 16 == 0 (whole 16-byte chunks, zero
// filled past K), 16-byte aligned q and wq, and sm_80+.
bool int8_tensor_core_path(const at::Tensor& q2, const at::Tensor& wq, int64_t K) {
  return K > 0 && K % 16 == 0 && gpu::aligned_to(q2, 16) && gpu::aligned_to(wq, 16) &&
         gpu::tensor_cores_usable(wq);
}

// The Hopper wgmma kernel: opt-in (gpu::wgmma_usable), M >= wgmma::kMinM rows,
// and the mma.sync kernel's K and alignment conditions.
bool int8_wgmma_path(const at::Tensor& q2, const at::Tensor& wq, int64_t M, int64_t K) {
  return M >= wgmma::kMinM && K > 0 && K % 16 == 0 && gpu::aligned_to(q2, 16) && gpu::aligned_to(wq, 16) &&
         gpu::wgmma_usable(wq);
}

template <typename Out>
void launch_int8_linear_wgmma(const at::Tensor& q2, const at::Tensor& qs, const at::Tensor& wq, const at::Tensor& ws,
                              const float* bp, int64_t M, int64_t N, int64_t K, Out* y, cudaStream_t stream) {
  const int64_t n_tiles = ceil_div(N, wgmma::kTileN), m_tiles = ceil_div(M, wgmma::kTileM);
  const mma::SplitK plan = mma::splitk_plan(ceil_div(K, wgmma::kBK), n_tiles * std::min<int64_t>(m_tiles, 65535),
                                            gpu::multiprocessors(wq));
  const at::Tensor partial = gpu::splitk_partial(plan, M, N, q2);
  C10_CUDA_CHECK(cudaFuncSetAttribute(gpu::int8_linear_wgmma_kernel<Out>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, wgmma::kSmemBytes));
  gpu::int8_linear_wgmma_kernel<Out>
      <<<gpu::tile_grid(n_tiles, m_tiles, plan.splits), wgmma::kThreads, wgmma::kSmemBytes, stream>>>(
          q2.data_ptr<int8_t>(), qs.data_ptr<float>(), wq.data_ptr<int8_t>(), ws.data_ptr<float>(), bp, M, N, K,
          plan.per, gpu::partial_ptr(partial), y);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  gpu::launch_int8_splitk_reduce(partial, qs.data_ptr<float>(), ws.data_ptr<float>(), bp, M, N, y, stream);
}

// The weight-only GEMV kernel: M <= 16 rows, K % 16 == 0 (16-byte weight
// chunks), 16-byte aligned x (fp32) and wq. Any arch.
bool int8_gemv_path(const at::Tensor& x2, const at::Tensor& wq, int64_t M, int64_t K) {
  return M <= gpu::kGemvMaxM && K > 0 && K % 16 == 0 && gpu::aligned_to(x2, 16) && gpu::aligned_to(wq, 16) &&
         !gpu::simple_kernels_only();
}

std::tuple<at::Tensor, at::Tensor> quantize_rows_cuda(const at::Tensor& x) {
  check_quantize_rows(x);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1);
  const at::Tensor x2 = as_rows(x).contiguous();
  const int64_t R = x2.size(0);
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kChar));
  at::Tensor scale = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kFloat));
  if (R == 0) return {q, scale};
  const at::Tensor first_bad = gpu::failure_flag(x);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch_act_float(x.scalar_type(), "quantize_rows", [&](auto tag) {
    using T = gpu::device_t<typename decltype(tag)::type>;
    constexpr int kBlock = gpu::kThreads;
    constexpr int kCache = 32;  // elements per thread held in registers by the one-pass kernel
    if (K <= int64_t(kBlock) * kCache && !gpu::simple_kernels_only()) {
      gpu::quantize_rows_fused_kernel<T, kBlock, kCache><<<gpu::grid_for(R, 1), kBlock, 0, stream>>>(
          data_as<T>(x2), R, K, q.data_ptr<int8_t>(), scale.data_ptr<float>(), first_bad.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    gpu::quantize_rows_kernel<T, kBlock><<<gpu::grid_for(R, 1), kBlock, 0, stream>>>(
        data_as<T>(x2), R, K, q.data_ptr<int8_t>(), scale.data_ptr<float>(),
        first_bad.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t bad_row = gpu::first_failure(first_bad);
  TORCH_CHECK(bad_row == gpu::kNoFailure, "effdl.quantize_rows: x holds NaN or Inf (row ", bad_row,
              " of x viewed as [-1, K]); int8 cannot represent it");
  return {q, scale};
}

at::Tensor int8_linear_cuda(const at::Tensor& q, const at::Tensor& q_scale, const at::Tensor& wq_in,
                            const at::Tensor& w_scale_in, const c10::optional<at::Tensor>& bias,
                            c10::optional<at::ScalarType> out_dtype) {
  const at::ScalarType out_t = check_int8_linear(q, q_scale, wq_in, w_scale_in, bias, out_dtype);
  const c10::cuda::CUDAGuard guard(q.device());
  const int64_t K = q.size(-1), N = wq_in.size(0);
  const at::Tensor q2 = as_rows(q).contiguous();
  const at::Tensor qs = q_scale.reshape({-1}).contiguous();
  const at::Tensor wq = wq_in.contiguous(), ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const int64_t M = q2.size(0);
  at::Tensor y = at::empty(linear_out_shape(q, N), q.options().dtype(out_t));
  if (M == 0 || N == 0) return y;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch_act_float(out_t, "int8_linear", [&](auto tag) {
    using Out = gpu::device_t<typename decltype(tag)::type>;
    const float* bp = b32.defined() ? b32.data_ptr<float>() : nullptr;
    if (int8_wgmma_path(q2, wq, M, K)) {
      launch_int8_linear_wgmma<Out>(q2, qs, wq, ws, bp, M, N, K, data_as<Out>(y), stream);
      return;
    }
    if (int8_tensor_core_path(q2, wq, K)) {
      const int64_t n_tiles = ceil_div(N, mma::kTileN), m_tiles = ceil_div(M, mma::kTileM);
      const mma::SplitK plan = mma::splitk_plan(ceil_div(K, mma::kI8BK), n_tiles * std::min<int64_t>(m_tiles, 65535),
                                                gpu::multiprocessors(wq));
      const at::Tensor partial = gpu::splitk_partial(plan, M, N, q2);
      gpu::int8_linear_tc_kernel<Out><<<gpu::tile_grid(n_tiles, m_tiles, plan.splits), mma::kTileThreads, 0, stream>>>(
          q2.data_ptr<int8_t>(), qs.data_ptr<float>(), wq.data_ptr<int8_t>(), ws.data_ptr<float>(), bp, M, N, K,
          plan.per, gpu::partial_ptr(partial), data_as<Out>(y));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      gpu::launch_int8_splitk_reduce(partial, qs.data_ptr<float>(), ws.data_ptr<float>(), bp, M, N, data_as<Out>(y),
                                     stream);
      return;
    }
    gpu::int8_linear_kernel<Out><<<gpu::grid_for(M * N), gpu::kThreads, 0, stream>>>(
        q2.data_ptr<int8_t>(), qs.data_ptr<float>(), wq.data_ptr<int8_t>(), ws.data_ptr<float>(), bp, M, N, K,
        data_as<Out>(y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

at::Tensor int8_weight_linear_cuda(const at::Tensor& x, const at::Tensor& wq_in,
                                   const at::Tensor& w_scale_in,
                                   const c10::optional<at::Tensor>& bias) {
  check_int8_weight_linear(x, wq_in, w_scale_in, bias);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1), N = wq_in.size(0);
  const at::Tensor x2 = as_rows(x).to(at::kFloat).contiguous();
  const at::Tensor wq = wq_in.contiguous(), ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const int64_t M = x2.size(0);
  at::Tensor y = at::empty(linear_out_shape(x, N), x.options());
  if (M == 0 || N == 0) return y;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch_act_float(x.scalar_type(), "int8_weight_linear", [&](auto tag) {
    using Out = gpu::device_t<typename decltype(tag)::type>;
    if (int8_gemv_path(x2, wq, M, K)) {
      const int64_t warps = ceil_div(N, gpu::kGemvRows);
      gpu::int8_weight_gemv_kernel<Out>
          <<<gpu::grid_for(warps, gpu::kGemvWarps), gpu::kGemvWarps * 32, 0, stream>>>(
              x2.data_ptr<float>(), wq.data_ptr<int8_t>(), ws.data_ptr<float>(),
              b32.defined() ? b32.data_ptr<float>() : nullptr, int(M), N, K, data_as<Out>(y));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    gpu::int8_weight_linear_kernel<Out><<<gpu::grid_for(M * N), gpu::kThreads, 0, stream>>>(
        x2.data_ptr<float>(), wq.data_ptr<int8_t>(), ws.data_ptr<float>(),
        b32.defined() ? b32.data_ptr<float>() : nullptr, M, N, K, data_as<Out>(y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CUDA, m) {
  m.impl("quantize_rows", &quantize_rows_cuda);
  m.impl("int8_linear", &int8_linear_cuda);
  m.impl("int8_weight_linear", &int8_weight_linear_cuda);
}

}  // namespace effdl
