// nm_int8_linear on CUDA, torch-free:
//   y[t, o] = float(sum_k q[t, k] * W[o, k]) * q_scale[t] * w_scale[o] + bias[o]
// with the int8 weight W [N, K] in effdl's N:M storage (values [N, K*n/m],
// meta [N, K/8] keep-mask bits, core/nm_format.h). The int32 sum is exact (the
// glue bounds K*n/m) and the epilogue is int8_tc_epilogue, so every kernel
// here gives the CPU's bits.
//
//   nm_int8_linear_kernel: one thread per output, any N:M pattern, any arch.
//   nm24_int8_linear_tc_kernel: 2:4 on sparse int8 tensor cores (mma.sp
//     m16n8k64 s8, sm_80+). A = the weight tile (the sparse operand), B = q^T,
//     so a block computes y^T[64 features, 64 tokens]; the canonical meta is
//     reordered in registers (mma_layout.h) as for nm_linear. Split-K as
//     int8_linear_tc_kernel, reduced by int8_splitk_reduce_kernel.
//     Requirements (else the glue keeps the simple kernel): K % 64 == 0, q and
//     values 16-byte aligned, meta 8-byte aligned, all contiguous.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "int8_tc_kernels.cuh"
#include "mma_layout.h"
#include "mma_ptx.cuh"
#include "nm_kernels.cuh"
#include "tc_pipeline.cuh"

namespace effdl::gpu {

// One thread per output y[t, o]. Walks the groups of weight row o, taking the
// first n set bits of each group's mask (so corrupt meta, rejected by the glue
// after the launch, still reads in bounds).
template <typename Out>
__global__ void nm_int8_linear_kernel(const int8_t* __restrict__ q, const float* __restrict__ q_scale,
                                      const int8_t* __restrict__ values, const uint8_t* __restrict__ meta,
                                      const float* __restrict__ w_scale, const float* __restrict__ bias, int64_t M,
                                      int64_t N, int64_t K, int64_t meta_bytes, int n, int m, Out* __restrict__ y) {
  const int64_t total = M * N, groups = K / m, kept = groups * n;
  for (int64_t idx = global_thread(); idx < total; idx += grid_threads()) {
    const int64_t t = idx / N, o = idx % N;
    const int8_t* qr = q + t * K;
    const int8_t* vr = values + o * kept;
    const uint8_t* mr = meta + o * meta_bytes;
    int32_t acc = 0;
    for (int64_t g = 0; g < groups; ++g) {
      const uint32_t bits = nm_group_bits(mr, g * m, m);
      int s = 0;
      for (int i = 0; i < m && s < n; ++i) {
        if (((bits >> i) & 1u) != 0u) acc += int32_t(vr[g * n + s++]) * int32_t(qr[g * m + i]);
      }
    }
    y[idx] = int8_tc_epilogue<Out>(acc, q_scale[t], w_scale[o], bias, o);
  }
}

struct NmI8TcStage {
  uint8_t vals[mma::kTileM][mma::kNmI8ValStride];
  uint8_t q[mma::kTileN][mma::kNmI8QStride];
  uint8_t meta[mma::kTileM][mma::kNmI8MetaStride];
};

// Stage k-block kb of the (n0 features, m0 tokens) tile into s. K % 64 == 0:
// every chunk lies inside its row.
__device__ __forceinline__ void nm_i8_tc_load(NmI8TcStage& s, const int8_t* __restrict__ q,
                                              const int8_t* __restrict__ values, const uint8_t* __restrict__ meta,
                                              int64_t M, int64_t N, int64_t K, int64_t n0, int64_t m0, int64_t kb,
                                              int tid) {
  using namespace mma;
  static_assert(kTileM == kTileN, "stage_rows copies kTileM rows of either operand");
  stage_rows<kNmI8BK / 2, kNmI8ValStride>(&s.vals[0][0], values, N, K / 2, n0, kb * (kNmI8BK / 2), K / 2, tid);
  stage_rows<kNmI8BK, kNmI8QStride>(&s.q[0][0], q, M, K, m0, kb * kNmI8BK, K, tid);
  stage_meta_rows(s.meta, meta, N, K, n0, kb, tid);
}

template <typename Out>
__global__ void __launch_bounds__(mma::kTileThreads)
    nm24_int8_linear_tc_kernel(const int8_t* __restrict__ q, const float* __restrict__ q_scale,
                               const int8_t* __restrict__ values, const uint8_t* __restrict__ meta,
                               const float* __restrict__ w_scale, const float* __restrict__ bias, int64_t M,
                               int64_t N, int64_t K, int64_t kb_per_split, int32_t* __restrict__ partial,
                               Out* __restrict__ y) {
  using namespace mma;
  __shared__ __align__(16) NmI8TcStage stage[2];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp_m0(warp), wn = warp_n0(warp);
  const int64_t n0 = int64_t(blockIdx.x) * kTileM;
  const mma::KRange ks_range = mma::splitk_range(blockIdx.z, kb_per_split, K / kNmI8BK);
  const int64_t kb0 = ks_range.first, kb1 = ks_range.end;
  const int64_t mtiles = (M + kTileN - 1) / kTileN;
  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {  // uniform across the block
    const int64_t m0 = mt * kTileN;
    WarpAcc<int32_t> acc;
    zero_acc(acc);

    auto stage_block = [&](NmI8TcStage& s, int64_t kb) { nm_i8_tc_load(s, q, values, meta, M, N, K, n0, m0, kb, tid); };
    auto mma_block = [&](const NmI8TcStage& s) {
      uint32_t a[2][4], b[4][4], e[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        ldmatrix_x4(a[i], &s.vals[wm + 16 * i + ldsm_a_row(lane)][2 * ldsm_a_unit(lane)]);
        const int r = wm + 16 * i + sp_meta_row(lane);
        const int byte = 2 * sp8_meta_quarter(lane);  // dense columns 16 quarter .. 16 quarter + 15
        const uint32_t lo = uint32_t(s.meta[r][byte]) | uint32_t(s.meta[r][byte + 1]) << 8;
        const uint32_t hi = uint32_t(s.meta[r + 8][byte]) | uint32_t(s.meta[r + 8][byte + 1]) << 8;
        e[i] = sp_meta_word(lo, hi);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        ldmatrix_x4(b[j], &s.q[wn + 8 * j + ldsm_b16_row(lane)][2 * ldsm_b16_unit(lane)]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) mma_sp_s8_16864(acc[i][j], a[i], b[j], e[i]);
    };
    two_stage_pipeline(stage, kb0, kb1, stage_block, mma_block);

    for_each_acc(acc, lane, wm, wn, [&](int32_t v, int a, int b) {
      int8_tc_store(v, m0 + b, n0 + a, M, N, partial, q_scale, w_scale, bias, y);  // feature (A row), token (B column)
    });
  }
}

}  // namespace effdl::gpu
