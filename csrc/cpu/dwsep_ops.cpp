// CPU glue for the fused depthwise-separable convolution.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../dispatch.h"
#include "../dwsep_weights.h"
#include "kernels.h"

namespace effdl {
namespace {

at::Tensor dwsep_conv2d_cpu(const at::Tensor& x, const at::Tensor& dw_weight,
                            const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                            const c10::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation,
                            c10::string_view dw_activation, c10::string_view pw_activation) {
  const core::DwsepShape s =
      check_dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation);
  const core::Activation dw_act = parse_activation(std::string(dw_activation), "dw_activation");
  const core::Activation pw_act = parse_activation(std::string(pw_activation), "pw_activation");
  const at::Tensor xn = x.contiguous(at::MemoryFormat::ChannelsLast);  // NHWC in memory
  at::Tensor y = at::empty({s.B, s.Cout, s.Ho, s.Wo},
                           x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() > 0) {
    dispatch_float(x.scalar_type(), "dwsep_conv2d", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = core::acc_t<T>;
      const auto& kernels = cpu_kernels().floats<T>();
      const DwsepWeights w =
          dwsep_weights(s, dw_weight, dw_bias, pw_weight, pw_bias, acc_scalar_type<T>());
      const int64_t rows = s.B * s.Ho;
      const int64_t work_per_row = s.Wo * s.C * (s.kh * s.kw + s.Cout);
      const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, work_per_row));
      at::parallel_for(0, rows, grain, [&](int64_t b, int64_t e) {
        kernels.dwsep_conv2d_rows(s, data_as<T>(xn), data_as<A>(w.dw_w),
                                  w.dw_b.defined() ? data_as<A>(w.dw_b) : nullptr,
                                  data_as<A>(w.pw_wt), w.pw_b.defined() ? data_as<A>(w.pw_b) : nullptr,
                                  dw_act, pw_act, data_as<T>(y), b, e);
      });
    });
  }
  return keeps_channels_last(x) ? y : y.contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) { m.impl("dwsep_conv2d", &dwsep_conv2d_cpu); }

}  // namespace effdl
