// Index maps of the tensor-core kernels, torch-free and CUDA-free, so the same
// functions drive the kernels (nm_tc_kernels.cuh, int8_tc_kernels.cuh) and their CPU emulation test
// (tests/native/test_mma_layout.cpp), which checks them against the fragment
// semantics of the PTX ISA and the dense product.
//
// Three instructions, all with 16 x 8 output tiles:
//   mma.sp m16n8k32 (fp16/bf16, A 2:4-sparse): A = the weight tile [16 rows of
//     W, 32 dense columns stored as 16 kept values], B = x^T, D = y^T.
//   mma m16n8k32 s8: A = q [16 rows, 32], B = wq^T, D = y.
//   mma.sp m16n8k64 s8 (A 2:4-sparse): A = the int8 weight tile [16 rows, 64
//     dense columns stored as 32 kept bytes], B = q^T, D = y^T.
// Fragments are read from shared memory with ldmatrix.x4 (four 8 x 8 matrices
// of 16-bit units; lane l supplies the row address of matrix l / 8, row l % 8,
// and receives in register j the units (l / 4, 2 (l % 4) + {0, 1}) of matrix j).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define EFFDL_HD __host__ __device__ __forceinline__
#else
#define EFFDL_HD inline
#endif

namespace effdl::mma {

// ---------------------------------------------------------------- 2:4 metadata
//
// Canonical meta (core/nm_format.h) holds the keep-mask bit of column c at byte
// c / 8, bit c % 8, so a group of four columns is one nibble and 16 consecutive
// columns are one little-endian 16-bit word. mma.sp wants, per group, the two
// kept positions as 2-bit indices, the lower one in the lower bits (ascending,
// as the kept values are stored and as .sp::ordered_metadata requires). The
// reorder is therefore nibble-wise: mask -> idx0 | idx1 << 2.

// Indices of the two set bits of a 4-bit mask with exactly two bits; any other
// mask gives 0b0100 (columns 0 and 1), a valid encoding, so the instruction
// never sees the undefined values 0b0000, 0b0101, 0b1010, 0b1111 even for
// corrupt meta (which the glue rejects after the launch).
constexpr uint32_t nm24_index_nibble_of(uint32_t mask) {
  uint32_t idx[2] = {0, 1};
  int found = 0;
  for (uint32_t i = 0; i < 4; ++i) {
    if (((mask >> i) & 1u) != 0u) {
      if (found < 2) idx[found] = i;
      ++found;
    }
  }
  return found == 2 ? (idx[0] | idx[1] << 2) : 0x4u;
}

// The 16 answers of nm24_index_nibble_of, entry `mask` at bits 4 mask .. 4 mask + 3.
constexpr uint64_t nm24_nibble_table() {
  uint64_t t = 0;
  for (uint32_t m = 0; m < 16; ++m) t |= uint64_t(nm24_index_nibble_of(m)) << (4 * m);
  return t;
}
constexpr uint64_t kNm24NibbleTable = nm24_nibble_table();

// 16 canonical meta bits (four groups) -> the 16 mma.sp metadata bits of those groups.
EFFDL_HD uint32_t nm24_meta16(uint32_t canonical16) {
  uint32_t out = 0;
  for (int g = 0; g < 4; ++g) {
    const uint32_t mask = (canonical16 >> (4 * g)) & 0xFu;
    out |= uint32_t((kNm24NibbleTable >> (4 * mask)) & 0xFu) << (4 * g);
  }
  return out;
}

// mma.sp m16n8k32 with 16-bit types, sparsity selector 0: lane 4 g + h (h = 0, 1)
// supplies the metadata of dense columns 16 h .. 16 h + 15 of the step, bits
// 0..15 for tile row g and bits 16..31 for row g + 8; lanes with h >= 2 are not
// read. sp_meta_half(lane) is the h a lane fills (lanes 2, 3 of a quad repeat
// 0, 1 so that every lane's load stays inside its row).
EFFDL_HD int sp_meta_half(int lane) { return lane & 1; }
EFFDL_HD int sp_meta_row(int lane) { return lane >> 2; }  // rows sp_meta_row and sp_meta_row + 8
EFFDL_HD uint32_t sp_meta_word(uint32_t canonical16_row, uint32_t canonical16_row_plus8) {
  return nm24_meta16(canonical16_row) | nm24_meta16(canonical16_row_plus8) << 16;
}

// mma.sp m16n8k64 with 8-bit types (sparsity selector 0): every lane supplies
// metadata. Lane 4 g + h covers dense columns 16 h .. 16 h + 15 of the step,
// bits 0..15 for tile row g and bits 16..31 for row g + 8 (the 16-bit types'
// layout with all four lanes of a quad, one per 16 columns). The metadata word
// itself is sp_meta_word, as for 16-bit types.
EFFDL_HD int sp8_meta_quarter(int lane) { return lane & 3; }

// ---------------------------------------------------------------- ldmatrix.x4 addressing
//
// Row and column (in 16-bit units) inside a fragment tile of the address lane
// `lane` supplies to ldmatrix.x4.

// A fragment, 16 rows x 16 units: matrices (rows 0-7, units 0-7), (8-15, 0-7),
// (0-7, 8-15), (8-15, 8-15) = registers a0..a3 of the fp16 mma.sp A (16 kept
// values = 32 dense columns), the s8 mma A (32 bytes) and the s8 mma.sp A (32
// kept bytes = 64 dense columns).
EFFDL_HD int ldsm_a_row(int lane) { return (lane & 7) + ((lane >> 3) & 1) * 8; }
EFFDL_HD int ldsm_a_unit(int lane) { return (lane >> 4) * 8; }

// fp16 B fragment of one n8 tile for K = 32: x stored [n][k], matrices at
// units 0, 8, 16, 24 = registers b0..b3 (k = 2 t + {0,1} + 8 j, n = g). The
// same addresses give the s8 mma.sp B of one n8 tile for K = 64 bytes
// (k = 4 t + {0..3} + 16 j).
EFFDL_HD int ldsm_b16_row(int lane) { return lane & 7; }
EFFDL_HD int ldsm_b16_unit(int lane) { return (lane >> 3) * 8; }

// s8 B fragments of two n8 tiles for K = 32 bytes: wq stored [n][k], matrices
// (tile 0, bytes 0-15), (tile 0, 16-31), (tile 1, 0-15), (tile 1, 16-31) =
// b0, b1 of tile 0 and b0, b1 of tile 1.
EFFDL_HD int ldsm_b8_row(int lane) { return (lane & 7) + (lane >> 4) * 8; }
EFFDL_HD int ldsm_b8_unit(int lane) { return ((lane >> 3) & 1) * 8; }

// ---------------------------------------------------------------- accumulators
//
// Element e (0..3) of a lane's 16 x 8 accumulator fragment (fp32 and s32 alike).
EFFDL_HD int acc_row(int lane, int e) { return (lane >> 2) + (e >> 1) * 8; }
EFFDL_HD int acc_col(int lane, int e) { return (lane & 3) * 2 + (e & 1); }

// ---------------------------------------------------------------- block tiles
//
// Both kernels: 128 threads = 4 warps in 2 x 2, a 64 x 64 output tile per
// block, 32 x 32 per warp (2 m16 x 4 n8 mma tiles), BK dense columns per stage,
// two stages of cp.async. Shared rows are padded by 16 bytes so the eight
// 16-byte rows one ldmatrix matrix reads fall in distinct bank groups.
constexpr int kTileThreads = 128;
constexpr int kTileM = 64;  // A rows per block
constexpr int kTileN = 64;  // B columns per block
constexpr int kWarpM = 32;
constexpr int kWarpN = 32;
EFFDL_HD int warp_m0(int warp) { return (warp & 1) * kWarpM; }
EFFDL_HD int warp_n0(int warp) { return (warp >> 1) * kWarpN; }

// nm 2:4 (A = weight values, B = x): BK = 64 dense columns = 32 kept values =
// 8 meta bytes per row.
constexpr int kNmBK = 64;
constexpr int kNmValStride = kNmBK / 2 + 8;  // 16-bit units per shared values row (80 bytes)
constexpr int kNmXStride = kNmBK + 8;        // 16-bit units per shared x row (144 bytes)
constexpr int kNmMetaStride = kNmBK / 8;     // bytes per shared meta row (unpadded: read a byte at a time)

// nm 2:4 int8 (A = weight values, B = q): BK = 64 dense columns = 32 kept
// bytes = 8 meta bytes per row; rows padded to 48 / 80 bytes (distinct bank
// groups for the eight rows of an ldmatrix matrix).
constexpr int kNmI8BK = 64;
constexpr int kNmI8ValStride = kNmI8BK / 2 + 16;  // bytes per shared values row
constexpr int kNmI8QStride = kNmI8BK + 16;        // bytes per shared q row
constexpr int kNmI8MetaStride = kNmI8BK / 8;      // bytes per shared meta row

// int8 (A = q, B = wq): BK = 64 bytes.
constexpr int kI8BK = 64;
constexpr int kI8Stride = kI8BK + 16;  // bytes per shared row (80)

// Copy plan of a [rows x chunks] tile of 16-byte (or, for meta, 8-byte) chunks
// with kTileThreads threads: thread `tid`, iteration `it` copies chunk
// `tile_chunk(tid, it, chunks)` of row `tile_row(tid, it, chunks)`;
// tile_iters(rows, chunks) iterations cover the tile exactly once.
EFFDL_HD int tile_iters(int rows, int chunks) { return (rows * chunks + kTileThreads - 1) / kTileThreads; }
EFFDL_HD int tile_row(int tid, int it, int chunks) { return (tid + it * kTileThreads) / chunks; }
EFFDL_HD int tile_chunk(int tid, int it, int chunks) { return (tid + it * kTileThreads) % chunks; }

// Split-K plan: when the output tiles alone (`blocks` of them) would leave
// most of the `sms` multiprocessors idle (decode sizes), the K blocks are
// split into `splits` ranges of `per` K blocks (the last one shorter, none
// empty, each at least kMinSplitKBlocks long); block z of the grid's z
// dimension covers K blocks [z * per, min((z + 1) * per, kblocks)) and writes
// its partial sums, which a second kernel adds in a fixed order.
constexpr int64_t kMinSplitKBlocks = 4;
struct SplitK {
  int64_t per, splits;
};
EFFDL_HD SplitK splitk_plan(int64_t kblocks, int64_t blocks, int64_t sms) {
  const int64_t want = blocks > 0 ? (2 * sms + blocks - 1) / blocks : 1;  // blocks for two waves
  const int64_t most = kblocks / kMinSplitKBlocks;
  const int64_t ask = want < most ? want : most;
  if (ask <= 1 || kblocks <= 0) return {kblocks, 1};
  const int64_t per = (kblocks + ask - 1) / ask;
  return {per, (kblocks + per - 1) / per};
}

// K blocks [first, end) of split z (grid z) of a plan with `per` K blocks per
// split over `kblocks` blocks in all.
struct KRange {
  int64_t first, end;
};
EFFDL_HD KRange splitk_range(int64_t z, int64_t per, int64_t kblocks) {
  const int64_t first = z * per;
  return {first, first + per < kblocks ? first + per : kblocks};
}

}  // namespace effdl::mma
