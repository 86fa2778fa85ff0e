// CPU glue for the fused depthwise-separable convolution.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../dispatch.h"
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
      const at::ScalarType acc = acc_scalar_type<T>();
      auto canonical = [&](const at::Tensor& t) { return t.to(acc).contiguous(); };
      const at::Tensor dw = canonical(dw_weight), pw = canonical(pw_weight);
      const at::Tensor dwb = dw_bias.has_value() ? canonical(*dw_bias) : at::Tensor();
      const at::Tensor pwb = pw_bias.has_value() ? canonical(*pw_bias) : at::Tensor();
      at::Tensor buf = at::empty({core::dwsep_packed_size(s)}, x.options().dtype(acc));
      const core::DwsepPacked<A> w = core::dwsep_pack<A>(
          s, data_as<A>(dw), dwb.defined() ? data_as<A>(dwb) : nullptr, data_as<A>(pw),
          pwb.defined() ? data_as<A>(pwb) : nullptr, data_as<A>(buf), /*pack_pw=*/false);
      // the pointwise weights are most of the packing (C * Cout): in parallel
      const int64_t blocks = core::dwsep_padded(s.Cout) / core::kDwsepLanes;
      at::parallel_for(0, blocks, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, s.C * core::kDwsepLanes)),
                       [&](int64_t b, int64_t e) { core::dwsep_pack_pw<A>(s, data_as<A>(pw), data_as<A>(buf), b, e); });
      // (batch, row band) work items: output pixels in NHWC order, each
      // chunk tiled into cache-sized blocks by the core
      const int64_t pixels = s.B * s.Ho * s.Wo;
      const int64_t work_per_pixel = s.C * (s.kh * s.kw + s.Cout);
      const int64_t grain = std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, work_per_pixel));
      at::parallel_for(0, pixels, grain, [&](int64_t b, int64_t e) {
        kernels.dwsep_conv2d_pixels(s, data_as<T>(xn), w, dw_act, pw_act, data_as<T>(y), b, e);
      });
    });
  }
  return keeps_channels_last(x) ? y : y.contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) { m.impl("dwsep_conv2d", &dwsep_conv2d_cpu); }

}  // namespace effdl
