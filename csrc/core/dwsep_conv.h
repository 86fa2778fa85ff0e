// Fused depthwise-separable convolution, torch-free, NHWC (channels_last):
//   dw[b, oh, ow, c]  = act_dw(sum_{kh,kw} x[b, ih, iw, c] * dw_w[kh, kw, c] + dw_b[c])
//   y[b, oh, ow, co]  = act_pw(sum_c dw[b, oh, ow, c] * pw_wt[c, co] + pw_b[co])
// One output row (b, oh) at a time: its depthwise row lives in a scratch
// buffer [Wo, C] that stays in cache and never goes to memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

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

// Output rows r in [r_begin, r_end) with r = b * Ho + oh. x is [B, H, W, C]
// contiguous, y is [B, Ho, Wo, Cout] contiguous. Weights are in the
// accumulator type: dw_w[kh, kw, C], pw_wt[C, Cout]; biases may be null.
template <typename T>
void dwsep_conv2d_rows(const DwsepShape& s, const T* x, const acc_t<T>* dw_w,
                       const acc_t<T>* dw_b, const acc_t<T>* pw_wt, const acc_t<T>* pw_b,
                       Activation dw_act, Activation pw_act, T* y, int64_t r_begin,
                       int64_t r_end) {
  using A = acc_t<T>;
  const int64_t C = s.C, Cout = s.Cout;
  std::vector<A> dw(size_t(std::max<int64_t>(s.Wo * C, 1)));
  std::vector<A> xin(size_t(std::max<int64_t>(C, 1)));
  std::vector<A> acc(size_t(std::max<int64_t>(Cout, 1)));
  for (int64_t r = r_begin; r < r_end; ++r) {
    const int64_t b = r / s.Ho, oh = r % s.Ho;
    // depthwise row
    for (int64_t ow = 0; ow < s.Wo; ++ow) {
      A* d = dw.data() + ow * C;
      for (int64_t c = 0; c < C; ++c) d[c] = dw_b ? dw_b[c] : A(0);
      for (int64_t i = 0; i < s.kh; ++i) {
        const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
        if (ih < 0 || ih >= s.H) continue;
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t iw = ow * s.stride_w - s.pad_w + j * s.dil_w;
          if (iw < 0 || iw >= s.W) continue;
          const T* xp = x + ((b * s.H + ih) * s.W + iw) * C;
          const A* wp = dw_w + (i * s.kw + j) * C;
          for (int64_t c = 0; c < C; ++c) xin[c] = load(xp[c]);
          for (int64_t c = 0; c < C; ++c) d[c] += xin[c] * wp[c];
        }
      }
      for (int64_t c = 0; c < C; ++c) d[c] = activate(d[c], dw_act);
    }
    // pointwise: [Wo, C] x [C, Cout]
    T* yrow = y + r * s.Wo * Cout;
    for (int64_t ow = 0; ow < s.Wo; ++ow) {
      const A* d = dw.data() + ow * C;
      for (int64_t co = 0; co < Cout; ++co) acc[co] = pw_b ? pw_b[co] : A(0);
      for (int64_t c = 0; c < C; ++c) {
        const A a = d[c];
        const A* wp = pw_wt + c * Cout;
        for (int64_t co = 0; co < Cout; ++co) acc[co] += a * wp[co];
      }
      T* yp = yrow + ow * Cout;
      for (int64_t co = 0; co < Cout; ++co) yp[co] = store<T>(activate(acc[co], pw_act));
    }
  }
}

}  // namespace effdl::core
