// The phases of the tiled fused depthwise-separable kernel
// (dwsep_conv2d_tiled_kernel in dwsep_kernels.cuh), torch-free and usable from
// C++ and CUDA: the kernel runs them with __syncthreads() between phases, the
// CPU test (tests/native/test_dwsep_tile.cpp) runs each phase for every tid in
// turn, which is the same computation since no phase reads what another
// thread writes in the same phase.
//
// A block owns kP consecutive output pixels p = (b * Ho + oh) * Wo + ow (NHWC)
// and kCo output channels. For each chunk of kCc input channels it
//   1. computes the depthwise values dw[kP][kCc] (activation applied) into
//      shared memory: consecutive threads take consecutive channels, so the
//      NHWC reads of x are contiguous;
//   2. stages pw_wt[kCc][kCo] (the pointwise weights, [C, Cout]) into shared memory;
//   3. accumulates: thread (ty, tx) owns pixels ty * kTP + {0..kTP-1} and
//      output channels tx * kTC + {0..kTC-1} in registers.
// The depthwise output never goes to memory; the pointwise weights are read
// once per block and chunk instead of once per pixel.
#pragma once

#include <cstdint>

#include "../core/dwsep_conv.h"

#if defined(__CUDACC__)
#define EFFDL_DW_HD __host__ __device__ __forceinline__
#else
#define EFFDL_DW_HD inline
#endif

namespace effdl::dwtile {

constexpr int kThreads = 256;
constexpr int kP = 32;   // output pixels per block
constexpr int kCo = 64;  // output channels per block
constexpr int kCc = 32;  // input channels per chunk
constexpr int kTP = 2;   // pixels per thread
constexpr int kTC = 4;   // output channels per thread
static_assert((kP / kTP) * (kCo / kTC) == kThreads, "one register tile per thread");
constexpr int kDwStride = kCc + 1;  // shared dw row (pixel) stride: odd, so a column read spreads over banks

// As core::activate, with the same comparisons: NaN falls through unchanged.
template <typename A>
EFFDL_DW_HD A activate_hd(A v, core::Activation act) {
  if (act == core::Activation::kRelu) return v < A(0) ? A(0) : v;
  if (act == core::Activation::kRelu6) return v < A(0) ? A(0) : (v > A(6) ? A(6) : v);
  return v;
}

// Phase 1: dw_s[pp][cc] for pixels p0 + pp and channels c0 + cc; zero past the
// pixels or channels. load_x(index) reads x[index] as A.
template <typename A, typename LoadX>
EFFDL_DW_HD void depthwise_phase(int tid, const core::DwsepShape& s, const LoadX& load_x, const A* dw_w,
                                 const A* dw_b, core::Activation act, int64_t p0, int64_t c0, A* dw_s) {
  const int64_t pixels = s.B * s.Ho * s.Wo;
  for (int e = tid; e < kP * kCc; e += kThreads) {
    const int pp = e / kCc, cc = e % kCc;
    const int64_t p = p0 + pp, c = c0 + cc;
    A d = A(0);
    if (p < pixels && c < s.C) {
      const int64_t ow = p % s.Wo, oh = (p / s.Wo) % s.Ho, b = p / (s.Wo * s.Ho);
      d = dw_b != nullptr ? dw_b[c] : A(0);
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t iw = ow * s.stride_w - s.pad_w + j * s.dil_w;
          if (iw < 0 || iw >= s.W) continue;
          d += load_x(((b * s.H + ih) * s.W + iw) * s.C + c) * dw_w[(i * s.kw + j) * s.C + c];
        }
      }
      d = activate_hd(d, act);
    }
    dw_s[pp * kDwStride + cc] = d;
  }
}

// Phase 2: pw_s[cc][co] = pw_wt[c0 + cc, co0 + co], zero past C or Cout.
template <typename A>
EFFDL_DW_HD void pointwise_stage_phase(int tid, const core::DwsepShape& s, const A* pw_wt, int64_t c0, int64_t co0,
                                       A* pw_s) {
  for (int e = tid; e < kCc * kCo; e += kThreads) {
    const int cc = e / kCo, co = e % kCo;
    const bool ok = c0 + cc < s.C && co0 + co < s.Cout;
    pw_s[e] = ok ? pw_wt[(c0 + cc) * s.Cout + co0 + co] : A(0);
  }
}

EFFDL_DW_HD int tile_py(int tid) { return (tid / (kCo / kTC)) * kTP; }  // first pixel of the thread's tile
EFFDL_DW_HD int tile_cx(int tid) { return (tid % (kCo / kTC)) * kTC; }  // first output channel

// Phase 3: acc[a][b] += sum_cc dw_s[py + a][cc] * pw_s[cc][cx + b].
template <typename A>
EFFDL_DW_HD void accumulate_phase(int tid, const A* dw_s, const A* pw_s, A (&acc)[kTP][kTC]) {
  const int py = tile_py(tid), cx = tile_cx(tid);
  for (int cc = 0; cc < kCc; ++cc) {
    A w[kTC];
    for (int b = 0; b < kTC; ++b) w[b] = pw_s[cc * kCo + cx + b];
    for (int a = 0; a < kTP; ++a) {
      const A d = dw_s[(py + a) * kDwStride + cc];
      for (int b = 0; b < kTC; ++b) acc[a][b] += d * w[b];
    }
  }
}

// The thread's first accumulator values: the pointwise bias (zero past Cout).
template <typename A>
EFFDL_DW_HD void init_acc(int tid, const core::DwsepShape& s, const A* pw_b, int64_t co0, A (&acc)[kTP][kTC]) {
  const int cx = tile_cx(tid);
  for (int a = 0; a < kTP; ++a)
    for (int b = 0; b < kTC; ++b) {
      const int64_t co = co0 + cx + b;
      acc[a][b] = (pw_b != nullptr && co < s.Cout) ? pw_b[co] : A(0);
    }
}

// Phase 4: store(activate(acc)) to y[p, co] for the pixels and channels that exist.
template <typename A, typename StoreY>
EFFDL_DW_HD void store_phase(int tid, const core::DwsepShape& s, const A (&acc)[kTP][kTC], core::Activation act,
                             int64_t p0, int64_t co0, const StoreY& store_y) {
  const int64_t pixels = s.B * s.Ho * s.Wo;
  const int py = tile_py(tid), cx = tile_cx(tid);
  for (int a = 0; a < kTP; ++a)
    for (int b = 0; b < kTC; ++b) {
      const int64_t p = p0 + py + a, co = co0 + cx + b;
      if (p < pixels && co < s.Cout) store_y(p * s.Cout + co, activate_hd(acc[a][b], act));
    }
}

}  // namespace effdl::dwtile
