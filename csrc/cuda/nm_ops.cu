// CUDA glue for the N:M ops: the shared checks, the CPU glue's layout, then
// nm_kernels.cuh. Invalid input found on the device is reported through a
// failure flag and raised on the host (one sync) with the CPU glue's message.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "../core/nm_format.h"
#include "../dispatch.h"
#include "glue.h"
#include "nm_kernels.cuh"
#include "nm_tc_kernels.cuh"

namespace effdl {
namespace {

std::tuple<at::Tensor, at::Tensor> nm_compress_cuda(const at::Tensor& w_in, int64_t n, int64_t m) {
  check_nm_compress(w_in, n, m);
  const c10::cuda::CUDAGuard guard(w_in.device());
  const at::Tensor w = w_in.contiguous();
  const int64_t R = w.size(0), K = w.size(1);
  at::Tensor values = at::empty({R, core::nm_kept(K, int(n), int(m))}, w.options());
  at::Tensor meta = at::empty({R, core::nm_meta_bytes(K)}, w.options().dtype(at::kByte));
  const int64_t groups = K / m, meta_bytes = meta.size(1);
  if (R * groups == 0) return {values, meta};  // nothing to pack (K == 0 has no meta bytes)
  const at::Tensor first_bad = gpu::failure_flag(w);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  dispatch_float(w.scalar_type(), "nm_compress", [&](auto tag) {
    using T = gpu::device_t<typename decltype(tag)::type>;
    gpu::nm_compress_values_kernel<T>
        <<<gpu::grid_for(R * groups), gpu::kThreads, 0, stream>>>(
            data_as<T>(w), R, K, int(n), int(m), data_as<T>(values),
            first_bad.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gpu::nm_compress_meta_kernel<T><<<gpu::grid_for(R * meta_bytes), gpu::kThreads, 0, stream>>>(
        data_as<T>(w), R, K, meta_bytes, int(n), int(m), meta.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t bad = gpu::first_failure(first_bad);
  if (bad != gpu::kNoFailure) {
    const int64_t r = bad / groups, g = bad % groups;
    const int64_t nnz = w[r].slice(0, g * m, (g + 1) * m).ne(0).sum().item<int64_t>();
    TORCH_CHECK(false, "effdl.nm_compress: w is not ", n, ":", m, " sparse: row ", r, ", group ", g,
                " (columns ", g * m, "..", (g + 1) * m - 1, ") has ", nnz,
                " nonzeros, at most ", n, " allowed; prune it first (effdl.formats.nm_mask)");
  }
  return {values, meta};
}

at::Tensor nm_decompress_cuda(const at::Tensor& values_in, const at::Tensor& meta_in, int64_t n,
                              int64_t m) {
  const int64_t K = check_nm_storage(values_in, meta_in, n, m, "nm_decompress");
  const c10::cuda::CUDAGuard guard(values_in.device());
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous();
  const int64_t R = values.size(0), meta_bytes = meta.size(1);
  at::Tensor w = at::empty({R, K}, values.options());
  const int64_t groups = K / m;
  if (R * groups == 0) return w;  // K == 0: no meta bits, every row is valid
  const at::Tensor first_bad = gpu::failure_flag(values);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  gpu::nm_validate_meta_kernel<<<gpu::grid_for(R * groups), gpu::kThreads, 0, stream>>>(
      meta.data_ptr<uint8_t>(), R, K, meta_bytes, int(n), int(m), first_bad.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  dispatch_float(values.scalar_type(), "nm_decompress", [&](auto tag) {
    using T = gpu::device_t<typename decltype(tag)::type>;
    gpu::nm_decompress_kernel<T><<<gpu::grid_for(R * groups), gpu::kThreads, 0, stream>>>(
        data_as<T>(values), meta.data_ptr<uint8_t>(), R, K, meta_bytes, int(n), int(m),
        data_as<T>(w));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const int64_t bad_row = gpu::first_failure(first_bad);
  TORCH_CHECK(bad_row == gpu::kNoFailure, "effdl.nm_decompress: meta row ", bad_row,
              " is not a valid ", n, ":", m, " mask (exactly ", n, " bits per group of ", m,
              ", none past K=", K, ")");
  return w;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The sparse tensor-core kernel covers 2:4 fp16/bf16 with K a positive multiple
// of 64 (its K block) and 16-byte aligned x and values (8-byte aligned meta),
// on sm_80+; everything else keeps the simple kernel.
bool nm24_tensor_core_path(const at::Tensor& x2, const at::Tensor& values, const at::Tensor& meta, int64_t n,
                           int64_t m, int64_t K, int64_t N) {
  return n == 2 && m == 4 && K >= mma::kNmBK && K % mma::kNmBK == 0 && gpu::aligned_to(x2, 16) &&
         gpu::aligned_to(values, 16) && gpu::aligned_to(meta, 8) && gpu::tensor_cores_usable(values);
}

at::Tensor nm_linear_cuda(const at::Tensor& x, const at::Tensor& values_in,
                          const at::Tensor& meta_in, int64_t n, int64_t m,
                          const c10::optional<at::Tensor>& bias_in) {
  const int64_t K = check_nm_linear(x, values_in, meta_in, n, m, bias_in);
  const c10::cuda::CUDAGuard guard(values_in.device());
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous();
  const int64_t N = values.size(0), meta_bytes = meta.size(1);
  const at::Tensor x2 = as_rows(x).contiguous();
  const int64_t M = x2.size(0);
  at::Tensor y = at::empty(linear_out_shape(x, N), x.options());
  if (M == 0 || N == 0) return y;
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const int64_t groups = K / m;
  const at::Tensor first_bad = gpu::failure_flag(values);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (groups > 0) {
    gpu::nm_validate_meta_kernel<<<gpu::grid_for(N * groups), gpu::kThreads, 0, stream>>>(
        meta.data_ptr<uint8_t>(), N, K, meta_bytes, int(n), int(m),
        first_bad.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  dispatch_float(values.scalar_type(), "nm_linear", [&](auto tag) {
    using T = gpu::device_t<typename decltype(tag)::type>;
    if constexpr (sizeof(T) == 2) {  // fp16, bf16: 2:4 on sparse tensor cores where the shape allows
      if (nm24_tensor_core_path(x2, values, meta, n, m, K, N)) {
        const int64_t n_tiles = ceil_div(N, mma::kTileM), m_tiles = ceil_div(M, mma::kTileN);
        const mma::SplitK plan = mma::splitk_plan(K / mma::kNmBK, n_tiles * std::min<int64_t>(m_tiles, 65535),
                                                  gpu::multiprocessors(values));
        const at::Tensor partial =
            plan.splits > 1 ? at::empty({plan.splits, M, N}, x2.options().dtype(at::kFloat)) : at::Tensor();
        gpu::nm24_linear_tc_kernel<T><<<gpu::tile_grid(n_tiles, m_tiles, plan.splits), mma::kTileThreads, 0, stream>>>(
            data_as<T>(x2), data_as<T>(values), meta.data_ptr<uint8_t>(), bias.defined() ? data_as<T>(bias) : nullptr,
            M, N, K, plan.per, partial.defined() ? partial.data_ptr<float>() : nullptr, data_as<T>(y));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (plan.splits > 1) {
          gpu::nm_splitk_reduce_kernel<T><<<gpu::grid_for(M * N), gpu::kThreads, 0, stream>>>(
              partial.data_ptr<float>(), plan.splits, bias.defined() ? data_as<T>(bias) : nullptr, M, N,
              data_as<T>(y));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        return;
      }
    }
    gpu::nm_linear_kernel<T><<<gpu::grid_for(M * N), gpu::kThreads, 0, stream>>>(
        data_as<T>(x2), data_as<T>(values), meta.data_ptr<uint8_t>(),
        bias.defined() ? data_as<T>(bias) : nullptr, M, N, K, meta_bytes, int(n), int(m),
        data_as<T>(y));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  TORCH_CHECK(gpu::first_failure(first_bad) == gpu::kNoFailure,
              "effdl.nm_linear: meta is not a valid ", n, ":", m, " mask (exactly ", n,
              " bits per group of ", m, "); build it with effdl.nm_compress");
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CUDA, m) {
  m.impl("nm_compress", &nm_compress_cuda);
  m.impl("nm_decompress", &nm_decompress_cuda);
  m.impl("nm_linear", &nm_linear_cuda);
}

}  // namespace effdl
