// Index maps of the Hopper int8_linear kernel (int8_wgmma_kernels.cuh), torch-free
// and CUDA-free, so the same functions drive the kernel and its CPU replay in
// tests/native/test_mma_layout.cpp (which emulates wgmma from the PTX ISA text).
//
// The kernel: y = q @ wq^T with A = q (tokens x K, K-major) and B = wq
// (features x K, K-major: wgmma's "B column-major", the only form 8-bit types
// allow). A block of kThreads = 2 warpgroups computes a kTileM x kTileN tile;
// warpgroup wg owns A rows [64 wg, 64 wg + 64) and issues
// wgmma.mma_async.m64n128k32.s32.s8.s8 on them. K goes through kStages
// shared-memory stages of kBK = 128 bytes, staged with 16-byte cp.async
// chunks into the canonical K-major layout with the 128-byte swizzle:
//   row r of a tile is 128 bytes at r * 128 from the tile base, and its
//   16-byte chunk c lies at chunk position c ^ (r % 8) of the row.
// The hardware applies that XOR on address bits [4, 7) ^ [7, 10), so every
// tile base is 1024-byte aligned (8 rows of 128 bytes, one swizzle atom).
#pragma once

#include <cstdint>

#include "mma_layout.h"  // EFFDL_HD

namespace effdl::wgmma {

constexpr int kWarpgroups = 2;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kWgRows = 64;                      // the m of the instruction
constexpr int kTileM = kWgRows * kWarpgroups;    // A rows (tokens) per block
constexpr int kTileN = 128;                      // B rows (features) per block = the instruction's n
constexpr int kBK = 128;                         // K bytes per stage = one swizzled row
constexpr int kInstrK = 32;                      // K bytes per instruction
constexpr int kStages = 4;
constexpr int kRowBytes = kBK;
constexpr int kATileBytes = kTileM * kRowBytes;
constexpr int kBTileBytes = kTileN * kRowBytes;
constexpr int kStageBytes = kATileBytes + kBTileBytes;
constexpr int kAtomBytes = 8 * kRowBytes;  // one 128-byte swizzle atom: the base alignment
// Dynamic shared memory per block: the stages plus the slack that aligns the base.
constexpr int kSmemBytes = kStages * kStageBytes + kAtomBytes;
// The glue takes this kernel only from this many rows on (prefill sizes): below
// it most of a 128-row tile would be zero fill and the mma.sync kernel's 64-row
// tiles waste less.
constexpr int64_t kMinM = 128;
// s32 accumulators per thread: 64 x 128 outputs over 128 threads.
constexpr int kAccRegs = kWgRows * kTileN / 128;

static_assert(kAtomBytes == 1024 && kStageBytes % kAtomBytes == 0 && kATileBytes % kAtomBytes == 0,
              "every tile base stays 1024-byte aligned");
static_assert(kBK % kInstrK == 0 && kRowBytes == 128, "a stage row is one 128-byte swizzle row");

// Dynamic shared memory starts 16-byte aligned: the bytes skipped to reach the
// next 1024-byte boundary (kSmemBytes leaves room for them).
EFFDL_HD uint32_t atom_pad(uint32_t raw) {
  return (uint32_t(kAtomBytes) - raw % uint32_t(kAtomBytes)) % uint32_t(kAtomBytes);
}

// ---------------------------------------------------------------- pipeline
//
// K block kb of a split starting at kb0 lives in stage stage_of(kb, kb0); its
// copies are issued kAhead blocks before its wgmma (one commit group per block,
// empty past the split), so before block kb's wgmma a thread waits until at
// most kPendingCopies groups are in flight. The copy issued at block kb refills
// the stage block kb - 1 used.
constexpr int kAhead = kStages - 1;
constexpr int kPendingCopies = kStages - 2;
EFFDL_HD int stage_of(int64_t kb, int64_t kb0) { return int((kb - kb0) % kStages); }

// ---------------------------------------------------------------- staging (cp.async)
//
// A tile of `rows` rows x 8 chunks: thread tid, iteration it copies chunk
// stage_chunk of row stage_row; stage_iters(rows) iterations cover it exactly
// (rows * 8 is a multiple of kThreads for both tiles).
constexpr int kChunksPerRow = kRowBytes / 16;
EFFDL_HD int stage_iters(int rows) { return rows * kChunksPerRow / kThreads; }
EFFDL_HD int stage_row(int tid, int it) { return (tid + it * kThreads) / kChunksPerRow; }
EFFDL_HD int stage_chunk(int tid, int it) { return (tid + it * kThreads) % kChunksPerRow; }
static_assert(kTileM * kChunksPerRow % kThreads == 0 && kTileN * kChunksPerRow % kThreads == 0, "whole iterations");

// Byte offset, from a 1024-aligned tile base, of byte `byte` (0..127) of row `row`.
EFFDL_HD uint32_t sw128_offset(int row, int byte) {
  return uint32_t(row) * kRowBytes + ((uint32_t((byte >> 4) ^ (row & 7)) << 4) | uint32_t(byte & 15));
}

// ---------------------------------------------------------------- matrix descriptors
//
// 64-bit shared-memory matrix descriptor: bits [0, 14) start address >> 4,
// [16, 30) leading-dimension byte offset >> 4, [32, 46) stride-dimension byte
// offset >> 4, [49, 52) base offset (0: tile bases are 1024-aligned), [62, 64)
// swizzle mode (1 = 128-byte swizzle). K-major with the 128-byte swizzle: the
// stride byte offset is the distance between consecutive groups of 8 rows
// (8 x 128 bytes); the leading byte offset is not used (one instruction's 32
// K bytes lie inside one swizzled row) and is set to 16 as CUTLASS does.
constexpr uint32_t kSbo = 8 * kRowBytes;
constexpr uint32_t kLbo = 16;
constexpr uint64_t kSwizzle128B = 1;
EFFDL_HD uint64_t smem_desc(uint32_t start) {
  return uint64_t((start & 0x3FFFFu) >> 4) | uint64_t(kLbo >> 4) << 16 | uint64_t(kSbo >> 4) << 32 |
         kSwizzle128B << 62;
}
// Start address of warpgroup wg's A operand for K step ks (0..3) of a stage
// whose A tile starts at a_base; of the (shared) B operand likewise. A start
// 32 bytes into a row is how K advances inside the swizzle atom: the hardware
// adds the row and chunk offsets to it, then swizzles the sum.
EFFDL_HD uint32_t a_start(uint32_t a_base, int wg, int ks) {
  return a_base + uint32_t(wg * kWgRows * kRowBytes + ks * kInstrK);
}
EFFDL_HD uint32_t b_start(uint32_t b_base, int ks) { return b_base + uint32_t(ks * kInstrK); }

// ---------------------------------------------------------------- accumulators
//
// Register r (0..kAccRegs-1) of thread t (0..127) of a warpgroup holds D[row][col]
// of its 64 x 128 tile: warp t / 32 owns rows 16 (t / 32) .. + 15; within it the
// m16n8 accumulator layout repeats over the 16 n8 column groups (r / 4).
EFFDL_HD int acc_row(int t, int r) { return 16 * (t >> 5) + ((t & 31) >> 2) + 8 * ((r >> 1) & 1); }
EFFDL_HD int acc_col(int t, int r) { return 8 * (r >> 2) + 2 * (t & 3) + (r & 1); }

}  // namespace effdl::wgmma
