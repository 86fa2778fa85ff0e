// The CPU core of dwsep_conv2d (semantics in dwsep_conv.h), tiled for the
// caches and the vector registers; torch-free.
//
// Work is a range of output pixels p = (b * Ho + oh) * Wo + ow of the NHWC
// output, cut into blocks of RB pixels. For each block:
//  1. depthwise: the block's [RB, C] fp32 tile (RB * C * 4 bytes, sized to stay
//     in L2) is computed vectorised over channels, channel chunk outermost so
//     the chunk's kh * kw weight vectors stay in registers while the block's
//     pixels pass (interior pixels take every tap unchecked; border pixels
//     check each tap);
//  2. pointwise: [RB, C] x [C, Cout] by a register-blocked micro-kernel of MR
//     pixels x NV vectors of output channels (MR * NV accumulators), panel of
//     output channels outermost so the panel's weights are reused by all the
//     block's pixels; bias and activation fused into the store.
// The depthwise tile never goes to memory beyond the cache.
//
// Weights are packed once per call (dwsep_pack): depthwise [kh*kw][Cp], its
// bias [Cp], pointwise in column blocks of 16 [Coutp/16][C][16] and its bias
// [Coutp], all zero-padded (Cp, Coutp: C, Cout rounded up to 16) so weight
// loads never need a mask; absent biases are zeros.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dtype.h"
#include "dwsep_conv.h"
#include "dwsep_simd.h"
#include "isa.h"

namespace effdl::core {

constexpr int64_t kDwsepLanes = 16;  // padding of the packed weights; every vector width divides it

inline int64_t dwsep_padded(int64_t n) { return (n + kDwsepLanes - 1) / kDwsepLanes * kDwsepLanes; }

template <typename A>
struct DwsepPacked {
  const A* dw_w;  // [kh*kw][Cp]
  const A* dw_b;  // [Cp]
  const A* pw_w;  // [Coutp/16][C][16]
  const A* pw_b;  // [Coutp]
};

// Elements of the buffer dwsep_pack fills.
inline int64_t dwsep_packed_size(const DwsepShape& s) {
  return dwsep_padded(s.C) * (s.kh * s.kw + 1) + dwsep_padded(s.Cout) * (s.C + 1);
}

// The views of a packed buffer.
template <typename A>
DwsepPacked<A> dwsep_packed_view(const DwsepShape& s, A* buf) {
  const int64_t Cp = dwsep_padded(s.C);
  A* pw = buf + Cp * (s.kh * s.kw + 1);
  return {buf, buf + Cp * s.kh * s.kw, pw, pw + dwsep_padded(s.Cout) * s.C};
}

// Packs column blocks [blk_begin, blk_end) of the pointwise weights (of
// dwsep_padded(Cout) / 16) from the canonical pw [Cout][C]: blocks are
// independent, so threads may pack different ones.
template <typename A>
void dwsep_pack_pw(const DwsepShape& s, const A* pw, A* buf, int64_t blk_begin, int64_t blk_end) {
  const int64_t C = s.C, Cout = s.Cout;
  A* const out = const_cast<A*>(dwsep_packed_view(s, buf).pw_w);
  for (int64_t blk = blk_begin; blk < blk_end; ++blk) {
    const int64_t co0 = blk * kDwsepLanes, live = std::min<int64_t>(kDwsepLanes, Cout - co0);
    A* o = out + blk * C * kDwsepLanes;
    // written in order, read from 16 rows at once
    for (int64_t c = 0; c < C; ++c, o += kDwsepLanes) {
      for (int64_t l = 0; l < live; ++l) o[l] = pw[(co0 + l) * C + c];
      for (int64_t l = live; l < kDwsepLanes; ++l) o[l] = A(0);
    }
  }
}

// Packs the canonical weights (dw [C][kh*kw], pw [Cout][C]; biases may be
// null) into buf (dwsep_packed_size(s) elements) and returns the views; with
// pack_pw false the pointwise weights are left to dwsep_pack_pw.
template <typename A>
DwsepPacked<A> dwsep_pack(const DwsepShape& s, const A* dw, const A* dw_b, const A* pw, const A* pw_b, A* buf,
                          bool pack_pw = true) {
  const int64_t C = s.C, Cout = s.Cout, taps = s.kh * s.kw;
  const int64_t Cp = dwsep_padded(C), Coutp = dwsep_padded(Cout);
  const DwsepPacked<A> v = dwsep_packed_view(s, buf);
  A* dww = const_cast<A*>(v.dw_w);
  A* dwb = const_cast<A*>(v.dw_b);
  A* pwb = const_cast<A*>(v.pw_b);
  for (int64_t k = 0; k < taps; ++k)
    for (int64_t c = 0; c < Cp; ++c) dww[k * Cp + c] = c < C ? dw[c * taps + k] : A(0);
  for (int64_t c = 0; c < Cp; ++c) dwb[c] = (dw_b && c < C) ? dw_b[c] : A(0);
  if (pack_pw) dwsep_pack_pw(s, pw, buf, 0, Coutp / kDwsepLanes);
  for (int64_t co = 0; co < Coutp; ++co) pwb[co] = (pw_b && co < Cout) ? pw_b[co] : A(0);
  return v;
}

namespace dwsep {

// Register blocking of a vector type: at most kMaxNV vectors of output
// channels per micro-tile, and the micro-tile's pixel count for nv of them
// (MR * nv accumulators, leaving registers for the weights and a broadcast).
template <class V>
struct Blocking {
  static constexpr int kMaxNV = 2;
  static constexpr int mr(int) { return 4; }
};
#if EFFDL_X86_LEVELS
template <>
struct Blocking<Avx2> {  // 16 ymm registers
  static constexpr int kMaxNV = 3;
  static constexpr int mr(int nv) { return nv == 1 ? 8 : nv == 2 ? 6 : 4; }
};
template <>
struct Blocking<Avx512> {  // 32 zmm registers
  static constexpr int kMaxNV = 4;
  static constexpr int mr(int nv) { return nv <= 2 ? 12 : nv == 3 ? 8 : 6; }
};
#endif

// The depthwise tile of a block: about this many bytes (L2 holds it and a
// panel of pointwise weights).
constexpr int64_t kTileBytes = 192 * 1024;

struct Pixel {
  int64_t img;       // offset of x[b, 0, 0, 0]
  int64_t ih0, iw0;  // input position of tap (0, 0)
  bool interior;     // every tap inside the image
};

#define EFFDL_DWSEP_NS generic
#define EFFDL_DWSEP_TARGET
#include "dwsep_tiled_core.inc"

#if EFFDL_X86_LEVELS
#define EFFDL_DWSEP_NS avx2
#define EFFDL_DWSEP_TARGET __attribute__((target("arch=x86-64-v3")))
#include "dwsep_tiled_core.inc"

#define EFFDL_DWSEP_NS avx512
#define EFFDL_DWSEP_TARGET __attribute__((target("arch=x86-64-v4")))
#include "dwsep_tiled_core.inc"
#endif

}  // namespace dwsep

// dwsep_conv2d on the output pixels [p_begin, p_end) of the NHWC output y
// ([B, Ho, Wo, Cout] contiguous; y points at pixel 0, the range's rows are
// written at y + p * Cout), from x [B, H, W, C] contiguous and the packed
// weights. The level's kernel table holds dwsep_conv2d_pixels<level, T>.
template <Isa L, typename T>
void dwsep_conv2d_pixels(const DwsepShape& s, const T* x, const DwsepPacked<acc_t<T>>& w, Activation dw_act,
                         Activation pw_act, T* y, int64_t p_begin, int64_t p_end) {
  // the intrinsics of the level's vector type for float / bf16 / fp16 on the
  // x86 levels; plain C++ (vectorised by the level's attribute once inlined
  // into its entry point) elsewhere and for double
  y += p_begin * s.Cout;
#if EFFDL_X86_LEVELS
  if constexpr (!std::is_same_v<T, double> && L == Isa::kAvx2)
    return dwsep::avx2::conv_pixels<dwsep::Avx2>(s, x, w, dw_act, pw_act, y, p_begin, p_end);
  if constexpr (!std::is_same_v<T, double> && L >= Isa::kAvx512)
    return dwsep::avx512::conv_pixels<dwsep::Avx512>(s, x, w, dw_act, pw_act, y, p_begin, p_end);
#endif
  dwsep::generic::conv_pixels<dwsep::Generic<acc_t<T>, 8>>(s, x, w, dw_act, pw_act, y, p_begin, p_end);
}

}  // namespace effdl::core
