// The prepacked-weight ops (int8_pack_weight / int8_linear_packed,
// nm_pack_weight / nm_linear_packed) are CPU-only: their panels are CPU layouts. These registrations turn the dispatcher's generic "could not run ...
// with arguments from the CUDA backend" into an error that says so, after the
// shared input checks (so bad input gets the same message on every device).
#include <torch/library.h>

#include "../checks.h"

namespace effdl {
namespace {

constexpr const char* kCpuOnly =
    " is CPU only (its panels are a CPU layout): on CUDA tensors use effdl.ops.int8_linear "
    "on the canonical wq, or run on CPU tensors";
constexpr const char* kNmCpuOnly =
    " is CPU only (its panels are a CPU layout): on CUDA tensors use effdl.ops.nm_linear "
    "on the canonical values and meta, or run on CPU tensors";

at::Tensor int8_pack_weight_cuda(const at::Tensor& wq) {
  check_int8_pack_weight(wq);
  TORCH_CHECK(false, "effdl.int8_pack_weight", kCpuOnly);
}

at::Tensor int8_linear_packed_cuda(const at::Tensor& q, const at::Tensor& q_scale, const at::Tensor& packed,
                                   const at::Tensor& w_scale, const c10::optional<at::Tensor>& bias,
                                   c10::optional<at::ScalarType> out_dtype) {
  check_int8_linear_packed(q, q_scale, packed, w_scale, bias, out_dtype);
  TORCH_CHECK(false, "effdl.int8_linear_packed", kCpuOnly);
}

at::Tensor nm_pack_weight_cuda(const at::Tensor& values, const at::Tensor& meta, int64_t n, int64_t m) {
  check_nm_pack_weight(values, meta, n, m);
  TORCH_CHECK(false, "effdl.nm_pack_weight", kNmCpuOnly);
}

at::Tensor nm_linear_packed_cuda(const at::Tensor& x, const at::Tensor& packed, int64_t N,
                                 const c10::optional<at::Tensor>& bias) {
  check_nm_linear_packed(x, packed, N, bias);
  TORCH_CHECK(false, "effdl.nm_linear_packed", kNmCpuOnly);
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CUDA, m) {
  m.impl("int8_pack_weight", &int8_pack_weight_cuda);
  m.impl("int8_linear_packed", &int8_linear_packed_cuda);
  m.impl("nm_pack_weight", &nm_pack_weight_cuda);
  m.impl("nm_linear_packed", &nm_linear_packed_cuda);
}

}  // namespace effdl
