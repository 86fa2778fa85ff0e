// CPU glue for the N:M-sparse int8 linear: checks, layout, parallel split, then
// core/nm_int8_linear.h through the kernel table.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../core/nm_int8_linear.h"
#include "../dispatch.h"
#include "kernels.h"
#include "parallel.h"

namespace effdl {
namespace {

at::Tensor nm_int8_linear_cpu(const at::Tensor& q, const at::Tensor& q_scale,
                              const at::Tensor& values_in, const at::Tensor& meta_in, int64_t n,
                              int64_t m, const at::Tensor& w_scale_in,
                              const c10::optional<at::Tensor>& bias,
                              c10::optional<at::ScalarType> out_dtype) {
  const at::ScalarType out_t =
      check_nm_int8_linear(q, q_scale, values_in, meta_in, n, m, w_scale_in, bias, out_dtype);
  const int64_t K = q.size(-1), N = values_in.size(0), kept = values_in.size(1);
  const at::Tensor q2 = as_rows(q).contiguous();
  const at::Tensor qs = q_scale.reshape({-1}).contiguous();
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous();
  const at::Tensor ws = w_scale_in.contiguous();
  const at::Tensor b32 = bias.has_value() ? bias->to(at::kFloat).contiguous() : at::Tensor();
  const int64_t M = q2.size(0);
  at::Tensor y = at::empty(linear_out_shape(q, N), q.options().dtype(out_t));
  if (M == 0 || N == 0) return y;
  const core::KernelTable& table = cpu_kernels();
  const int8_t* qp = q2.data_ptr<int8_t>();
  at::Tensor qt;
  const float* qtp = nullptr;
  if (table.nm_int8_reads_qt(M)) {
    qt = at::empty({K, core::nm_xt_stride(M)}, q.options().dtype(at::kFloat));
    float* dst = qt.data_ptr<float>();
    at::parallel_for(0, K, grain_for(M), [&](int64_t b, int64_t e) {
      table.nm_int8_pack_q_transposed(qp, K, M, b, e, dst);
    });
    qtp = dst;
  }
  FirstFailure bad;
  dispatch_act_float(out_t, "nm_int8_linear", [&](auto tag) {
    using Out = typename decltype(tag)::type;
    const auto& kernels = table.int8<Out>();
    at::parallel_for(0, N, grain_for(M * kept), [&](int64_t b, int64_t e) {
      if (!kernels.nm_int8_linear_block(qp, K, qtp, qs.data_ptr<float>(), M, K,
                                        values.data_ptr<int8_t>(), meta.data_ptr<uint8_t>(), int(n),
                                        int(m), ws.data_ptr<float>(),
                                        b32.defined() ? b32.data_ptr<float>() : nullptr,
                                        data_as<Out>(y), N, b, e)) {
        bad.report(b);
      }
    });
  });
  TORCH_CHECK(!bad.failed(), "effdl.nm_int8_linear: meta is not a valid ", n, ":", m,
              " mask (exactly ", n, " bits per group of ", m, "); build it with effdl.nm_compress");
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) { m.impl("nm_int8_linear", &nm_int8_linear_cpu); }

}  // namespace effdl
