// N:M-sparse int8 linear, torch-free:
//   out[i, o] = float(sum_k q[i, k] * W[o, k]) * q_scale[i] * w_scale[o] + bias[o]
// with W int8 [N, K] in nm_format.h storage (values int8 [N, K*n/m] + meta).
// Only the kept weights are multiplied (M * N * K * n / m products) and their
// sum is exact in int32 — the caller keeps K*n/m <= kInt8MaxK (int8.h).
//
// Two paths, chosen by the number of input rows M, as in nm_linear.h:
//   gather (M <= kNmInt8GatherMaxRows): a weight row's mask is decoded once and
//     its kept values widened to int16; for each input row the activations at
//     the kept columns are gathered into int16 and dotted with them, an int16
//     dot product with int32 sums (vpmaddwd; vpdpwssd where VNNI exists).
//   packed (larger M): q is transposed once into fp32 qt[K, ld]; each kept
//     weight then updates a strip of outputs with fp32 multiply-adds. This is
//     exact: every product is an integer of magnitude <= 2^14, and summing at
//     most kNmInt8ExactChunk = 1024 of them keeps every partial sum an integer
//     of magnitude <= 2^24, which fp32 holds exactly — no rounding happens, in
//     any order or with FMA. Each chunk's sum then goes into an int32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dtype.h"
#include "int8.h"
#include "nm_format.h"
#include "nm_linear.h"

namespace effdl::core {

constexpr int64_t kNmInt8GatherMaxRows = 4;
constexpr int64_t kNmInt8ExactChunk = 1024;  // 1024 * 2^14 = 2^24

// Whether nm_int8_linear_block reads the packed qt (else q) for M rows of q.
inline bool nm_int8_reads_qt(int64_t M) { return M > kNmInt8GatherMaxRows; }

// qt[K, nm_xt_stride(M)] = q[M, K].T as fp32 (exact), zero past row M: the
// layout of nm_linear.h's xt. Rows [k_begin, k_end) of qt.
inline void nm_int8_pack_q_transposed(const int8_t* q, int64_t ldq, int64_t M, int64_t k_begin,
                                      int64_t k_end, float* qt) {
  const int64_t ld = nm_xt_stride(M);
  for (int64_t k = k_begin; k < k_end; ++k) {
    float* row = qt + k * ld;
    for (int64_t i = 0; i < M; ++i) row[i] = float(q[i * ldq + k]);
    for (int64_t i = M; i < ld; ++i) row[i] = 0.f;
  }
}

// Output columns [o_begin, o_end) of out[M, N] (row stride ldo). `qt` is the
// packed q when M > kNmInt8GatherMaxRows, else null and q (row stride ldq) is
// read directly. `bias` (fp32) may be null. Returns false if some row of meta
// is not a valid N:M mask.
template <typename Out>
bool nm_int8_linear_block(const int8_t* q, int64_t ldq, const float* qt, const float* q_scale,
                          int64_t M, int64_t K, const int8_t* values, const uint8_t* meta, int n,
                          int m, const float* w_scale, const float* bias, Out* out, int64_t ldo,
                          int64_t o_begin, int64_t o_end) {
  const int64_t kept = nm_kept(K, n, m);
  const int64_t meta_bytes = nm_meta_bytes(K);
  const size_t buf = size_t(std::max<int64_t>(kept, 1));
  std::vector<int32_t> cols(buf);
  std::vector<int16_t> w16(qt ? 0 : buf), g16(qt ? 0 : buf);
  std::vector<float> wf(qt ? buf : 0);
  for (int64_t o = o_begin; o < o_end; ++o) {
    if (!nm_decode_row(meta + o * meta_bytes, K, n, m, cols.data())) return false;
    const int8_t* vrow = values + o * kept;
    if (qt == nullptr) {
      for (int64_t j = 0; j < kept; ++j) w16[j] = vrow[j];
      for (int64_t i = 0; i < M; ++i) {
        const int8_t* qr = q + i * ldq;
        for (int64_t j = 0; j < kept; ++j) g16[j] = qr[cols[j]];
        // no `omp simd` here: it would hide the dot-product idiom from the vectoriser
        int32_t acc = 0;
        for (int64_t j = 0; j < kept; ++j) acc += int32_t(w16[j]) * int32_t(g16[j]);
        out[i * ldo + o] = int8_epilogue<Out>(acc, q_scale[i], w_scale[o], bias ? bias + o : nullptr);
      }
      continue;
    }
    for (int64_t j = 0; j < kept; ++j) wf[j] = float(vrow[j]);
    const int64_t Mp = nm_padded_rows(M), ld = nm_xt_stride(M);
    for (int64_t i0 = 0; i0 < Mp; i0 += kNmStrip) {
      const int64_t len = std::min(kNmStrip, Mp - i0);  // a multiple of kNmPad
      int32_t acc[kNmStrip];
      float part[kNmStrip];
      for (int64_t t = 0; t < len; ++t) acc[t] = 0;
      for (int64_t j0 = 0; j0 < kept; j0 += kNmInt8ExactChunk) {
        const int64_t j1 = std::min(kept, j0 + kNmInt8ExactChunk);
        for (int64_t t = 0; t < len; ++t) part[t] = 0.f;
        for (int64_t j = j0; j < j1; ++j) {
          const float v = wf[j];
          const float* qr = qt + int64_t(cols[j]) * ld + i0;
          for (int64_t t = 0; t < len; ++t) part[t] += v * qr[t];
        }
        for (int64_t t = 0; t < len; ++t) acc[t] += int32_t(part[t]);
      }
      const int64_t rows = std::min(len, M - i0);
      for (int64_t t = 0; t < rows; ++t)
        out[(i0 + t) * ldo + o] =
            int8_epilogue<Out>(acc[t], q_scale[i0 + t], w_scale[o], bias ? bias + o : nullptr);
    }
  }
  return true;
}

}  // namespace effdl::core
