// nm_linear on prepacked 2:4 weights, torch-free: the panel layout, the pack
// and the portable kernel (nm_linear_bf16.h holds the AVX-512 BF16 one).
//
// Why a second layout: the fast bf16 kernel computes 16 output columns per
// vector, so it wants each group's 16 weight pairs side by side and each
// column's keep-nibbles in its own lane. From the canonical rows (nm_format.h)
// that is a transpose and a gather per chunk and call, which at a dozen rows
// of x costs as much as the products. Packed once per module (and cached,
// never saved: DESIGN.md §3) it costs nothing per call, and each panel is one
// contiguous stream for the prefetchers.
//
// Layout (one for every level and dtype T): values [N, K/2] + meta of a 2:4
// weight become ceil(N/16) panels of 16 output columns, panel p one row of the
// packed [ceil(N/16), nm_packed_cols(K, sizeof(T))] tensor of T:
//   elements [32 g, 32 g + 32), g < G = K/4: lane l = 0..15 holds the two kept
//     values of column 16p + l in group g (ascending column order), elements
//     32 g + 2 l and 32 g + 2 l + 1 (one 32-bit pair for 16-bit types);
//   then ceil(G/8) blocks of 64 bytes: block w is 16 little-endian uint32, lane
//     l's word holding in bits 4j..4j+3 the keep-mask nibble of group 8w + j of
//     column 16p + l.
// Columns past N hold zero values and zero nibbles; so do groups past G in the
// last block. A nibble of a live column and group must have exactly two bits
// set: the kernels check that, so a tensor not made by nm_pack_panels is
// refused rather than read as garbage.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "dtype.h"
#include "nm_format.h"

namespace effdl::core {

constexpr int64_t kNmPanelCols = 16;   // output columns per panel
constexpr int64_t kNmWordGroups = 8;   // groups per 32-bit nibble word
constexpr int64_t kNmBlockBytes = 64;  // one block of 16 nibble words

inline int64_t nm_packed_panels(int64_t N) { return (N + kNmPanelCols - 1) / kNmPanelCols; }
// Elements of one panel of a K-column weight of elem_size-byte elements (K % 4 == 0).
inline int64_t nm_packed_cols(int64_t K, int64_t elem_size) {
  const int64_t G = K / 4;
  return G * 2 * kNmPanelCols + (G + kNmWordGroups - 1) / kNmWordGroups * (kNmBlockBytes / elem_size);
}

// Keep-nibbles of a 2:4 group (two bits of four set).
inline bool nm_nibble_valid(uint32_t nib) { return nib < 16 && __builtin_popcount(nib) == 2; }

// The nibble words of panel p (after its values).
template <typename T>
inline const uint32_t* nm_panel_words(const T* panel, int64_t K) {
  return reinterpret_cast<const uint32_t*>(panel + (K / 4) * 2 * kNmPanelCols);
}

// Panels [p_begin, p_end) of the packing of a 2:4 weight (values [N, K/2],
// meta [N, nm_meta_bytes(K)]). Returns -1, or the first row whose meta is not
// a valid 2:4 mask (the panels are then incomplete).
template <typename T>
int64_t nm_pack_panels(const T* values, const uint8_t* meta, int64_t N, int64_t K, T* packed,
                       int64_t p_begin, int64_t p_end) {
  const int64_t G = K / 4, kept = K / 2, mb = nm_meta_bytes(K), cols = nm_packed_cols(K, sizeof(T));
  for (int64_t p = p_begin; p < p_end; ++p) {
    T* panel = packed + p * cols;
    std::memset(static_cast<void*>(panel), 0, size_t(cols) * sizeof(T));
    uint32_t* words = const_cast<uint32_t*>(nm_panel_words(panel, K));
    for (int64_t l = 0; l < kNmPanelCols && p * kNmPanelCols + l < N; ++l) {
      const int64_t o = p * kNmPanelCols + l;
      if (!nm_meta_row_valid(meta + o * mb, K, 2, 4)) return o;
      for (int64_t g = 0; g < G; ++g) {
        panel[(g * kNmPanelCols + l) * 2] = values[o * kept + 2 * g];
        panel[(g * kNmPanelCols + l) * 2 + 1] = values[o * kept + 2 * g + 1];
        const uint32_t nib = (meta[o * mb + g / 2] >> (4 * (g & 1))) & 15u;
        uint32_t& w = words[g / kNmWordGroups * kNmPanelCols + l];
        w |= nib << (4 * (g % kNmWordGroups));
      }
    }
  }
  return -1;
}

// Panels [p_begin, p_end) of y[M, N] = x[M, K] @ W.T + bias with W packed as
// above: fp32 (fp64 for double) sums over the kept columns in order, the bias
// added, rounded to T once. The portable core of every level and dtype; the
// avx512_bf16 level has a vector kernel for bf16 (nm_linear_bf16.h). Returns
// false on a nibble of a live column and group that is not a 2:4 mask.
template <typename T>
bool nm_linear_packed_block(const T* x, int64_t ldx, int64_t M, int64_t K, const T* packed, int64_t N,
                            const T* bias, T* y, int64_t ldy, int64_t p_begin, int64_t p_end) {
  using A = acc_t<T>;
  const int64_t G = K / 4, cols_per_panel = nm_packed_cols(K, sizeof(T));
  // one column's kept positions and values, decoded (and validated) once for all rows of x
  std::vector<int64_t> cols(size_t(2 * G));
  std::vector<A> vals(size_t(2 * G));
  for (int64_t p = p_begin; p < p_end; ++p) {
    const T* panel = packed + p * cols_per_panel;
    const uint32_t* words = nm_panel_words(panel, K);
    for (int64_t l = 0; l < kNmPanelCols && p * kNmPanelCols + l < N; ++l) {
      const int64_t o = p * kNmPanelCols + l;
      for (int64_t g = 0; g < G; ++g) {
        uint32_t w;
        std::memcpy(&w, words + g / kNmWordGroups * kNmPanelCols + l, 4);
        const uint32_t nib = (w >> (4 * (g % kNmWordGroups))) & 15u;
        if (!nm_nibble_valid(nib)) return false;
        const T* v = panel + (g * kNmPanelCols + l) * 2;
        cols[size_t(2 * g)] = 4 * g + __builtin_ctz(nib);
        cols[size_t(2 * g + 1)] = 4 * g + 31 - __builtin_clz(nib);
        vals[size_t(2 * g)] = load(v[0]);
        vals[size_t(2 * g + 1)] = load(v[1]);
      }
      const A b = bias ? A(load(bias[o])) : A(0);
      for (int64_t i = 0; i < M; ++i) {
        const T* xr = x + i * ldx;
        A acc = 0;
        for (int64_t j = 0; j < 2 * G; ++j) acc += vals[size_t(j)] * A(load(xr[cols[size_t(j)]]));
        y[i * ldy + o] = store<T>(acc + b);
      }
    }
  }
  return true;
}

}  // namespace effdl::core
