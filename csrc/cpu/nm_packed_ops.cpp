// CPU glue for nm_linear on prepacked 2:4 weights: nm_pack_weight builds the
// panels of core/nm_packed.h, nm_linear_packed splits the panels across
// threads and runs the level's kernel on them.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../checks.h"
#include "../core/nm_packed.h"
#include "../dispatch.h"
#include "kernels.h"
#include "parallel.h"

namespace effdl {
namespace {

at::Tensor nm_pack_weight_cpu(const at::Tensor& values_in, const at::Tensor& meta_in, int64_t n, int64_t m) {
  const int64_t K = check_nm_pack_weight(values_in, meta_in, n, m);
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous();
  const int64_t N = values.size(0);
  at::Tensor packed = at::empty(nm_packed_shape(N, K, values.element_size()), values.options());
  FirstFailure bad;
  dispatch_float(values.scalar_type(), "nm_pack_weight", [&](auto tag) {
    using T = typename decltype(tag)::type;
    at::parallel_for(0, packed.size(0), grain_for(core::kNmPanelCols * K), [&](int64_t b, int64_t e) {
      const int64_t row = core::nm_pack_panels(data_as<T>(values), meta.data_ptr<uint8_t>(), N, K,
                                               data_as<T>(packed), b, e);
      if (row >= 0) bad.report(row);
    });
  });
  TORCH_CHECK(!bad.failed(), "effdl.nm_pack_weight: meta row ", bad.row(),
              " is not a valid 2:4 mask (exactly 2 bits per group of 4, none past K=", K,
              "); build it with effdl.nm_compress");
  return packed;
}

at::Tensor nm_linear_packed_cpu(const at::Tensor& x, const at::Tensor& packed_in, int64_t N,
                                const c10::optional<at::Tensor>& bias_in) {
  const int64_t K = check_nm_linear_packed(x, packed_in, N, bias_in);
  const at::Tensor packed = packed_in.contiguous();
  const at::Tensor x2 = as_rows(x).contiguous();
  const int64_t M = x2.size(0);
  at::Tensor y = at::empty(linear_out_shape(x, N), x.options());
  if (M == 0 || N == 0) return y;
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  FirstFailure bad;
  dispatch_float(x.scalar_type(), "nm_linear_packed", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto& kernels = cpu_kernels().floats<T>();
    const T* bp = bias.defined() ? data_as<T>(bias) : nullptr;
    at::parallel_for(0, packed.size(0), grain_for(M * K * core::kNmPanelCols / 2), [&](int64_t b, int64_t e) {
      if (!kernels.nm_linear_packed_block(data_as<T>(x2), K, M, K, data_as<T>(packed), N, bp, data_as<T>(y), N,
                                          b, e)) {
        bad.report(b);
      }
    });
  });
  TORCH_CHECK(!bad.failed(), "effdl.nm_linear_packed: packed is not a 2:4 weight packed by nm_pack_weight "
              "(a live column holds a group whose keep-mask does not have exactly 2 bits)");
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) {
  m.impl("nm_pack_weight", &nm_pack_weight_cpu);
  m.impl("nm_linear_packed", &nm_linear_packed_cpu);
}

}  // namespace effdl
