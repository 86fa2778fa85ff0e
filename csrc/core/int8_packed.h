// int8_linear on prepacked weights, torch-free: the panel layout, the pack,
// the portable micro-kernel and the blocked driver every level shares
// (int8_packed_x86.h holds the AVX2 / AVX-512 / AVX-512 VNNI micro-kernels).
//
// Layout (one for every level, so every level reads the same bytes and gives
// the same int32 sums): wq [N, K] becomes ceil(N/16) panels of 16 output
// columns. Panel p is one row of the packed [ceil(N/16), packed_row_bytes(K)]
// int8 tensor:
//   bytes [64 kk, 64 kk + 64): columns 16p..16p+15, 4 k-bytes each:
//                              byte 4 c + j = wq[16p + c, 4 kk + j]
//   the last 64 bytes:         16 int32 (native byte order), 128 * sum_k wq[16p + c, k]
// Columns past N and k past K hold zeros. One 64-byte group is one zmm register
// (16 int32 lanes x 4 bytes, what vpdpbusd consumes), so a micro-kernel streams
// each panel contiguously and broadcasts 4 activation bytes per group: no
// horizontal sums. The column sums serve the unsigned-activation correction of
// vpdpbusd (see int8_packed_x86.h); levels that multiply signed bytes ignore them.
//
// Exactness: the micro-kernels return sum_k q[i, k] * wq[o, k] exactly. Their
// arithmetic wraps modulo 2^32, and K <= kInt8MaxK keeps the true sum in int32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "int8.h"

namespace effdl::core {

constexpr int64_t kPanelCols = 16;  // output columns per panel
constexpr int64_t kGroupK = 4;      // k-bytes per column per group
constexpr int64_t kGroupBytes = kPanelCols * kGroupK;

inline int64_t packed_panels(int64_t N) { return (N + kPanelCols - 1) / kPanelCols; }
inline int64_t packed_groups(int64_t K) { return (K + kGroupK - 1) / kGroupK; }
// Bytes of one panel: the weight groups, then the 16 int32 column sums.
inline int64_t packed_row_bytes(int64_t K) { return packed_groups(K) * kGroupBytes + kGroupBytes; }

// Panels [p_begin, p_end) of the packing of wq [N, K] (row stride ldw) into packed.
inline void int8_pack_weight_panels(const int8_t* wq, int64_t ldw, int64_t N, int64_t K, int8_t* packed,
                                    int64_t p_begin, int64_t p_end) {
  const int64_t groups = packed_groups(K), row_bytes = packed_row_bytes(K);
  for (int64_t p = p_begin; p < p_end; ++p) {
    int8_t* panel = packed + p * row_bytes;
    int32_t shift[kPanelCols];
    for (int64_t c = 0; c < kPanelCols; ++c) {
      const int64_t o = p * kPanelCols + c;
      int32_t sum = 0;
      for (int64_t kk = 0; kk < groups; ++kk) {
        for (int64_t j = 0; j < kGroupK; ++j) {
          const int64_t k = kk * kGroupK + j;
          const int8_t v = (o < N && k < K) ? wq[o * ldw + k] : int8_t(0);
          panel[kk * kGroupBytes + c * kGroupK + j] = v;
          sum += v;
        }
      }
      shift[c] = 128 * sum;  // |sum| <= 128 * kInt8MaxK, so this fits int32
    }
    std::memcpy(panel + groups * kGroupBytes, shift, sizeof shift);
  }
}

// The 4 activation bytes of group kk of a row of length K, zero past K.
inline int32_t load_group(const int8_t* q, int64_t K, int64_t kk) {
  int32_t v = 0;
  const int64_t k = kk * kGroupK;
  std::memcpy(&v, q + k, size_t(std::min(kGroupK, K - k)));
  return v;
}

// What one micro-kernel call covers along K: groups [g0, g1) of a row of
// length K. `init` (null: start from 0) holds the sums of the groups before g0;
// `last` says g1 is the last group, so the sums come out exact (the VNNI kernel
// then takes its shift back out).
template <int W>
struct KSpan {
  int64_t K, g0, g1;
  const int32_t (*init)[W];
  bool last;
};

// The portable micro-kernel: R rows of q x P panels, plain int32 sums. The
// driver calls Micro::dot<R, P>(q, ldq, span, panel, row_bytes, acc) and reads
// acc[r][16 c + j], column 16 c + j of the P panels (acc may be span.init).
struct PortablePackedMicro {
  static constexpr int kRows = 4;
  static constexpr int kPanels = 2;
  static constexpr int kWidth = kPanels * kPanelCols;

  template <int R, int P>
  static void dot(const int8_t* q, int64_t ldq, const KSpan<kWidth>& span, const int8_t* panel, int64_t row_bytes,
                  int32_t (*acc)[kWidth]) {
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < P * kPanelCols; ++c) acc[r][c] = span.init ? span.init[r][c] : 0;
    for (int64_t kk = span.g0; kk < span.g1; ++kk) {
      int8_t a[R][kGroupK];
      for (int r = 0; r < R; ++r) {
        const int32_t v = load_group(q + r * ldq, span.K, kk);
        std::memcpy(a[r], &v, sizeof v);
      }
      for (int p = 0; p < P; ++p) {
        const int8_t* w = panel + p * row_bytes + kk * kGroupBytes;
        for (int r = 0; r < R; ++r)
          for (int c = 0; c < kPanelCols; ++c) {
            int32_t s = 0;
            for (int j = 0; j < kGroupK; ++j) s += int32_t(a[r][j]) * int32_t(w[c * kGroupK + j]);
            acc[r][p * kPanelCols + c] += s;
          }
      }
    }
  }
};

// The fused epilogue of R rows x the first `cols` columns of a tile: int8_epilogue
// per element, in loops the level's target vectorises (the bias test hoisted).
template <int W, typename Out>
inline void packed_store(const int32_t (*acc)[W], int64_t rows, int64_t cols,
                         const float* q_scale, const float* w_scale, const float* bias, Out* out,
                         int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* a = acc[r];
    const float qs = q_scale[r];
    Out* o = out + r * ldo;
    if (bias) {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) o[c] = int8_epilogue<Out>(a[c], qs, w_scale[c], bias + c);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < cols; ++c) o[c] = int8_epilogue<Out>(a[c], qs, w_scale[c], nullptr);
    }
  }
}

// Micro::dot<R, P> for the run-time counts rows <= R and panels <= P: the
// largest template sizes first, so full tiles take the widest kernel.
template <class Micro, int R, int P>
inline void packed_tile(int64_t rows, int64_t panels, const int8_t* q, int64_t ldq,
                        const KSpan<Micro::kWidth>& span, const int8_t* panel, int64_t row_bytes,
                        int32_t (*acc)[Micro::kWidth]) {
  if constexpr (R > 1) {
    if (rows < R) return packed_tile<Micro, R - 1, P>(rows, panels, q, ldq, span, panel, row_bytes, acc);
  }
  if constexpr (P > 1) {
    if (panels < P) return packed_tile<Micro, R, P - 1>(rows, panels, q, ldq, span, panel, row_bytes, acc);
  }
  Micro::template dot<R, P>(q, ldq, span, panel, row_bytes, acc);
}

// Groups of K per block: the block's slab of a panel group (at most 4 panels x
// 64 groups x 64 bytes = 16 KB) stays in L1 while every row of q passes.
constexpr int64_t kBlockGroups = 64;

// Output panels [p_begin, p_end) of out[M, N] (row stride ldo):
//   out[i, o] = float(sum_k q[i, k] * wq[o, k]) * q_scale[i] * w_scale[o] + bias[o]
// with wq given as its packing. Blocking: for each group of Micro::kPanels
// panels and each block of kBlockGroups groups of K, every block of
// Micro::kRows rows of q adds its partial sums (kept per row of q between
// blocks of K) and the last block of K writes the output through the epilogue.
template <class Micro, typename Out>
void int8_linear_packed_run(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M, int64_t K,
                            const int8_t* packed, int64_t N, const float* w_scale, const float* bias,
                            Out* out, int64_t ldo, int64_t p_begin, int64_t p_end) {
  constexpr int kR = Micro::kRows, kP = Micro::kPanels, kW = Micro::kWidth;
  using Rows = int32_t (*)[kW];
  const int64_t row_bytes = packed_row_bytes(K), groups = packed_groups(K);
  const int64_t blocks = std::max<int64_t>(1, (groups + kBlockGroups - 1) / kBlockGroups);
  std::vector<int32_t> partial(blocks > 1 ? size_t(M) * kW : 0);  // the sums so far, [M][kW]
  int32_t acc[kR][kW];
  for (int64_t p = p_begin; p < p_end; p += kP) {
    const int64_t panels = std::min<int64_t>(kP, p_end - p);
    const int8_t* panel = packed + p * row_bytes;
    const int64_t o = p * kPanelCols;
    const int64_t cols = std::min<int64_t>(panels * kPanelCols, N - o);
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t g0 = b * kBlockGroups, g1 = std::min(groups, g0 + kBlockGroups);
      for (int64_t i = 0; i < M; i += kR) {
        const int64_t rows = std::min<int64_t>(kR, M - i);
        const Rows sums = blocks > 1 ? reinterpret_cast<Rows>(partial.data() + i * kW) : acc;
        const KSpan<kW> span{K, g0, g1, b > 0 ? sums : nullptr, b == blocks - 1};
        packed_tile<Micro, kR, kP>(rows, panels, q + i * ldq, ldq, span, panel, row_bytes, sums);
        if (span.last)
          packed_store<kW, Out>(sums, rows, cols, q_scale + i, w_scale + o, bias ? bias + o : nullptr,
                                out + i * ldo + o, ldo);
      }
    }
  }
}

// The portable level's entry (and the contract of every level's):
// panels [p_begin, p_end) of int8_linear on packed weights.
template <typename Out>
void int8_linear_packed_block(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M, int64_t K,
                              const int8_t* packed, int64_t N, const float* w_scale, const float* bias,
                              Out* out, int64_t ldo, int64_t p_begin, int64_t p_end) {
  int8_linear_packed_run<PortablePackedMicro, Out>(q, ldq, q_scale, M, K, packed, N, w_scale, bias, out, ldo,
                                                   p_begin, p_end);
}

}  // namespace effdl::core
