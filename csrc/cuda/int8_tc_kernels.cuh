// int8_linear on int8 tensor cores (mma m16n8k32 s8.s8.s32, sm_80+):
// y[M, N] = float(q[M, K] @ wq[N, K].T) * q_scale[:, None] * w_scale[None, :]
// + bias, exact int32 accumulation, the epilogue of int8_linear_kernel (same
// ops, same order). A = q, B = wq^T; index maps in mma_layout.h.
//
// Split-K (decode sizes, mma_layout.h splitk_plan): grid z picks a range of
// kb_per_split K blocks; with `partial` non-null the block writes its int32
// sums to partial[z, M, N] and int8_splitk_reduce_kernel adds them (exact:
// every partial sum is a sub-sum of one bounded by the K check) and applies
// the same epilogue, so the result is bit for bit the unsplit one.
//
// Requirements (else the glue keeps int8_linear_kernel): K % 16 == 0, q and
// wq 16-byte aligned and contiguous. A K-block past K is zero-filled per
// 16-byte chunk (tc_pipeline.cuh) (zeros add nothing to an integer sum); rows past M or N too.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "mma_layout.h"
#include "mma_ptx.cuh"
#include "tc_pipeline.cuh"

namespace effdl::gpu {

struct I8TcStage {
  int8_t q[mma::kTileM][mma::kI8Stride];
  int8_t w[mma::kTileN][mma::kI8Stride];
};

// The epilogue of int8_linear_kernel: non-contractible fp32 ops in its order.
template <typename Out>
__device__ __forceinline__ Out int8_tc_epilogue(int32_t acc, float qs, float ws, const float* bias, int64_t o) {
  float v = __fmul_rn(__fmul_rn(__int2float_rn(acc), qs), ws);
  if (bias != nullptr) v = __fadd_rn(v, bias[o]);
  return store<Out>(v);
}

// Output (t, o) of an int8 tensor-core kernel, if inside the M x N output:
// the int32 sum v to split blockIdx.z's slice of `partial` (split-K), else the
// epilogue's value to y.
template <typename Out>
__device__ __forceinline__ void int8_tc_store(int32_t v, int64_t t, int64_t o, int64_t M, int64_t N,
                                              int32_t* __restrict__ partial, const float* __restrict__ q_scale,
                                              const float* __restrict__ w_scale, const float* __restrict__ bias,
                                              Out* __restrict__ y) {
  if (t >= M || o >= N) return;
  if (partial != nullptr) {
    partial[(int64_t(blockIdx.z) * M + t) * N + o] = v;
  } else {
    y[t * N + o] = int8_tc_epilogue<Out>(v, q_scale[t], w_scale[o], bias, o);
  }
}

template <typename Out>
__global__ void __launch_bounds__(mma::kTileThreads)
    int8_linear_tc_kernel(const int8_t* __restrict__ q, const float* __restrict__ q_scale,
                          const int8_t* __restrict__ wq, const float* __restrict__ w_scale,
                          const float* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t kb_per_split,
                          int32_t* __restrict__ partial, Out* __restrict__ y) {
  using namespace mma;
  __shared__ __align__(16) I8TcStage stage[2];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int wm = warp_m0(warp), wn = warp_n0(warp);
  const int64_t n0 = int64_t(blockIdx.x) * kTileN;
  const mma::KRange ks_range = mma::splitk_range(blockIdx.z, kb_per_split, (K + kI8BK - 1) / kI8BK);
  const int64_t kb0 = ks_range.first, kb1 = ks_range.end;
  const int64_t mtiles = (M + kTileM - 1) / kTileM;
  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {  // uniform across the block
    const int64_t m0 = mt * kTileM;
    WarpAcc<int32_t> acc;
    zero_acc(acc);

    // K % 16 == 0: a 16-byte chunk is all before K or all past it
    auto stage_block = [&](I8TcStage& s, int64_t kb) {
      stage_rows<kI8BK, kI8Stride>(&s.q[0][0], q, M, K, m0, kb * kI8BK, K, tid);
      stage_rows<kI8BK, kI8Stride>(&s.w[0][0], wq, N, K, n0, kb * kI8BK, K, tid);
    };
    auto mma_block = [&](const I8TcStage& s) {
#pragma unroll
      for (int ks = 0; ks < kI8BK / 32; ++ks) {
        uint32_t a[2][4], b[4][2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          ldmatrix_x4(a[i], &s.q[wm + 16 * i + ldsm_a_row(lane)][ks * 32 + 2 * ldsm_a_unit(lane)]);
        }
#pragma unroll
        for (int p = 0; p < 2; ++p) {  // two n8 tiles per ldmatrix
          uint32_t r[4];
          ldmatrix_x4(r, &s.w[wn + 16 * p + ldsm_b8_row(lane)][ks * 32 + 2 * ldsm_b8_unit(lane)]);
          b[2 * p][0] = r[0];
          b[2 * p][1] = r[1];
          b[2 * p + 1][0] = r[2];
          b[2 * p + 1][1] = r[3];
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) mma_s8_16832(acc[i][j], a[i], b[j]);
      }
    };
    two_stage_pipeline(stage, kb0, kb1, stage_block, mma_block);

    for_each_acc(acc, lane, wm, wn, [&](int32_t v, int a, int b) {
      int8_tc_store(v, m0 + a, n0 + b, M, N, partial, q_scale, w_scale, bias, y);  // token (A row), feature (B column)
    });
  }
}

// y[t, o] = epilogue(sum_z partial[z, t, o]); one thread per output.
template <typename Out>
__global__ void int8_splitk_reduce_kernel(const int32_t* __restrict__ partial, int64_t splits,
                                          const float* __restrict__ q_scale, const float* __restrict__ w_scale,
                                          const float* __restrict__ bias, int64_t M, int64_t N, Out* __restrict__ y) {
  const int64_t total = M * N;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int32_t acc = 0;
    for (int64_t z = 0; z < splits; ++z) acc += partial[z * total + i];
    y[i] = int8_tc_epilogue<Out>(acc, q_scale[i / N], w_scale[i % N], bias, i % N);
  }
}

}  // namespace effdl::gpu
