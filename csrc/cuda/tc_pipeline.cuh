// The building blocks shared by the tensor-core kernels (int8_tc_kernels.cuh,
// nm_tc_kernels.cuh, nm_int8_kernels.cuh): a 64-row operand tile copied into
// shared memory as 16-byte cp.async chunks with zero fill (and the 2:4 kernels' meta rows
// as 8-byte ones), the two-stage
// pipeline that overlaps the copy of one K block with the mma work on the
// previous one, and the walk over a warp's accumulator fragments. The copy plan is mma_layout.h's (tile_iters / tile_row /
// tile_chunk), which tests/native/test_mma_layout.cpp replays.
#pragma once

#include <cstdint>

#include "mma_layout.h"
#include "mma_ptx.cuh"

namespace effdl::gpu {

// Copies bytes [col0, col0 + kBytes) of rows [r0, r0 + kTileM) of src (`rows`
// rows, `pitch` bytes apart) into dst (rows kStride bytes apart), one 16-byte
// chunk per thread and iteration. A chunk of a row past `rows`, or starting at
// or past byte `limit` of its row, is zero-filled and nothing is read for it
// (callers keep every chunk either wholly before `limit` or wholly past it).
template <int kBytes, int kStride>
__device__ __forceinline__ void stage_rows(void* dst_v, const void* src_v, int64_t rows, int64_t pitch,
                                           int64_t r0, int64_t col0, int64_t limit, int tid) {
  using namespace mma;
  static_assert(kBytes % 16 == 0 && kStride % 16 == 0, "whole 16-byte chunks");
  constexpr int kChunks = kBytes / 16;
  uint8_t* dst = static_cast<uint8_t*>(dst_v);
  const uint8_t* src = static_cast<const uint8_t*>(src_v);
#pragma unroll
  for (int it = 0; it < tile_iters(kTileM, kChunks); ++it) {
    const int r = tile_row(tid, it, kChunks), c = tile_chunk(tid, it, kChunks);
    if (r >= kTileM) break;  // a partial last iteration (threads past the tile)
    const int64_t col = col0 + c * 16;
    const bool ok = r0 + r < rows && col < limit;
    cp_async16(dst + r * kStride + c * 16, ok ? src + (r0 + r) * pitch + col : src, ok);
  }
}

// The 2:4 keep-mask bytes of K block kb (kBlockBytes of each meta [N, K/8] row)
// of the tile's kTileM weight rows from n0, into dst[row]: one 8-byte cp.async
// per row, zero-filled past N.
template <int kBlockBytes>
__device__ __forceinline__ void stage_meta_rows(uint8_t (*dst)[kBlockBytes], const uint8_t* meta, int64_t N,
                                                int64_t K, int64_t n0, int64_t kb, int tid) {
  static_assert(kBlockBytes == 8, "one 8-byte chunk per row");
  if (tid < mma::kTileM) {
    const bool ok = n0 + tid < N;
    const uint8_t* src = ok ? meta + (n0 + tid) * (K / 8) + kb * kBlockBytes : meta;
    cp_async8(&dst[tid][0], src, ok);
  }
}

// K blocks [kb0, kb1) through two shared-memory stages: load(stage, kb) issues
// (but does not wait for) the cp.async copies of block kb, compute(stage) runs
// the mma work on a block that has landed. Every thread of the block calls it
// with the same range; the barriers keep a stage from being refilled while a
// warp still reads it.
template <typename Stage, typename Load, typename Compute>
__device__ __forceinline__ void two_stage_pipeline(Stage (&stage)[2], int64_t kb0, int64_t kb1, Load&& load,
                                                   Compute&& compute) {
  if (kb0 < kb1) load(stage[kb0 & 1], kb0);
  cp_async_commit();
  for (int64_t kb = kb0; kb < kb1; ++kb) {
    if (kb + 1 < kb1) {
      load(stage[(kb + 1) & 1], kb + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    compute(stage[kb & 1]);
    __syncthreads();  // the stage is free for the load two steps on
  }
}

// A warp's 32 x 32 accumulators: 2 m16 x 4 n8 mma tiles of 4 elements per lane.
template <typename Acc>
using WarpAcc = Acc[2][4][4];

template <typename Acc>
__device__ __forceinline__ void zero_acc(WarpAcc<Acc>& acc) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = Acc(0);
}

// Calls f(value, a, b) for each accumulator element of the lane: A row
// a = wm + 16 i + acc_row and B column b = wn + 8 j + acc_col of the block tile.
template <typename Acc, typename F>
__device__ __forceinline__ void for_each_acc(const WarpAcc<Acc>& acc, int lane, int wm, int wn, F&& f) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int el = 0; el < 4; ++el)
        f(acc[i][j][el], wm + 16 * i + mma::acc_row(lane, el), wn + 8 * j + mma::acc_col(lane, el));
}

}  // namespace effdl::gpu
