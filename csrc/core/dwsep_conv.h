// Fused depthwise-separable convolution, torch-free, NHWC (channels_last):
//   dw[b, oh, ow, c]  = act_dw(sum_{kh,kw} x[b, ih, iw, c] * dw_w[kh, kw, c] + dw_b[c])
//   y[b, oh, ow, co]  = act_pw(sum_c dw[b, oh, ow, c] * pw_wt[c, co] + pw_b[co])
// The shape and activations every backend shares; the CPU core is
// dwsep_tiled.h, the CUDA one cuda/dwsep_kernels.cuh.
#pragma once

#include <cstdint>

#include "dtype.h"

namespace effdl::core {

enum class Activation : int { kNone = 0, kRelu = 1, kRelu6 = 2 };

template <typename A>
inline A activate(A v, Activation act) {
  switch (act) {
    // written so that NaN falls through unchanged, as in PyTorch
    case Activation::kRelu:
      return v < A(0) ? A(0) : v;
    case Activation::kRelu6:
      return v < A(0) ? A(0) : (v > A(6) ? A(6) : v);
    default:
      return v;
  }
}

struct DwsepShape {
  int64_t B, C, H, W;     // input
  int64_t Cout, Ho, Wo;   // output
  int64_t kh, kw;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
};

}  // namespace effdl::core
