// nm_linear for 2:4 fp16/bf16 on sparse tensor cores (mma.sp m16n8k32, sm_80+).
//
// y[M, N] = x[M, K] @ W[N, K].T + bias with W in effdl's canonical 2:4 storage
// (values[N, K/2], meta[N, K/8] keep-mask bits). The sparse operand A is the
// weight tile, B = x^T, so a block computes y^T[64 features, 64 tokens]. The
// canonical meta needs no prepack: a 16-bit word of it is the keep-mask of 16
// dense columns, converted nibble-wise to mma.sp indices in registers
// (mma_layout.h, which also holds every index map used here).
//
// Split-K (decode sizes, mma_layout.h splitk_plan): grid z picks a range of
// kb_per_split K blocks; with `partial` non-null the block writes its fp32
// sums to partial[z, M, N] and nm_splitk_reduce_kernel adds the ranges in
// order and the bias.
//
// Requirements (else the glue keeps nm_linear_kernel): K % 64 == 0, x and
// values 16-byte aligned, meta 8-byte aligned, all contiguous; M and N are
// free (rows past the ends are zero-filled and never stored).
#pragma once

#include <cstdint>

#include "common.cuh"
#include "mma_layout.h"
#include "mma_ptx.cuh"
#include "tc_pipeline.cuh"

namespace effdl::gpu {

template <typename T>
struct NmTcStage {
  T vals[mma::kTileM][mma::kNmValStride];
  T x[mma::kTileN][mma::kNmXStride];
  uint8_t meta[mma::kTileM][mma::kNmMetaStride];
};

// Stage k-block kb of the (n0 features, m0 tokens) tile into s. K % 64 == 0:
// every chunk lies inside its row.
template <typename T>
__device__ __forceinline__ void nm_tc_load(NmTcStage<T>& s, const T* __restrict__ x, const T* __restrict__ values,
                                           const uint8_t* __restrict__ meta, int64_t M, int64_t N, int64_t K,
                                           int64_t n0, int64_t m0, int64_t kb, int tid) {
  using namespace mma;
  static_assert(kTileM == kTileN, "stage_rows copies kTileM rows of either operand");
  constexpr int64_t kValBytes = kNmBK / 2 * int64_t(sizeof(T)), kXBytes = kNmBK * int64_t(sizeof(T));
  const int64_t val_pitch = K / 2 * int64_t(sizeof(T)), x_pitch = K * int64_t(sizeof(T));
  stage_rows<kValBytes, kNmValStride * sizeof(T)>(&s.vals[0][0], values, N, val_pitch,
                                                  n0, kb * kValBytes, val_pitch, tid);
  stage_rows<kXBytes, kNmXStride * sizeof(T)>(&s.x[0][0], x, M, x_pitch, m0,
                                              kb * kXBytes, x_pitch, tid);
  stage_meta_rows(s.meta, meta, N, K, n0, kb, tid);
}

template <typename T>
__global__ void __launch_bounds__(mma::kTileThreads)
    nm24_linear_tc_kernel(const T* __restrict__ x, const T* __restrict__ values, const uint8_t* __restrict__ meta,
                          const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t kb_per_split,
                          float* __restrict__ partial, T* __restrict__ y) {
  using namespace mma;
  __shared__ __align__(16) NmTcStage<T> stage[2];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp_m0(warp), wn = warp_n0(warp);
  const int64_t n0 = int64_t(blockIdx.x) * kTileM;
  const int64_t kb0 = int64_t(blockIdx.z) * kb_per_split;
  const int64_t kb1 = kb0 + kb_per_split < K / kNmBK ? kb0 + kb_per_split : K / kNmBK;
  const int64_t mtiles = (M + kTileN - 1) / kTileN;
  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {  // uniform across the block
    const int64_t m0 = mt * kTileN;
    WarpAcc<float> acc;
    zero_acc(acc);

    auto stage_block = [&](NmTcStage<T>& s, int64_t kb) { nm_tc_load(s, x, values, meta, M, N, K, n0, m0, kb, tid); };
    auto mma_block = [&](const NmTcStage<T>& s) {
#pragma unroll
      for (int ks = 0; ks < kNmBK / 32; ++ks) {
        uint32_t a[2][4], b[4][4], e[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          ldmatrix_x4(a[i], &s.vals[wm + 16 * i + ldsm_a_row(lane)][ks * 16 + ldsm_a_unit(lane)]);
          const int r = wm + 16 * i + sp_meta_row(lane);
          const int byte = ks * 4 + sp_meta_half(lane) * 2;
          const uint32_t lo = uint32_t(s.meta[r][byte]) | uint32_t(s.meta[r][byte + 1]) << 8;
          const uint32_t hi = uint32_t(s.meta[r + 8][byte]) | uint32_t(s.meta[r + 8][byte + 1]) << 8;
          e[i] = sp_meta_word(lo, hi);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          ldmatrix_x4(b[j], &s.x[wn + 8 * j + ldsm_b16_row(lane)][ks * 32 + ldsm_b16_unit(lane)]);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_sp_16832<T>(acc[i][j], a[i], b[j], e[i]);
      }
    };
    two_stage_pipeline(stage, kb0, kb1, stage_block, mma_block);

    for_each_acc(acc, lane, wm, wn, [&](float v, int a, int b) {
      const int64_t o = n0 + a, t = m0 + b;  // feature (A row), token (B column)
      if (o < N && t < M) {
        if (partial != nullptr) {
          partial[(int64_t(blockIdx.z) * M + t) * N + o] = v;
        } else {
          const float bv = bias != nullptr ? load(bias[o]) : 0.f;
          y[t * N + o] = store<T>(v + bv);
        }
      }
    });
  }
}

// y[t, o] = sum_z partial[z, t, o] (z ascending) + bias[o]; one thread per output.
template <typename T>
__global__ void nm_splitk_reduce_kernel(const float* __restrict__ partial, int64_t splits,
                                        const T* __restrict__ bias, int64_t M, int64_t N, T* __restrict__ y) {
  const int64_t total = M * N;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    float v = 0.f;
    for (int64_t z = 0; z < splits; ++z) v += partial[z * total + i];
    const float bv = bias != nullptr ? load(bias[i % N]) : 0.f;
    y[i] = store<T>(v + bv);
  }
}

}  // namespace effdl::gpu
