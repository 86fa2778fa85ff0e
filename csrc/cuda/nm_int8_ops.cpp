// nm_int8_linear has no CUDA kernel yet. This registration turns the
// dispatcher's generic "could not run ... with arguments from the CUDA backend"
// into an error that says so, after the shared input checks (so bad input gets
// the same message on every device).
#include <torch/library.h>

#include "../checks.h"

namespace effdl {
namespace {

at::Tensor nm_int8_linear_cuda(const at::Tensor& q, const at::Tensor& q_scale,
                               const at::Tensor& values_q, const at::Tensor& meta, int64_t n,
                               int64_t m, const at::Tensor& w_scale,
                               const c10::optional<at::Tensor>& bias,
                               c10::optional<at::ScalarType> out_dtype) {
  check_nm_int8_linear(q, q_scale, values_q, meta, n, m, w_scale, bias, out_dtype);
  TORCH_CHECK(false,
              "effdl.nm_int8_linear has no CUDA kernel yet (CPU only in this release): run it on CPU "
              "tensors, or use effdl.ops.nm_int8_linear under the 'auto' or 'reference' backend, "
              "which computes it with the pure-PyTorch reference on the GPU");
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CUDA, m) { m.impl("nm_int8_linear", &nm_int8_linear_cuda); }

}  // namespace effdl
