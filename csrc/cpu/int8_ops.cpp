// CPU glue for the int8 ops: checks, layout, parallel split, then core/int8.h.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../dispatch.h"
#include "kernels.h"
#include "parallel.h"

namespace effdl {
namespace {

std::tuple<at::Tensor, at::Tensor> quantize_rows_cpu(const at::Tensor& x) {
  check_quantize_rows(x);
  const int64_t K = x.size(-1);
  const at::Tensor x2 = as_rows(x).contiguous();
  const int64_t R = x2.size(0);
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kChar));
  at::Tensor scale = at::empty(x.sizes().slice(0, x.dim() - 1), x.options().dtype(at::kFloat));
  FirstFailure bad;
  dispatch_act_float(x.scalar_type(), "quantize_rows", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto& kernels = cpu_kernels().int8<T>();
    at::parallel_for(0, R, grain_for(K), [&](int64_t b, int64_t e) {
      const int64_t r = kernels.quantize_rows_block(data_as<T>(x2), K, K, q.data_ptr<int8_t>(), K,
                                                    scale.data_ptr<float>(), b, e);
      if (r >= 0) bad.report(r);
    });
  });
  TORCH_CHECK(!bad.failed(), "effdl.quantize_rows: x holds NaN or Inf (row ", bad.row(),
              " of x viewed as [-1, K]); int8 cannot represent it");
  return {q, scale};
}

at::Tensor int8_linear_cpu(const at::Tensor& q, const at::Tensor& q_scale, const at::Tensor& wq_in,
                           const at::Tensor& w_scale_in, const c10::optional<at::Tensor>& bias,
                           c10::optional<at::ScalarType> out_dtype) {
  const at::ScalarType out_t = check_int8_linear(q, q_scale, wq_in, w_scale_in, bias, out_dtype);
  const int64_t K = q.size(-1), N = wq_in.size(0);
  const at::Tensor q2 = as_rows(q).contiguous();
  const at::Tensor qs = q_scale.reshape({-1}).contiguous();
  const at::Tensor wq = wq_in.contiguous(), ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const int64_t M = q2.size(0);
  at::Tensor y = at::empty(linear_out_shape(q, N), q.options().dtype(out_t));
  if (M == 0 || N == 0) return y;
  dispatch_act_float(out_t, "int8_linear", [&](auto tag) {
    using Out = typename decltype(tag)::type;
    const auto& kernels = cpu_kernels().int8<Out>();
    at::parallel_for(0, N, grain_for(M * K), [&](int64_t b, int64_t e) {
      kernels.int8_linear_block(q2.data_ptr<int8_t>(), K, qs.data_ptr<float>(), M, K,
                                wq.data_ptr<int8_t>(), ws.data_ptr<float>(),
                                b32.defined() ? b32.data_ptr<float>() : nullptr, data_as<Out>(y), N,
                                b, e);
    });
  });
  return y;
}

at::Tensor int8_weight_linear_cpu(const at::Tensor& x, const at::Tensor& wq_in,
                                  const at::Tensor& w_scale_in,
                                  const c10::optional<at::Tensor>& bias) {
  check_int8_weight_linear(x, wq_in, w_scale_in, bias);
  const int64_t K = x.size(-1), N = wq_in.size(0);
  const at::Tensor rows = as_rows(x);
  const int64_t M = rows.size(0);
  at::Tensor y = at::empty(linear_out_shape(x, N), x.options());
  if (M == 0 || N == 0) return y;
  const at::Tensor wq = wq_in.contiguous(), ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const float* bias_ptr = b32.defined() ? b32.data_ptr<float>() : nullptr;
  const core::Int8WeightBf16Fn bf16_block = cpu_kernels().int8_weight_linear_bf16_block;
  if (x.scalar_type() == at::kBFloat16 && bf16_block != nullptr) {
    const at::Tensor x2 = rows.contiguous();
    at::parallel_for(0, N, grain_for(M * K), [&](int64_t b, int64_t e) {
      bf16_block(data_as<core::bf16>(x2), K, M, K, wq.data_ptr<int8_t>(), ws.data_ptr<float>(), bias_ptr,
                 data_as<core::bf16>(y), N, b, e);
    });
    return y;
  }
  const at::Tensor x2 = rows.to(at::kFloat).contiguous();
  dispatch_act_float(x.scalar_type(), "int8_weight_linear", [&](auto tag) {
    using Out = typename decltype(tag)::type;
    const auto& kernels = cpu_kernels().int8<Out>();
    at::parallel_for(0, N, grain_for(M * K), [&](int64_t b, int64_t e) {
      kernels.int8_weight_linear_block(x2.data_ptr<float>(), K, M, K, wq.data_ptr<int8_t>(),
                                       ws.data_ptr<float>(), bias_ptr, data_as<Out>(y), N, b, e);
    });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) {
  m.impl("quantize_rows", &quantize_rows_cpu);
  m.impl("int8_linear", &int8_linear_cpu);
  m.impl("int8_weight_linear", &int8_weight_linear_cpu);
}

}  // namespace effdl
