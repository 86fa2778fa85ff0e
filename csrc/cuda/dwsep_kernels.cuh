// Fused depthwise-separable convolution, torch-free, NHWC (channels_last), the
// semantics of core/dwsep_conv.h:
//   dw[b, oh, ow, c] = act_dw(sum_{i,j} x[b, ih, iw, c] * dw_w[i, j, c] + dw_b[c])
//   y[b, oh, ow, co] = act_pw(sum_c dw[b, oh, ow, c] * pw_wt[c, co] + pw_b[co])
// One block per output pixel (b, oh, ow): the block computes the depthwise
// values of kBlock channels at a time into shared memory, then each thread
// adds them into its output channel. The depthwise output never goes to memory.
#pragma once

#include <cstdint>

#include "../core/dwsep_conv.h"
#include "common.cuh"

namespace effdl::gpu {

// As core::activate, with the same comparisons: NaN falls through unchanged.
template <typename A>
__device__ __forceinline__ A apply_activation(A v, core::Activation act) {
  if (act == core::Activation::kRelu) return v < A(0) ? A(0) : v;
  if (act == core::Activation::kRelu6) return v < A(0) ? A(0) : (v > A(6) ? A(6) : v);
  return v;
}

// x [B, H, W, C] and y [B, Ho, Wo, Cout] contiguous; dw_w [kh, kw, C] and
// pw_wt [C, Cout] in acc_t<T>; biases may be null. Launched with kBlock
// threads; blocks loop over pixels.
template <typename T, int kBlock>
__global__ void __launch_bounds__(kBlock)
    dwsep_conv2d_kernel(core::DwsepShape s, const T* __restrict__ x,
                        const acc_t<T>* __restrict__ dw_w, const acc_t<T>* __restrict__ dw_b,
                        const acc_t<T>* __restrict__ pw_wt, const acc_t<T>* __restrict__ pw_b,
                        core::Activation dw_act, core::Activation pw_act, T* __restrict__ y) {
  using A = acc_t<T>;
  __shared__ A dw[kBlock];
  const int64_t tid = threadIdx.x;
  const int64_t pixels = s.B * s.Ho * s.Wo;
  // Every loop bound below is uniform across the block, so each thread reaches
  // every __syncthreads().
  for (int64_t p = blockIdx.x; p < pixels; p += gridDim.x) {
    const int64_t ow = p % s.Wo, oh = (p / s.Wo) % s.Ho, b = p / (s.Wo * s.Ho);
    for (int64_t co0 = 0; co0 < s.Cout; co0 += kBlock) {
      const int64_t co = co0 + tid;
      A acc = (co < s.Cout && pw_b != nullptr) ? pw_b[co] : A(0);
      for (int64_t c0 = 0; c0 < s.C; c0 += kBlock) {
        __syncthreads();  // the previous chunk of dw has been consumed
        const int64_t c = c0 + tid;
        if (c < s.C) {
          A d = dw_b != nullptr ? dw_b[c] : A(0);
          for (int64_t i = 0; i < s.kh; ++i) {
            const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
            if (ih < 0 || ih >= s.H) continue;
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t iw = ow * s.stride_w - s.pad_w + j * s.dil_w;
              if (iw < 0 || iw >= s.W) continue;
              d += A(load(x[((b * s.H + ih) * s.W + iw) * s.C + c])) *
                   dw_w[(i * s.kw + j) * s.C + c];
            }
          }
          dw[tid] = apply_activation(d, dw_act);
        }
        __syncthreads();
        if (co < s.Cout) {
          const int64_t chunk = s.C - c0 < kBlock ? s.C - c0 : kBlock;
          for (int64_t cc = 0; cc < chunk; ++cc) acc += dw[cc] * pw_wt[(c0 + cc) * s.Cout + co];
        }
      }
      // y is [B, Ho, Wo, Cout] contiguous and p = (b * Ho + oh) * Wo + ow
      if (co < s.Cout) y[p * s.Cout + co] = store<T>(apply_activation(acc, pw_act));
    }
  }
}

}  // namespace effdl::gpu
