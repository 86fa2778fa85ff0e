// N:M sparse linear y[M, N] = x[M, K] @ W[N, K].T + bias, W in nm_format.h
// storage, torch-free. Only the kept weights are multiplied: the work is
// M * N * K * n / m multiply-adds.
//
// This is the portable core (every level's fallback, and the only one for
// fp16 / fp64); nm_linear_simd.h has the AVX2 / AVX-512 kernels for fp32 and
// bf16, which read the same packed x.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dtype.h"
#include "nm_format.h"

namespace effdl::core {

// Up to this many rows of x the kernels read x directly; above it the glue
// packs x transposed (nm_pack_x_transposed) so each kept weight updates a
// contiguous strip of outputs (a vectorisable axpy instead of a gather).
constexpr int64_t kNmGatherMaxRows = 4;
constexpr int64_t kNmPad = 16;    // xt rows are padded to a multiple of this many columns
constexpr int64_t kNmStrip = 64;  // rows of x one strip of outputs covers

// Whether nm_linear_block reads the packed xt for M rows of x and n:m weights
// (the glue packs it only then): this core's answer, and that of the SIMD
// levels except where a level's table says otherwise (nm_linear_bf16.h).
inline bool nm_reads_xt(int64_t M, int /*n*/, int /*m*/) { return M > kNmGatherMaxRows; }

inline int64_t nm_padded_rows(int64_t M) { return (M + kNmPad - 1) / kNmPad * kNmPad; }

// The row stride of xt: Mp = nm_padded_rows(M) plus kNmPad when Mp / kNmPad is
// even, so that consecutive rows of xt start an odd number of cache lines
// apart. A strip kernel reads kNmStrip columns of many rows; with a stride of a
// power-of-two number of lines those would crowd a few cache sets.
inline int64_t nm_xt_stride(int64_t M) {
  const int64_t Mp = nm_padded_rows(M);
  return (Mp / kNmPad) % 2 == 0 ? Mp + kNmPad : Mp;
}

// xt[K, nm_xt_stride(M)] = x[M, K].T in the accumulator type, zero past row M.
// Rows [k_begin, k_end) of xt.
template <typename T>
void nm_pack_x_transposed(const T* x, int64_t ldx, int64_t M, int64_t k_begin, int64_t k_end,
                          acc_t<T>* xt) {
  const int64_t ld = nm_xt_stride(M);
  for (int64_t k = k_begin; k < k_end; ++k) {
    acc_t<T>* row = xt + k * ld;
    for (int64_t i = 0; i < M; ++i) row[i] = load(x[i * ldx + k]);
    for (int64_t i = M; i < ld; ++i) row[i] = 0;
  }
}

// Output columns [o_begin, o_end) of y. `xt` is the packed x when
// nm_reads_xt(M, n, m), else null and x is read directly. Returns false if some
// row of meta is not a valid N:M mask.
template <typename T>
bool nm_linear_block(const T* x, int64_t ldx, const acc_t<T>* xt, int64_t M, int64_t K,
                     const T* values, const uint8_t* meta, int n, int m, const T* bias, T* y,
                     int64_t ldy, int64_t o_begin, int64_t o_end) {
  using A = acc_t<T>;
  const int64_t kept = nm_kept(K, n, m);
  const int64_t meta_bytes = nm_meta_bytes(K);
  std::vector<int32_t> cols(size_t(std::max<int64_t>(kept, 1)));
  std::vector<A> vals(size_t(std::max<int64_t>(kept, 1)));
  const int64_t Mp = nm_padded_rows(M), ld = nm_xt_stride(M);
  for (int64_t o = o_begin; o < o_end; ++o) {
    if (!nm_decode_row(meta + o * meta_bytes, K, n, m, cols.data())) return false;
    const T* vrow = values + o * kept;
    for (int64_t j = 0; j < kept; ++j) vals[j] = load(vrow[j]);
    const A b = bias ? A(load(bias[o])) : A(0);
    if (xt == nullptr) {
      for (int64_t i = 0; i < M; ++i) {
        const T* xrow = x + i * ldx;
        A acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t j = 0; j < kept; ++j) acc += vals[j] * A(load(xrow[cols[j]]));
        y[i * ldy + o] = store<T>(acc + b);
      }
      continue;
    }
    for (int64_t i0 = 0; i0 < Mp; i0 += kNmStrip) {
      const int64_t len = std::min(kNmStrip, Mp - i0);  // a multiple of kNmPad
      A acc[kNmStrip];
      for (int64_t t = 0; t < len; ++t) acc[t] = 0;
      for (int64_t j = 0; j < kept; ++j) {
        const A v = vals[j];
        const A* xr = xt + int64_t(cols[j]) * ld + i0;
        for (int64_t t = 0; t < len; ++t) acc[t] += v * xr[t];
      }
      const int64_t rows = std::min(len, M - i0);
      for (int64_t t = 0; t < rows; ++t) y[(i0 + t) * ldy + o] = store<T>(acc[t] + b);
    }
  }
  return true;
}

}  // namespace effdl::core
