// int8_linear on Hopper's warpgroup tensor cores (wgmma.mma_async m64n128k32
// s32.s8.s8, sm_90a only): y[M, N] = float(q[M, K] @ wq[N, K].T) * q_scale[:, None]
// * w_scale[None, :] + bias with exact int32 accumulation and the epilogue of
// the mma.sync kernel (int8_tc_epilogue: same ops, same order), so the result
// is bit for bit the other kernels'. Tile, staging, descriptor and
// accumulator maps are wgmma_layout.h's, which tests/native/test_mma_layout.cpp
// replays against an emulation of the instruction.
//
// Per block: two warpgroups, a 128 x 128 output tile (64 rows each), K in
// 128-byte blocks through kStages cp.async stages (zero fill past M, N and K,
// as tc_pipeline.cuh). Each K block: wait for its copies, make them visible to
// the async proxy wgmma reads through (fence.proxy.async), barrier, four
// wgmma k32 steps as one group, start the copy of the block kStages - 1 ahead
// into the stage the previous block used, wait for the group. Split-K as the
// mma.sync kernel: grid z covers kb_per_split K blocks and, with `partial`
// non-null, writes int32 sums for int8_splitk_reduce_kernel.
//
// Only the sm_90a image holds the kernel body (wgmma needs the arch-specific
// features); any other image traps, and the glue launches it only on sm_90
// devices of a build that includes sm_90a. Requirements (else the glue keeps
// the mma.sync kernel): K % 16 == 0, q and wq 16-byte aligned and contiguous.
#pragma once

#include <cstdint>

#include "common.cuh"
#include "int8_tc_kernels.cuh"
#include "mma_ptx.cuh"
#include "wgmma_layout.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ == 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define EFFDL_WGMMA_DEVICE 1
#else
#define EFFDL_WGMMA_DEVICE 0
#endif

namespace effdl::gpu {

#if EFFDL_WGMMA_DEVICE

// Makes this thread's generic-proxy shared-memory writes (cp.async landed)
// visible to the async proxy that wgmma reads shared memory through.
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Keeps the compiler from moving accumulator reads or writes across the
// asynchronous window between a wgmma's issue and its wait.
__device__ __forceinline__ void fence_acc(int32_t (&d)[wgmma::kAccRegs]) {
#pragma unroll
  for (int r = 0; r < wgmma::kAccRegs; ++r) asm volatile("" : "+r"(d[r])::"memory");
}

// d += A (64 x 32 s8, descriptor a) * B (32 x 128 s8, K-major, descriptor b),
// exact s32 accumulation (wrapping, never saturating: no .satfinite; the glue
// bounds K so nothing wraps).
__device__ __forceinline__ void wgmma_s8_m64n128k32(int32_t (&d)[wgmma::kAccRegs], uint64_t a, uint64_t b) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "
      "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "
      "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "
      "%62, %63}, %64, %65, p;\n"
      "}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]),
        "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]),
        "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]),
        "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]),
        "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]),
        "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]),
        "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]),
        "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(a), "l"(b), "r"(1)
      : "memory");
}

// Copies K bytes [k0, k0 + kBK) of rows [r0, r0 + kRows) of src (`rows` rows of
// K bytes) into the swizzled tile at dst (1024-byte aligned): 16-byte chunks,
// a chunk of a row past `rows` or at/past K zero-filled and not read (K % 16 ==
// 0 keeps every chunk wholly before K or wholly past it).
template <int kRows>
__device__ __forceinline__ void wgmma_stage_tile(uint8_t* dst, const int8_t* src, int64_t rows, int64_t K,
                                                 int64_t r0, int64_t k0, int tid) {
#pragma unroll
  for (int it = 0; it < wgmma::stage_iters(kRows); ++it) {
    const int r = wgmma::stage_row(tid, it), c = wgmma::stage_chunk(tid, it);
    const int64_t col = k0 + 16 * c;
    const bool ok = r0 + r < rows && col < K;
    cp_async16(dst + wgmma::sw128_offset(r, 16 * c), ok ? src + (r0 + r) * K + col : src, ok);
  }
}

#endif  // EFFDL_WGMMA_DEVICE

// Launched with wgmma::kThreads threads and wgmma::kSmemBytes of dynamic shared memory.
template <typename Out>
__global__ void __launch_bounds__(wgmma::kThreads, 1)
    int8_linear_wgmma_kernel(const int8_t* __restrict__ q, const float* __restrict__ q_scale,
                             const int8_t* __restrict__ wq, const float* __restrict__ w_scale,
                             const float* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t kb_per_split,
                             int32_t* __restrict__ partial, Out* __restrict__ y) {
#if EFFDL_WGMMA_DEVICE
  using namespace wgmma;
  extern __shared__ __align__(16) uint8_t smem_raw[];
  // the swizzle is applied to absolute address bits: align the stages to its 1024-byte atom
  const uint32_t raw = smem_addr(smem_raw);
  const uint32_t pad = atom_pad(raw);
  uint8_t* const smem = smem_raw + pad;
  const uint32_t base = raw + pad;
  const int tid = int(threadIdx.x), wg = tid >> 7, t = tid & 127;
  const int64_t n0 = int64_t(blockIdx.x) * kTileN;
  const mma::KRange ks_range = mma::splitk_range(blockIdx.z, kb_per_split, (K + kBK - 1) / kBK);
  const int64_t kb0 = ks_range.first, kb1 = ks_range.end;
  const int64_t mtiles = (M + kTileM - 1) / kTileM;
  for (int64_t mt = blockIdx.y; mt < mtiles; mt += gridDim.y) {  // uniform across the block
    const int64_t m0 = mt * kTileM;
    int32_t acc[kAccRegs];
#pragma unroll
    for (int r = 0; r < kAccRegs; ++r) acc[r] = 0;

    auto load = [&](int64_t kb) {  // K block kb into its stage
      uint8_t* st = smem + stage_of(kb, kb0) * kStageBytes;
      wgmma_stage_tile<kTileM>(st, q, M, K, m0, kb * kBK, tid);
      wgmma_stage_tile<kTileN>(st + kATileBytes, wq, N, K, n0, kb * kBK, tid);
    };
    // one commit group per K block (empty past kb1) keeps the wait count fixed
#pragma unroll
    for (int s = 0; s < kAhead; ++s) {
      if (kb0 + s < kb1) load(kb0 + s);
      cp_async_commit();
    }
    for (int64_t kb = kb0; kb < kb1; ++kb) {
      cp_async_wait<kPendingCopies>();  // this thread's copies of block kb have landed
      fence_proxy_async_smem();
      __syncthreads();  // everyone's have; and every warpgroup has waited for block kb - 1's wgmma
      const uint32_t st = base + uint32_t(stage_of(kb, kb0)) * uint32_t(kStageBytes);
      fence_acc(acc);
      wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < kBK / kInstrK; ++ks) {
        wgmma_s8_m64n128k32(acc, smem_desc(a_start(st, wg, ks)), smem_desc(b_start(st + kATileBytes, ks)));
      }
      wgmma_commit();
      // the stage block kb - 1 used: free, as the barrier above followed every warpgroup's wait for it
      if (kb + kAhead < kb1) load(kb + kAhead);
      cp_async_commit();
      wgmma_wait<0>();
      fence_acc(acc);
    }
    __syncthreads();  // no warpgroup still reads a stage the next row tile's copies refill

#pragma unroll
    for (int r = 0; r < kAccRegs; ++r) {
      int8_tc_store(acc[r], m0 + wg * kWgRows + acc_row(t, r), n0 + acc_col(t, r), M, N, partial, q_scale, w_scale,
                    bias, y);  // token, feature
    }
  }
#elif defined(__CUDA_ARCH__)
  __trap();  // not the sm_90a image: the glue never launches it here
#endif
}

}  // namespace effdl::gpu
