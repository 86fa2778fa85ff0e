// CPU glue for int8_linear on prepacked weights: int8_pack_weight builds the
// panels of core/int8_packed.h, int8_linear_packed splits the panels across
// threads and runs the level's micro-kernel on them.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../core/int8_packed.h"
#include "../dispatch.h"
#include "kernels.h"
#include "parallel.h"

namespace effdl {
namespace {

at::Tensor int8_pack_weight_cpu(const at::Tensor& wq_in) {
  check_int8_pack_weight(wq_in);
  const at::Tensor wq = wq_in.contiguous();
  const int64_t N = wq.size(0), K = wq.size(1);
  at::Tensor packed = at::empty(int8_packed_shape(N, K), wq.options());
  const int64_t panels = packed.size(0);
  at::parallel_for(0, panels, grain_for(core::kPanelCols * K), [&](int64_t b, int64_t e) {
    core::int8_pack_weight_panels(wq.data_ptr<int8_t>(), K, N, K, packed.data_ptr<int8_t>(), b, e);
  });
  return packed;
}

at::Tensor int8_linear_packed_cpu(const at::Tensor& q, const at::Tensor& q_scale, const at::Tensor& packed_in,
                                  const at::Tensor& w_scale_in, const c10::optional<at::Tensor>& bias,
                                  c10::optional<at::ScalarType> out_dtype) {
  const at::ScalarType out_t = check_int8_linear_packed(q, q_scale, packed_in, w_scale_in, bias, out_dtype);
  const int64_t K = q.size(-1), N = w_scale_in.size(0);
  const at::Tensor q2 = as_rows(q).contiguous();
  const at::Tensor qs = q_scale.reshape({-1}).contiguous();
  const at::Tensor packed = packed_in.contiguous(), ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const int64_t M = q2.size(0);
  at::Tensor y = at::empty(linear_out_shape(q, N), q.options().dtype(out_t));
  if (M == 0 || N == 0) return y;
  dispatch_act_float(out_t, "int8_linear_packed", [&](auto tag) {
    using Out = typename decltype(tag)::type;
    const auto& kernels = cpu_kernels().int8<Out>();
    at::parallel_for(0, packed.size(0), grain_for(M * K * core::kPanelCols), [&](int64_t b, int64_t e) {
      kernels.int8_linear_packed_block(q2.data_ptr<int8_t>(), K, qs.data_ptr<float>(), M, K,
                                       packed.data_ptr<int8_t>(), N, ws.data_ptr<float>(),
                                       b32.defined() ? b32.data_ptr<float>() : nullptr, data_as<Out>(y), N, b, e);
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) {
  m.impl("int8_pack_weight", &int8_pack_weight_cpu);
  m.impl("int8_linear_packed", &int8_linear_packed_cpu);
}

}  // namespace effdl
