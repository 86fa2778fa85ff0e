// int8_weight_linear for a few activation rows (decode, M <= kGemvMaxM): a
// GEMV-class kernel bound by the weight stream. Each warp owns kGemvRows output
// features; its lanes stride over K in 16-byte chunks of int8 weights (one
// 16-byte load per feature), dequantize them in registers and multiply them
// with the M activation rows (fp32, converted once by the glue), accumulating
// in fp32; a shuffle butterfly sums the 32 lanes. The epilogue is
// int8_weight_linear_kernel's: acc * w_scale + bias, in that order.
//
// Requirements (else the glue keeps int8_weight_linear_kernel): M <= 16,
// K % 16 == 0, wq and x 16-byte aligned and contiguous.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace effdl::gpu {

constexpr int kGemvMaxM = 16;
constexpr int kGemvRows = 4;   // output features per warp: each x chunk loaded feeds this many
constexpr int kGemvWarps = 4;  // warps per block

// Signed byte b (0..3) of a 32-bit word, as float.
__device__ __forceinline__ float s8_at(uint32_t word, int b) {
  return float(int32_t(word << (24 - 8 * b)) >> 24);
}

template <typename Out>
__global__ void __launch_bounds__(kGemvWarps * 32)
    int8_weight_gemv_kernel(const float* __restrict__ x, const int8_t* __restrict__ wq,
                            const float* __restrict__ w_scale, const float* __restrict__ bias, int M, int64_t N,
                            int64_t K, Out* __restrict__ y) {
  const int lane = int(threadIdx.x) & 31;
  const int64_t groups = (N + kGemvRows - 1) / kGemvRows, chunks = K / 16;
  const int64_t warps = int64_t(gridDim.x) * kGemvWarps;
  for (int64_t grp = int64_t(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5); grp < groups; grp += warps) {
    const int64_t o0 = grp * kGemvRows;  // uniform across the warp
    float acc[kGemvRows][kGemvMaxM];
#pragma unroll
    for (int r = 0; r < kGemvRows; ++r)
#pragma unroll
      for (int m = 0; m < kGemvMaxM; ++m) acc[r][m] = 0.f;

    for (int64_t c = lane; c < chunks; c += 32) {
      uint32_t w[kGemvRows][4];
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        uint4 v = make_uint4(0u, 0u, 0u, 0u);  // features past N multiply zeros and are never stored
        if (o0 + r < N) v = __ldg(reinterpret_cast<const uint4*>(wq + (o0 + r) * K + c * 16));
        w[r][0] = v.x;
        w[r][1] = v.y;
        w[r][2] = v.z;
        w[r][3] = v.w;
      }
#pragma unroll
      for (int m = 0; m < kGemvMaxM; ++m) {
        if (m >= M) break;
        const float4* xv = reinterpret_cast<const float4*>(x + m * K + c * 16);
#pragma unroll
        for (int qd = 0; qd < 4; ++qd) {
          const float4 xq = __ldg(xv + qd);
#pragma unroll
          for (int r = 0; r < kGemvRows; ++r) {
            float a = acc[r][m];
            a += xq.x * s8_at(w[r][qd], 0);
            a += xq.y * s8_at(w[r][qd], 1);
            a += xq.z * s8_at(w[r][qd], 2);
            a += xq.w * s8_at(w[r][qd], 3);
            acc[r][m] = a;
          }
        }
      }
    }

#pragma unroll
    for (int m = 0; m < kGemvMaxM; ++m) {
      if (m >= M) break;
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        float v = acc[r][m];
#pragma unroll
        for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
        const int64_t o = o0 + r;
        if (lane == 0 && o < N) {
          float out = __fmul_rn(v, w_scale[o]);
          if (bias != nullptr) out = __fadd_rn(out, bias[o]);
          y[int64_t(m) * N + o] = store<Out>(out);
        }
      }
    }
  }
}

}  // namespace effdl::gpu
