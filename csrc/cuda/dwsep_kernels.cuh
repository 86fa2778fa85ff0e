// Fused depthwise-separable convolution, torch-free, NHWC (channels_last), the
// semantics of core/dwsep_conv.h:
//   dw[b, oh, ow, c] = act_dw(sum_{i,j} x[b, ih, iw, c] * dw_w[i, j, c] + dw_b[c])
//   y[b, oh, ow, co] = act_pw(sum_c dw[b, oh, ow, c] * pw_wt[c, co] + pw_b[co])
// dwsep_conv2d_kernel: one block per output pixel (b, oh, ow); the block
// computes the depthwise values of kBlock channels at a time into shared
// memory, then each thread adds them into its output channel. The fallback.
// dwsep_conv2d_tiled_kernel: a block per 32 pixels x 64 output channels, the
// depthwise tile in shared memory feeding a register-tiled pointwise product
// (dwsep_tile.h). The depthwise output never goes to memory in either.
#pragma once

#include <cstdint>

#include "../core/dwsep_conv.h"
#include "common.cuh"
#include "dwsep_tile.h"

namespace effdl::gpu {

template <typename A>
__device__ __forceinline__ A apply_activation(A v, core::Activation act) {
  return dwtile::activate_hd(v, act);
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

template <typename T>
struct DwLoadX {
  const T* x;
  __device__ acc_t<T> operator()(int64_t i) const { return acc_t<T>(load(x[i])); }
};
template <typename T>
struct DwStoreY {
  T* y;
  __device__ void operator()(int64_t i, acc_t<T> v) const { y[i] = store<T>(v); }
};

// Same arguments as dwsep_conv2d_kernel; launched with dwtile::kThreads
// threads on a grid of (pixel tiles, Cout tiles), both looped past the grid.
template <typename T>
__global__ void __launch_bounds__(dwtile::kThreads)
    dwsep_conv2d_tiled_kernel(core::DwsepShape s, const T* __restrict__ x, const acc_t<T>* __restrict__ dw_w,
                              const acc_t<T>* __restrict__ dw_b, const acc_t<T>* __restrict__ pw_wt,
                              const acc_t<T>* __restrict__ pw_b, core::Activation dw_act,
                              core::Activation pw_act, T* __restrict__ y) {
  using A = acc_t<T>;
  using namespace dwtile;
  __shared__ A dw_s[kP * kDwStride];
  __shared__ A pw_s[kCc * kCo];
  const int tid = int(threadIdx.x);
  const int64_t pixels = s.B * s.Ho * s.Wo;
  const int64_t p_tiles = (pixels + kP - 1) / kP, co_tiles = (s.Cout + kCo - 1) / kCo;
  // every loop bound is uniform across the block: each thread reaches every __syncthreads()
  for (int64_t ct = blockIdx.y; ct < co_tiles; ct += gridDim.y) {
    const int64_t co0 = ct * kCo;
    for (int64_t pt = blockIdx.x; pt < p_tiles; pt += gridDim.x) {
      const int64_t p0 = pt * kP;
      A acc[kTP][kTC];
      init_acc(tid, s, pw_b, co0, acc);
      for (int64_t c0 = 0; c0 < s.C; c0 += kCc) {
        depthwise_phase(tid, s, DwLoadX<T>{x}, dw_w, dw_b, dw_act, p0, c0, dw_s);
        pointwise_stage_phase(tid, s, pw_wt, c0, co0, pw_s);
        __syncthreads();
        accumulate_phase(tid, dw_s, pw_s, acc);
        __syncthreads();  // the tiles are consumed before the next chunk overwrites them
      }
      store_phase(tid, s, acc, pw_act, p0, co0, DwStoreY<T>{y});
    }
  }
}

}  // namespace effdl::gpu
