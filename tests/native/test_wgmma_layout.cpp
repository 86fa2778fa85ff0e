// csrc/cuda/wgmma_layout.h: the index maps of the Hopper int8_linear kernel
// (int8_wgmma_kernels.cuh), run on the CPU against an emulation of
// wgmma.mma_async m64nNk32 .s32.s8.s8 written from the PTX ISA text
// (independently of the header):
//   - shared-memory matrix descriptor: bits [0, 14) start address >> 4,
//     [16, 30) leading-dimension byte offset >> 4, [32, 46) stride-dimension
//     byte offset >> 4, [49, 52) base offset (with a swizzle: (start >> 7) % 8,
//     nonzero when the start is not at a row 0 of the 1024-byte pattern),
//     [62, 64) swizzle mode (0 none, 1 128-byte, 2 64-byte, 3 32-byte);
//   - canonical K-major layouts of 8-bit operands, element (row, k) of the
//     operand (row < 64 for A, < N for B; k < 32 bytes):
//       no swizzle: core matrices of 8 rows x 16 bytes (128 contiguous bytes),
//         at start + (row / 8) * SBO + (k / 16) * LBO + (row % 8) * 16 + k % 16;
//       128-byte swizzle: start + (row / 8) * SBO + (row % 8) * 128 + k, then
//         address bits [4, 7) XOR bits [7, 10);
//     the other modes are not emulated (the replay flags them);
//   - accumulator fragment of a warpgroup (thread t, warp w = t / 32, lane l,
//     g = l / 4, c = l % 4): d[4 i + j] = D[16 w + g + 8 (j / 2)][8 i + 2 c + j % 2].
// The kernel's block algorithm (cp.async staging into the swizzled stages with
// zero fill, the descriptors of each warpgroup and K step, the accumulator
// walk of the epilogue, split-K ranges, the stage schedule) is replayed
// through the header's maps over ragged problems and must reproduce the plain
// int32 matmul exactly; the same replay with each map mutated must not. What
// this cannot show: that the PTX text is read right (the descriptor fields and
// the swizzle are the assumptions to check first on a GPU), proxy fences and
// barriers, timing; the cuda-marked tests (EFFDL_CUDA_WGMMA=1) do.
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <vector>

#include "check.h"
#include "cuda/wgmma_layout.h"

using namespace effdl;

namespace {

using Rng = std::mt19937_64;
inline size_t sz(int64_t v) { return static_cast<size_t>(v); }
constexpr int kPoison = 1000;

// ---------------------------------------------------------------- instruction emulation (PTX ISA)

// Shared memory as absolute byte addresses; kPoison marks bytes no copy wrote.
struct Smem {
  std::vector<int> bytes;
  bool poison_read = false, out_of_range = false, bad_descriptor = false;
  explicit Smem(size_t n) : bytes(n, kPoison) {}
  int read(uint64_t addr) {
    if (addr >= bytes.size()) {
      out_of_range = true;
      return 0;
    }
    const int v = bytes[sz(int64_t(addr))];
    if (v == kPoison) poison_read = true;
    return v;
  }
};

// Address of byte k of row `row` of a K-major 8-bit operand described by desc.
uint64_t operand_address(uint64_t desc, int row, int k, Smem& mem) {
  const uint64_t start = (desc & 0x3FFFu) << 4, lbo = ((desc >> 16) & 0x3FFFu) << 4;
  const uint64_t sbo = ((desc >> 32) & 0x3FFFu) << 4, base_offset = (desc >> 49) & 7u, mode = desc >> 62;
  // with a swizzle, the base offset is (start >> 7) % 8: the start's row inside its 1024-byte atom
  if (mode != 0 && base_offset != ((start >> 7) & 7u)) mem.bad_descriptor = true;
  const uint64_t r8 = uint64_t(row / 8), r = uint64_t(row % 8), kk = uint64_t(k);
  if (mode == 0) return start + r8 * sbo + (kk / 16) * lbo + r * 16 + kk % 16;
  if (mode == 1) {
    const uint64_t a = start + r8 * sbo + r * 128 + kk;
    return a ^ (((a >> 7) & 7u) << 4);
  }
  mem.bad_descriptor = true;
  return 0;
}

// d (128 threads x N / 2 registers) += A (64 x 32) * B (32 x N) for
// wgmma.mma_async.m64nNk32.s32.s8.s8 with both operands K-major in shared memory.
void wgmma_s8_emulate(uint64_t desc_a, uint64_t desc_b, int n, Smem& mem, std::vector<std::vector<int64_t>>& d) {
  std::vector<int64_t> A(sz(64 * 32)), B(sz(int64_t(n) * 32));
  for (int m = 0; m < 64; ++m)
    for (int k = 0; k < 32; ++k) A[sz(m * 32 + k)] = int8_t(mem.read(operand_address(desc_a, m, k, mem)));
  for (int c = 0; c < n; ++c)
    for (int k = 0; k < 32; ++k) B[sz(c * 32 + k)] = int8_t(mem.read(operand_address(desc_b, c, k, mem)));
  for (int t = 0; t < 128; ++t) {
    const int w = t / 32, l = t % 32, g = l / 4, c = l % 4;
    for (int i = 0; i < n / 8; ++i)
      for (int j = 0; j < 4; ++j) {
        const int row = 16 * w + g + 8 * (j / 2), col = 8 * i + 2 * c + j % 2;
        int64_t s = 0;
        for (int k = 0; k < 32; ++k) s += A[sz(row * 32 + k)] * B[sz(col * 32 + k)];
        d[sz(t)][sz(4 * i + j)] += s;
      }
  }
}

// ---------------------------------------------------------------- the kernel's maps, mutable

struct Maps {
  int (*stage_row)(int, int) = wgmma::stage_row;
  int (*stage_chunk)(int, int) = wgmma::stage_chunk;
  uint32_t (*swizzle)(int, int) = wgmma::sw128_offset;
  uint64_t (*desc)(uint32_t) = wgmma::smem_desc;
  uint32_t (*a_start)(uint32_t, int, int) = wgmma::a_start;
  uint32_t (*b_start)(uint32_t, int) = wgmma::b_start;
  int (*acc_row)(int, int) = wgmma::acc_row;
  int (*acc_col)(int, int) = wgmma::acc_col;
};

struct Outcome {
  std::vector<int64_t> y;
  std::vector<int> writes;
  bool poison_read = false, out_of_range = false, bad_descriptor = false, stage_overflow = false;
};

// y[M, N] = q[M, K] @ wq[N, K].T through int8_linear_wgmma_kernel's block
// algorithm, dynamic shared memory starting at byte `raw`; split-K partial
// sums added in split order.
Outcome wgmma_replay(const Maps& mp, const std::vector<int8_t>& q, const std::vector<int8_t>& wq, int64_t M,
                     int64_t N, int64_t K, int64_t per, uint32_t raw) {
  using namespace wgmma;
  Outcome out;
  out.y.assign(sz(M * N), 0);
  out.writes.assign(sz(M * N), 0);
  Smem mem(raw + uint32_t(kSmemBytes));
  const uint32_t base = raw + atom_pad(raw);
  if (base + uint32_t(kStages * kStageBytes) > raw + uint32_t(kSmemBytes)) out.stage_overflow = true;
  const int64_t kblocks = (K + kBK - 1) / kBK;
  auto stage_tile = [&](uint32_t tile, const std::vector<int8_t>& src, int64_t rows, int rows_tile, int64_t r0,
                        int64_t k0) {
    for (int tid = 0; tid < kThreads; ++tid)
      for (int it = 0; it < stage_iters(rows_tile); ++it) {
        const int r = mp.stage_row(tid, it), c = mp.stage_chunk(tid, it);
        const int64_t col = k0 + 16 * c;
        const bool ok = r0 + r < rows && col < K;
        for (int u = 0; u < 16; ++u) {
          const uint64_t a = uint64_t(tile) + mp.swizzle(r, 16 * c) + uint64_t(u);
          if (a >= mem.bytes.size()) {
            out.out_of_range = true;
            continue;
          }
          mem.bytes[sz(int64_t(a))] = ok ? src[sz((r0 + r) * K + col + u)] : 0;
        }
      }
  };
  for (int64_t kb0 = 0; kb0 < kblocks; kb0 += per)  // one split at a time (grid z)
    for (int64_t n0 = 0; n0 < N; n0 += kTileN)
      for (int64_t m0 = 0; m0 < M; m0 += kTileM) {
        std::vector<std::vector<int64_t>> acc[kWarpgroups];
        for (auto& a : acc) a.assign(128, std::vector<int64_t>(sz(kAccRegs), 0));
        for (int64_t kb = kb0; kb < std::min(kblocks, kb0 + per); ++kb) {
          const uint32_t st = base + uint32_t(stage_of(kb, kb0) * kStageBytes);
          // stale bytes of an earlier block must not stand in for a copy that never happened
          std::fill(mem.bytes.begin() + st, mem.bytes.begin() + st + kStageBytes, kPoison);
          stage_tile(st, q, M, kTileM, m0, kb * kBK);
          stage_tile(st + uint32_t(kATileBytes), wq, N, kTileN, n0, kb * kBK);
          for (int wg = 0; wg < kWarpgroups; ++wg)
            for (int ks = 0; ks < kBK / kInstrK; ++ks)
              wgmma_s8_emulate(mp.desc(mp.a_start(st, wg, ks)), mp.desc(mp.b_start(st + uint32_t(kATileBytes), ks)),
                               kTileN, mem, acc[wg]);
        }
        for (int wg = 0; wg < kWarpgroups; ++wg)
          for (int t = 0; t < 128; ++t)
            for (int r = 0; r < kAccRegs; ++r) {
              const int64_t tk = m0 + wg * kWgRows + mp.acc_row(t, r), o = n0 + mp.acc_col(t, r);
              if (tk < M && o < N) {
                out.y[sz(tk * N + o)] += acc[wg][sz(t)][sz(r)];
                ++out.writes[sz(tk * N + o)];
              }
            }
      }
  out.poison_read = mem.poison_read;
  out.out_of_range = out.out_of_range || mem.out_of_range;
  out.bad_descriptor = mem.bad_descriptor;
  return out;
}

struct Problem {
  int64_t M, N, K, per;
  std::vector<int8_t> q, wq;
  std::vector<int64_t> want;
};

Problem make_problem(Rng& rng, int64_t M, int64_t N, int64_t K, int64_t per) {
  Problem p{M, N, K, per, std::vector<int8_t>(sz(M * K)), std::vector<int8_t>(sz(N * K)), {}};
  std::uniform_int_distribution<int> val(-128, 127);
  for (auto& v : p.q) v = int8_t(val(rng));
  for (auto& v : p.wq) v = int8_t(val(rng));
  p.want.assign(sz(M * N), 0);
  for (int64_t t = 0; t < M; ++t)
    for (int64_t o = 0; o < N; ++o) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int64_t(p.q[sz(t * K + k)]) * int64_t(p.wq[sz(o * K + k)]);
      p.want[sz(t * N + o)] = s;
    }
  return p;
}

// Whether the replay reproduced the product: every output written once per
// split, no poisoned or out-of-range read, every value right.
bool replay_right(const Problem& p, const Outcome& o, long& bad_values) {
  const int64_t splits = ((p.K + wgmma::kBK - 1) / wgmma::kBK + p.per - 1) / p.per;
  bool ok = !o.poison_read && !o.out_of_range && !o.bad_descriptor && !o.stage_overflow;
  for (int w : o.writes) ok = ok && w == splits;
  bad_values = 0;
  for (size_t i = 0; i < p.want.size(); ++i) bad_values += o.y[i] != p.want[i] ? 1 : 0;
  return ok && bad_values == 0;
}

// ---------------------------------------------------------------- map properties

void test_staging_covers_each_chunk_once() {
  using namespace wgmma;
  for (int rows : {kTileM, kTileN}) {
    std::vector<int> seen(sz(rows * kChunksPerRow), 0);
    std::set<uint32_t> offsets;
    for (int tid = 0; tid < kThreads; ++tid)
      for (int it = 0; it < stage_iters(rows); ++it) {
        const int r = stage_row(tid, it), c = stage_chunk(tid, it);
        CHECK(r >= 0 && r < rows && c >= 0 && c < kChunksPerRow);
        if (r >= 0 && r < rows && c >= 0 && c < kChunksPerRow) ++seen[sz(r * kChunksPerRow + c)];
        const uint32_t off = sw128_offset(r, 16 * c);
        CHECK(off % 16 == 0 && off + 16 <= uint32_t(rows * kRowBytes));  // inside the tile, whole chunks
        offsets.insert(off);
      }
    for (int s : seen) CHECK(s == 1);
    CHECK(offsets.size() == sz(rows * kChunksPerRow));  // the swizzle is a bijection on the tile
  }
  // eight threads copy one row: its chunks land in distinct 16-byte bank groups of a 128-byte line
  for (int r = 0; r < 16; ++r) {
    std::set<uint32_t> groups;
    for (int c = 0; c < kChunksPerRow; ++c) groups.insert((sw128_offset(r, 16 * c) / 16) % 8);
    CHECK(groups.size() == 8);
  }
}

void test_alignment_and_descriptor_fields() {
  using namespace wgmma;
  for (uint32_t raw = 0; raw < 4096; raw += 16) {
    const uint32_t base = raw + atom_pad(raw);
    CHECK(base % kAtomBytes == 0 && base >= raw && base + uint32_t(kStages * kStageBytes) <= raw + kSmemBytes);
  }
  CHECK(kSmemBytes <= 227 * 1024);  // the most dynamic shared memory an sm_90 block may use
  const uint64_t d = smem_desc(0x12340u);
  CHECK((d & 0x3FFFu) == (0x12340u >> 4));
  CHECK(((d >> 32) & 0x3FFFu) == kSbo / 16 && (d >> 62) == 1 && ((d >> 49) & 7u) == 0);
  CHECK(((d >> 14) & 3u) == 0 && ((d >> 30) & 3u) == 0 && ((d >> 46) & 0xFFFFu) == 0);  // reserved bits clear
}

// The commit/wait counting of the kernel's loop: before block kb's wgmma the
// groups of blocks up to kb have completed once at most kPendingCopies are in
// flight, and the copy issued then never lands in a stage whose block is not
// yet consumed.
void test_pipeline_schedule() {
  using namespace wgmma;
  for (int64_t blocks = 1; blocks <= 9; ++blocks) {
    const int64_t kb0 = 3, kb1 = kb0 + blocks;
    std::vector<int64_t> groups;  // the block of each commit group (-1: empty)
    std::vector<int64_t> holds(kStages, -1);  // the block each stage holds (-1: none yet)
    // a copy may only refill a stage whose block's wgmma has been waited for (blocks <= done)
    auto issue = [&](int64_t kb, int64_t done) {
      const int s = stage_of(kb, kb0);
      CHECK_MSG(holds[sz(s)] <= done, "block %lld refills stage %d while block %lld is still read",
                (long long)kb, s, (long long)holds[sz(s)]);
      holds[sz(s)] = kb;
    };
    for (int s = 0; s < kAhead; ++s) {
      if (kb0 + s < kb1) issue(kb0 + s, kb0 - 1);
      groups.push_back(kb0 + s < kb1 ? kb0 + s : -1);
    }
    for (int64_t kb = kb0; kb < kb1; ++kb) {
      const size_t complete = groups.size() - size_t(kPendingCopies);  // groups complete after the wait
      bool landed = false;
      for (size_t g = 0; g < complete; ++g) landed = landed || groups[g] == kb;
      CHECK_MSG(landed, "block %lld read before its copies completed", (long long)kb);
      CHECK(holds[sz(stage_of(kb, kb0))] == kb);
      // the copy is issued while block kb's wgmma group is in flight: kb itself is not done
      if (kb + kAhead < kb1) issue(kb + kAhead, kb - 1);
      groups.push_back(kb + kAhead < kb1 ? kb + kAhead : -1);
    }
  }
}

// ---------------------------------------------------------------- mutated maps

uint32_t mut_swizzle_none(int r, int b) { return uint32_t(r * 128 + b); }
uint32_t mut_swizzle_shift(int r, int b) {
  return uint32_t(r) * 128u + ((uint32_t((b >> 4) ^ ((r >> 1) & 7)) << 4) | uint32_t(b & 15));
}
uint64_t mut_desc_sbo(uint32_t a) {
  return (wgmma::smem_desc(a) & ~(uint64_t(0x3FFF) << 32)) | uint64_t(512 >> 4) << 32;
}
uint64_t mut_desc_noswizzle(uint32_t a) { return wgmma::smem_desc(a) & ~(uint64_t(3) << 62); }
uint64_t mut_desc_64b(uint32_t a) { return (wgmma::smem_desc(a) & ~(uint64_t(3) << 62)) | uint64_t(2) << 62; }
uint32_t mut_a_start_k16(uint32_t base, int wg, int ks) { return base + uint32_t(wg * 64 * 128 + ks * 16); }
uint32_t mut_a_start_wg(uint32_t base, int wg, int ks) { return base + uint32_t(wg * 32 * 128 + ks * 32); }
uint32_t mut_b_start_k(uint32_t base, int ks) { return base + uint32_t((3 - ks) * 32); }
uint32_t mut_b_start_row(uint32_t base, int ks) { return base + uint32_t(ks * 32 + 128); }
int mut_acc_row(int t, int r) { return 16 * (t >> 5) + ((t & 31) >> 2) + 8 * (r & 1); }
int mut_acc_col(int t, int r) { return 8 * (r >> 2) + 2 * (t & 3) + ((r >> 1) & 1); }
int mut_acc_col_lane(int t, int r) { return 8 * (r >> 2) + ((t & 31) >> 2) % 4 * 2 + (r & 1); }
int mut_stage_chunk(int tid, int it) { return (tid + it * wgmma::kThreads) % 4; }
int mut_stage_row(int tid, int it) { return ((tid + it * wgmma::kThreads) / 8) % 64; }

void test_mutations_fail(Rng& rng) {
  // two row tiles, two column tiles (ragged), three K blocks (the last one partial)
  const Problem p = make_problem(rng, 130, 136, 336, 3);
  struct Case {
    const char* name;
    Maps maps;
  };
  std::vector<Case> cases;
  auto add = [&](const char* name, auto&& edit) {
    Maps m;
    edit(m);
    cases.push_back({name, m});
  };
  add("no swizzle in the staging", [](Maps& m) { m.swizzle = mut_swizzle_none; });
  add("swizzle on the wrong row bits", [](Maps& m) { m.swizzle = mut_swizzle_shift; });
  add("stride byte offset 512", [](Maps& m) { m.desc = mut_desc_sbo; });
  add("descriptor without swizzle", [](Maps& m) { m.desc = mut_desc_noswizzle; });
  add("descriptor with the 64-byte swizzle", [](Maps& m) { m.desc = mut_desc_64b; });
  add("A K step of 16 bytes", [](Maps& m) { m.a_start = mut_a_start_k16; });
  add("A warpgroup offset of 32 rows", [](Maps& m) { m.a_start = mut_a_start_wg; });
  add("B K steps reversed", [](Maps& m) { m.b_start = mut_b_start_k; });
  add("B starting one row in", [](Maps& m) { m.b_start = mut_b_start_row; });
  add("accumulator row bit", [](Maps& m) { m.acc_row = mut_acc_row; });
  add("accumulator column bit", [](Maps& m) { m.acc_col = mut_acc_col; });
  add("accumulator column from the lane's row", [](Maps& m) { m.acc_col = mut_acc_col_lane; });
  add("staging chunk", [](Maps& m) { m.stage_chunk = mut_stage_chunk; });
  add("staging row", [](Maps& m) { m.stage_row = mut_stage_row; });
  long bad = 0;
  const Outcome good = wgmma_replay(Maps{}, p.q, p.wq, p.M, p.N, p.K, p.per, 0x230);
  CHECK_MSG(replay_right(p, good, bad), "unmutated maps: %ld wrong outputs", bad);
  for (const Case& c : cases) {
    const Outcome o = wgmma_replay(c.maps, p.q, p.wq, p.M, p.N, p.K, p.per, 0x230);
    CHECK_MSG(!replay_right(p, o, bad), "mutation not caught: %s", c.name);
  }
}

void test_replay(Rng& rng, int64_t M, int64_t N, int64_t K, int64_t per, uint32_t raw) {
  const Problem p = make_problem(rng, M, N, K, per);
  const Outcome o = wgmma_replay(Maps{}, p.q, p.wq, M, N, K, per, raw);
  long bad = 0;
  CHECK_MSG(replay_right(p, o, bad),
            "wgmma M=%lld N=%lld K=%lld per=%lld raw=%u: %ld wrong outputs (poison %d, range %d, descriptor %d)",
            (long long)M, (long long)N, (long long)K, (long long)per, raw, bad, int(o.poison_read),
            int(o.out_of_range), int(o.bad_descriptor));
}

}  // namespace

int main() {
  test_staging_covers_each_chunk_once();
  test_alignment_and_descriptor_fields();
  test_pipeline_schedule();
  Rng rng(11);
  // (M, N, K, K blocks per split, dynamic shared memory start): ragged M and N (tails of the
  // 128 x 128 tile, of a warpgroup's 64 rows and of the n8 column groups), K a multiple of 16
  // but not of the 128-byte block (zero-filled chunks), split-K with a short last range, and
  // shared memory starting off the 1024-byte atom
  const int64_t shapes[][5] = {{128, 128, 128, 1, 0},   {1, 8, 16, 1, 16},      {130, 72, 112, 1, 0x400},
                               {257, 129, 208, 2, 48},  {64, 300, 400, 4, 0x3F0}, {200, 40, 656, 2, 0x230},
                               {129, 1, 32, 1, 1008}};
  for (const auto& s : shapes) test_replay(rng, s[0], s[1], s[2], s[3], uint32_t(s[4]));
  test_mutations_fail(rng);
  return effdl_test::finish("test_wgmma_layout");
}
