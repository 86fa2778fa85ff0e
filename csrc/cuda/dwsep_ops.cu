// CUDA glue for the fused depthwise-separable convolution: the shared checks,
// the CPU glue's layout (NHWC compute, output in the input's memory format),
// then dwsep_kernels.cuh.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "../checks.h"
#include "../dispatch.h"
#include "../dwsep_weights.h"
#include "dwsep_kernels.cuh"
#include "glue.h"

namespace effdl {
namespace {

at::Tensor dwsep_conv2d_cuda(const at::Tensor& x, const at::Tensor& dw_weight,
                             const c10::optional<at::Tensor>& dw_bias, const at::Tensor& pw_weight,
                             const c10::optional<at::Tensor>& pw_bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation,
                             c10::string_view dw_activation, c10::string_view pw_activation) {
  const core::DwsepShape s =
      check_dwsep_conv2d(x, dw_weight, dw_bias, pw_weight, pw_bias, stride, padding, dilation);
  const core::Activation dw_act = parse_activation(std::string(dw_activation), "dw_activation");
  const core::Activation pw_act = parse_activation(std::string(pw_activation), "pw_activation");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xn = x.contiguous(at::MemoryFormat::ChannelsLast);  // NHWC in memory
  at::Tensor y = at::empty({s.B, s.Cout, s.Ho, s.Wo},
                           x.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() > 0) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    dispatch_float(x.scalar_type(), "dwsep_conv2d", [&](auto tag) {
      using CoreT = typename decltype(tag)::type;
      using T = gpu::device_t<CoreT>;
      using A = gpu::acc_t<T>;
      static_assert(std::is_same_v<A, core::acc_t<CoreT>>, "CPU and CUDA compute types agree");
      const DwsepWeights w =
          dwsep_weights(s, dw_weight, dw_bias, pw_weight, pw_bias, acc_scalar_type<CoreT>());
      const int64_t pixels = s.B * s.Ho * s.Wo;
      if (!gpu::simple_kernels_only()) {
        const int64_t p_tiles = (pixels + dwtile::kP - 1) / dwtile::kP;
        const dim3 grid(unsigned(std::min<int64_t>(p_tiles, gpu::kMaxBlocks)),
                        unsigned(std::min<int64_t>((s.Cout + dwtile::kCo - 1) / dwtile::kCo, 65535)));
        gpu::dwsep_conv2d_tiled_kernel<T><<<grid, dwtile::kThreads, 0, stream>>>(
            s, data_as<T>(xn), data_as<A>(w.dw_w), w.dw_b.defined() ? data_as<A>(w.dw_b) : nullptr,
            data_as<A>(w.pw_wt), w.pw_b.defined() ? data_as<A>(w.pw_b) : nullptr, dw_act, pw_act, data_as<T>(y));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        return;
      }
      constexpr int kBlock = gpu::kThreads;  // one block per output pixel
      gpu::dwsep_conv2d_kernel<T, kBlock><<<gpu::grid_for(pixels, 1), kBlock, 0, stream>>>(
          s, data_as<T>(xn), data_as<A>(w.dw_w), w.dw_b.defined() ? data_as<A>(w.dw_b) : nullptr,
          data_as<A>(w.pw_wt), w.pw_b.defined() ? data_as<A>(w.pw_b) : nullptr, dw_act, pw_act,
          data_as<T>(y));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  if (keeps_channels_last(x)) return y;
  return y.contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CUDA, m) { m.impl("dwsep_conv2d", &dwsep_conv2d_cuda); }

}  // namespace effdl
