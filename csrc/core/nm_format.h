// N:M structured-sparse storage (format version 1), torch-free.
//
// A dense row of K elements, K % m == 0, with at most n nonzeros in each group
// of m consecutive elements, is stored as
//   values[K / m * n]  the kept elements, ascending column order per group;
//                      a group with fewer than n nonzeros keeps explicit zeros
//                      at its lowest-index zero positions,
//   meta[ceil(K / 8)]  the dense keep-mask, bit c of the row at byte c / 8,
//                      bit c % 8 (little-endian bit order). Exactly n bits are
//                      set per group, so 2:4 costs 4 bits per group (2 bits per
//                      kept value) and general N:M costs m bits per group.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "dtype.h"

namespace effdl::core {

inline int64_t nm_meta_bytes(int64_t K) { return (K + 7) / 8; }
inline int64_t nm_kept(int64_t K, int n, int m) { return K / m * n; }

template <typename T>
inline bool is_nonzero(T v) {
  return load(v) != 0;  // NaN counts as nonzero: it must not be dropped silently
}

// Compresses one row. Returns -1 on success, else the index of the first group
// holding more than n nonzeros (nothing useful is written then).
template <typename T>
int64_t nm_compress_row(const T* w, int64_t K, int n, int m, T* values, uint8_t* meta) {
  const int64_t groups = K / m;
  for (int64_t b = 0; b < nm_meta_bytes(K); ++b) meta[b] = 0;
  int64_t out = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const T* grp = w + g * m;
    int nnz = 0;
    for (int i = 0; i < m; ++i) nnz += is_nonzero(grp[i]) ? 1 : 0;
    if (nnz > n) return g;
    int zeros_to_keep = n - nnz;  // padding positions, taken lowest index first
    for (int i = 0; i < m; ++i) {
      bool keep = is_nonzero(grp[i]);
      if (!keep && zeros_to_keep > 0) {
        keep = true;
        --zeros_to_keep;
      }
      if (keep) {
        const int64_t c = g * m + i;
        meta[c >> 3] = uint8_t(meta[c >> 3] | (1u << (c & 7)));
        values[out++] = grp[i];
      }
    }
  }
  return -1;
}

// Set-bit positions of every byte value, so decoding walks bytes, not bits.
struct ByteBits {
  uint8_t count = 0;
  uint8_t pos[8] = {};
};
struct ByteBitsTable {
  ByteBits e[256];
  ByteBitsTable() {
    for (int v = 0; v < 256; ++v) {
      uint8_t c = 0;
      for (int b = 0; b < 8; ++b)
        if (v & (1 << b)) e[v].pos[c++] = uint8_t(b);
      e[v].count = c;
    }
  }
};
inline const ByteBits* byte_bits() {
  static const ByteBitsTable table;  // built once, thread-safely
  return table.e;
}

// Decodes the kept column indices of one row into cols[K / m * n]. Returns
// false when meta is not a valid N:M mask (not exactly n bits per group, or bits
// set past K); cols is then partially written but never out of bounds.
inline bool nm_decode_row(const uint8_t* meta, int64_t K, int n, int m, int32_t* cols) {
  const int64_t kept = nm_kept(K, n, m);
  const ByteBits* table = byte_bits();
  int64_t j = 0;
  for (int64_t b = 0; b < nm_meta_bytes(K); ++b) {
    const ByteBits& e = table[meta[b]];
    if (j + e.count > kept) return false;
    for (int t = 0; t < e.count; ++t) cols[j + t] = int32_t(b * 8 + e.pos[t]);
    j += e.count;
  }
  if (j != kept) return false;
  // kept positions arrive in column order, so "exactly n per group" means the
  // g-th run of n positions lies inside group g (which also bounds them by K)
  int64_t lo = 0;
  for (int64_t g = 0; g < kept; g += n, lo += m) {
    for (int t = 0; t < n; ++t) {
      const int64_t c = cols[g + t];
      if (c < lo || c >= lo + m) return false;
    }
  }
  return true;
}

// Whether one row of meta is a valid N:M mask (exactly n bits in each group of
// m, none past K) — nm_decode_row's check without writing the columns, so the
// fast kernels can read the bitmap directly. 2:4 checks sixteen groups per
// 64-bit word at once: the nibble popcounts must all be 2 (0 past K).
inline bool nm_meta_row_valid(const uint8_t* meta, int64_t K, int n, int m) {
  const int64_t bytes = nm_meta_bytes(K);
  if (n == 2 && m == 4) {
    const int64_t groups = K / 4;
    for (int64_t b = 0; b < bytes; b += 8) {
      uint64_t w = 0;
      if (b + 8 <= bytes) {
        std::memcpy(&w, meta + b, 8);  // little-endian hosts: byte t is bits 8t..8t+7
      } else {
        for (int64_t t = 0; b + t < bytes; ++t) w |= uint64_t(meta[b + t]) << (8 * t);
      }
      const int64_t live = std::min<int64_t>(16, groups - b * 2);  // groups of this word below K
      const uint64_t want = 0x2222222222222222ull & (live >= 16 ? ~0ull : (1ull << (4 * live)) - 1);
      uint64_t c = w - ((w >> 1) & 0x5555555555555555ull);              // 2-bit counts
      c = (c & 0x3333333333333333ull) + ((c >> 2) & 0x3333333333333333ull);  // nibble counts
      if (c != want) return false;
    }
    return true;
  }
  const ByteBits* table = byte_bits();
  for (int64_t c = 0; c < K; c += m) {  // a group spans at most 3 bytes (m <= 16)
    uint32_t w = 0;
    for (int64_t t = 0; t < 3 && (c >> 3) + t < bytes; ++t) w |= uint32_t(meta[(c >> 3) + t]) << (8 * t);
    w = (w >> (c & 7)) & ((1u << m) - 1);
    if (table[w & 0xff].count + table[w >> 8].count != n) return false;
  }
  const int tail = int(K & 7);  // bits past K in the last byte
  return tail == 0 || (meta[bytes - 1] >> tail) == 0;
}

// The kept column indices of a row whose meta is valid (nm_meta_row_valid), in
// column order, into cols[K / m * n]. Each meta byte writes 8 entries (a fixed
// trip count, no branch), so cols needs 8 entries of slack past the row.
inline void nm_row_cols(const uint8_t* meta, int64_t K, int32_t* cols) {
  const ByteBits* table = byte_bits();
  int64_t j = 0;
  for (int64_t b = 0; b < nm_meta_bytes(K); ++b) {
    const ByteBits& e = table[meta[b]];
    for (int t = 0; t < 8; ++t) cols[j + t] = int32_t(b * 8 + e.pos[t]);  // fixed trip: no branch
    j += e.count;
  }
}

// Decompresses one row; cols is scratch of K / m * n entries. False on bad meta.
template <typename T>
bool nm_decompress_row(const T* values, const uint8_t* meta, int64_t K, int n, int m,
                       int32_t* cols, T* w) {
  if (!nm_decode_row(meta, K, n, m, cols)) return false;
  const T zero = store<T>(acc_t<T>(0));
  for (int64_t c = 0; c < K; ++c) w[c] = zero;
  const int64_t kept = nm_kept(K, n, m);
  for (int64_t j = 0; j < kept; ++j) w[cols[j]] = values[j];
  return true;
}

}  // namespace effdl::core
