// N:M sparse kernels, torch-free, on the storage format of core/nm_format.h:
//   values[R, kept]       kept = K / m * n, ascending column order per group
//   meta[R, meta_bytes]   keep-mask bit c of a row at byte c / 8, bit c % 8,
//                         exactly n bits per group of m, none past K.
// Simple reference kernels: one thread per group (compress, decompress,
// validation), per meta byte (compress), or per output element (linear).
// Every kernel stays in bounds for any meta, valid or not.
#pragma once

#include <cstdint>

#include "common.cuh"

namespace effdl::gpu {

// The m keep-mask bits of the group whose first column is c0 (bit i of the
// result is column c0 + i). Needs c0 + m <= K <= 8 * meta_bytes.
__device__ __forceinline__ uint32_t nm_group_bits(const uint8_t* meta_row, int64_t c0, int m) {
  uint32_t bits = 0;
  for (int i = 0; i < m; ++i) {
    const int64_t c = c0 + i;
    bits |= uint32_t((meta_row[c >> 3] >> (c & 7)) & 1u) << i;
  }
  return bits;
}

// Bit i set iff grp[i] is nonzero; NaN counts as nonzero (never dropped).
template <typename T>
__device__ __forceinline__ uint32_t nm_nonzero_bits(const T* grp, int m) {
  using A = acc_t<T>;
  uint32_t bits = 0;
  for (int i = 0; i < m; ++i) {
    if (A(load(grp[i])) != A(0)) bits |= 1u << i;
  }
  return bits;
}

// Keep-mask of a group with popc(nonzero) <= n: its nonzeros plus its
// lowest-index zeros until n bits are set (as core::nm_compress_row).
__device__ __forceinline__ uint32_t nm_keep_bits(uint32_t nonzero, int n, int m) {
  uint32_t keep = nonzero;
  int pad = n - __popc(nonzero);
  for (int i = 0; i < m && pad > 0; ++i) {
    if (((keep >> i) & 1u) == 0u) {
      keep |= 1u << i;
      --pad;
    }
  }
  return keep;
}

// nm_compress, values: one thread per (row r, group g) of w[R, K]. A group with
// more than n nonzeros records t = r * groups + g in *first_bad (the smallest
// such t is the first failing row and its first failing group).
template <typename T>
__global__ void nm_compress_values_kernel(const T* __restrict__ w, int64_t R, int64_t K, int n,
                                          int m, T* __restrict__ values, int64_t* first_bad) {
  const int64_t groups = K / m, kept = groups * n, total = R * groups;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t r = t / groups, g = t % groups;
    const T* grp = w + r * K + g * m;
    const uint32_t nonzero = nm_nonzero_bits(grp, m);
    if (__popc(nonzero) > n) {
      record_first(first_bad, t);
      continue;
    }
    const uint32_t keep = nm_keep_bits(nonzero, n, m);
    T* out = values + r * kept + g * n;
    int j = 0;
    for (int i = 0; i < m; ++i) {
      if (((keep >> i) & 1u) != 0u && j < n) out[j++] = grp[i];
    }
  }
}

// nm_compress, meta: one thread per (row r, meta byte b). Recomputes the keep
// mask of the (at most 8) groups its 8 columns touch; bits past K stay zero.
// A group that violates the pattern gets no bits (the host raises anyway).
template <typename T>
__global__ void nm_compress_meta_kernel(const T* __restrict__ w, int64_t R, int64_t K,
                                        int64_t meta_bytes, int n, int m,
                                        uint8_t* __restrict__ meta) {
  const int64_t total = R * meta_bytes;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t r = t / meta_bytes, b = t % meta_bytes;
    const T* row = w + r * K;
    uint32_t byte = 0;
    int64_t cached_g = -1;
    uint32_t keep = 0;
    for (int bit = 0; bit < 8; ++bit) {
      const int64_t c = b * 8 + bit;
      if (c >= K) break;
      const int64_t g = c / m;
      if (g != cached_g) {
        const uint32_t nonzero = nm_nonzero_bits(row + g * m, m);
        keep = __popc(nonzero) <= n ? nm_keep_bits(nonzero, n, m) : 0u;
        cached_g = g;
      }
      byte |= ((keep >> (c - g * m)) & 1u) << bit;
    }
    meta[t] = uint8_t(byte);  // meta is [R, meta_bytes] contiguous: t = r * meta_bytes + b
  }
}

// One thread per (row r, group g) of meta[R, meta_bytes]: a group without
// exactly n bits, or (checked by the last group) a bit set past K, records r in
// *first_bad_row. Static: every glue file that validates meta (nm_ops.cu,
// nm_int8_ops.cu) gets its own copy rather than two clashing definitions.
static __global__ void nm_validate_meta_kernel(const uint8_t* __restrict__ meta, int64_t R, int64_t K,
                                               int64_t meta_bytes, int n, int m, int64_t* first_bad_row) {
  const int64_t groups = K / m, total = R * groups;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t r = t / groups, g = t % groups;
    const uint8_t* mrow = meta + r * meta_bytes;
    bool ok = __popc(nm_group_bits(mrow, g * m, m)) == n;
    if (g == groups - 1) {
      for (int64_t c = K; c < meta_bytes * 8; ++c) {
        if (((mrow[c >> 3] >> (c & 7)) & 1u) != 0u) ok = false;
      }
    }
    if (!ok) record_first(first_bad_row, r);
  }
}

// nm_decompress: one thread per (row r, group g) writes w[r, g*m : g*m + m].
// Expects meta validated by nm_validate_meta_kernel (safe without).
template <typename T>
__global__ void nm_decompress_kernel(const T* __restrict__ values,
                                     const uint8_t* __restrict__ meta, int64_t R, int64_t K,
                                     int64_t meta_bytes, int n, int m, T* __restrict__ w) {
  const int64_t groups = K / m, kept = groups * n, total = R * groups;
  const T zero = store<T>(acc_t<T>(0));
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t r = t / groups, g = t % groups;
    const uint32_t bits = nm_group_bits(meta + r * meta_bytes, g * m, m);
    const T* v = values + r * kept + g * n;
    T* out = w + r * K + g * m;
    int j = 0;
    for (int i = 0; i < m; ++i) {
      if (((bits >> i) & 1u) != 0u && j < n) {
        out[i] = v[j++];
      } else {
        out[i] = zero;
      }
    }
  }
}

// nm_linear: y[M, N] = x[M, K] @ W[N, K].T + bias, one thread per y[i, o];
// x, values, meta, y contiguous; bias [N] or null. Accumulates in acc_t<T>,
// in the kept-column order of core::nm_linear_block, then adds the bias.
// Expects meta validated by nm_validate_meta_kernel (safe without).
template <typename T>
__global__ void nm_linear_kernel(const T* __restrict__ x, const T* __restrict__ values,
                                 const uint8_t* __restrict__ meta, const T* __restrict__ bias,
                                 int64_t M, int64_t N, int64_t K, int64_t meta_bytes, int n,
                                 int m, T* __restrict__ y) {
  using A = acc_t<T>;
  const int64_t groups = K / m, kept = groups * n, total = M * N;
  for (int64_t t = global_thread(); t < total; t += grid_threads()) {
    const int64_t i = t / N, o = t % N;
    const T* xr = x + i * K;
    const T* vr = values + o * kept;
    const uint8_t* mr = meta + o * meta_bytes;
    A acc = A(0);
    for (int64_t g = 0; g < groups; ++g) {
      const uint32_t bits = nm_group_bits(mr, g * m, m);
      int j = 0;
      for (int l = 0; l < m; ++l) {
        if (((bits >> l) & 1u) != 0u && j < n) {
          acc += A(load(vr[g * n + j])) * A(load(xr[g * m + l]));
          ++j;
        }
      }
    }
    const A b = bias != nullptr ? A(load(bias[o])) : A(0);
    y[t] = store<T>(acc + b);  // y is [M, N] contiguous: t = i * N + o
  }
}

}  // namespace effdl::gpu
