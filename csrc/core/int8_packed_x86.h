// The x86 micro-kernels of int8_linear on packed weights (layout and driver:
// int8_packed.h), and the table entry each level takes. Torch-free.
//
// AVX-512 VNNI: vpdpbusd multiplies unsigned by signed bytes, 4 per int32
// lane, so the activation bytes go in shifted, q + 128 (an XOR 0x80 of the
// broadcast), and the panel's stored 128 * colsum(w) comes back out:
//   sum_k (q[k] + 128) * w[k] = sum_k q[k] * w[k] + 128 * sum_k w[k]
// Everything wraps modulo 2^32 (vpdpbusd, vpsubd); the true sum fits int32
// (K <= kInt8MaxK), so the wrapped result is exact.
//
// AVX2 and AVX-512 without VNNI: vpmaddubsw (unsigned x signed bytes, adjacent
// pairs summed into int16, *saturating*) then vpmaddwd with ones (-> int32).
// Fed q + 128 it saturates, and the usual sign trick (|w| x sign(q, w)) is
// wrong for q = -128 against a negative w, where sign() wraps -(-128) to -128
// (and, swapped, for w = -128 against a negative q). So q is split
// into q+ = max(q, 0) in [0, 127] and q- = |min(q, 0)| in [0, 128] (as
// unsigned bytes): q * w = q+ * w - q- * w, and every pair sum stays inside
// int16 (2 * 127 * -128 >= -32768 and 2 * 128 * -128 = -32768; 2 * 128 * 127
// <= 32767), so both products are exact before they widen to int32.
#pragma once

#include <cstdint>
#include <cstring>

#include "int8_packed.h"
#include "isa.h"

#if EFFDL_X86_LEVELS
#include <immintrin.h>
#endif

namespace effdl::core {

#if EFFDL_X86_LEVELS

#define EFFDL_PACKED_AVX2 __attribute__((target("arch=x86-64-v3")))
#define EFFDL_PACKED_AVX512 __attribute__((target("arch=x86-64-v4")))
#define EFFDL_PACKED_VNNI __attribute__((target("arch=x86-64-v4,avx512vnni")))

namespace packed {

// The R activation groups of the last, partial group of K, zero-filled, as
// rows of 4 bytes (so the micro-kernels' steps never branch on the tail).
template <int R>
inline void tail_groups(const int8_t* q, int64_t ldq, int64_t K, int8_t (&tail)[R][kGroupK]) {
  for (int r = 0; r < R; ++r) {
    const int32_t v = load_group(q + r * ldq, K, K / kGroupK);
    std::memcpy(tail[r], &v, sizeof v);
  }
}

inline int32_t group_at(const int8_t* q) {
  int32_t v;
  std::memcpy(&v, q, sizeof v);
  return v;
}

// The vector steps of each level, one struct per instruction set. Vectors
// travel by pointer: the generic Micro below holds no vector-typed parameters
// of its own (no ABI change to warn about), the level's `flatten` entry inlines
// it all, and GCC keeps the accumulator arrays in registers (with intrinsics on
// arrays passed by reference it shuffled them between registers every step).
//   act        the broadcast form of one row's 4 activation bytes
//   mac        s += the 4-byte dot products of act and w, per int32 lane
//   load_sums  the partial sums of an earlier block of K
//   store      the sums of a vector of columns; exact with `shift` (their
//              128 * colsum, the last block of K), else partial (shift null)

struct VnniOps {  // AVX-512 VNNI: vpdpbusd on q + 128, minus 128 * colsum
  using vec = __m512i;
  struct act {
    vec a;
  };
  static constexpr int kRows = 4;
  static constexpr int kPanels = 4;  // 32 zmm: 16 accumulators, 4 weights, the activation
  EFFDL_PACKED_VNNI static inline void zero(vec* d) { *d = _mm512_setzero_si512(); }
  EFFDL_PACKED_VNNI static inline void load(vec* d, const int8_t* p) { *d = _mm512_loadu_si512(p); }
  EFFDL_PACKED_VNNI static inline void prepare(act* a, int32_t bytes) {
    a->a = _mm512_xor_si512(_mm512_set1_epi32(bytes), _mm512_set1_epi8(char(0x80)));  // q + 128, unsigned
  }
  EFFDL_PACKED_VNNI static inline void mac(vec* s, const act* a, const vec* w) {
    *s = _mm512_dpbusd_epi32(*s, a->a, *w);
  }
  EFFDL_PACKED_VNNI static inline void load_sums(vec* d, const int32_t* p) { *d = _mm512_loadu_si512(p); }
  EFFDL_PACKED_VNNI static inline void store(int32_t* d, const vec* s, const int8_t* shift) {
    _mm512_storeu_si512(d, shift ? _mm512_sub_epi32(*s, _mm512_loadu_si512(shift)) : *s);
  }
};

struct Avx2Ops {  // AVX2: the split-sign vpmaddubsw (the top of this file)
  using vec = __m256i;
  struct act {
    vec pos, neg;
  };
  static constexpr int kRows = 4;
  static constexpr int kPanels = 1;  // 16 ymm: 8 accumulators, 2 weights, 2 activations
  EFFDL_PACKED_AVX2 static inline void zero(vec* d) { *d = _mm256_setzero_si256(); }
  EFFDL_PACKED_AVX2 static inline void load(vec* d, const int8_t* p) {
    *d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  EFFDL_PACKED_AVX2 static inline void prepare(act* a, int32_t bytes) {
    const __m256i v = _mm256_set1_epi32(bytes), z = _mm256_setzero_si256();
    a->pos = _mm256_max_epi8(v, z);
    a->neg = _mm256_abs_epi8(_mm256_min_epi8(v, z));  // |-128| is 0x80 = 128 unsigned
  }
  EFFDL_PACKED_AVX2 static inline void mac(vec* s, const act* a, const vec* w) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(a->pos, *w), ones);
    const __m256i n = _mm256_madd_epi16(_mm256_maddubs_epi16(a->neg, *w), ones);
    *s = _mm256_sub_epi32(_mm256_add_epi32(*s, p), n);
  }
  EFFDL_PACKED_AVX2 static inline void load_sums(vec* d, const int32_t* p) {
    *d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  EFFDL_PACKED_AVX2 static inline void store(int32_t* d, const vec* s, const int8_t*) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), *s);
  }
};

struct Avx512Ops {  // AVX-512 without VNNI: the split-sign vpmaddubsw on zmm
  using vec = __m512i;
  struct act {
    vec pos, neg;
  };
  static constexpr int kRows = 4;
  static constexpr int kPanels = 4;  // 32 zmm: 16 accumulators, 4 weights, 2 activations
  EFFDL_PACKED_AVX512 static inline void zero(vec* d) { *d = _mm512_setzero_si512(); }
  EFFDL_PACKED_AVX512 static inline void load(vec* d, const int8_t* p) { *d = _mm512_loadu_si512(p); }
  EFFDL_PACKED_AVX512 static inline void prepare(act* a, int32_t bytes) {
    const __m512i v = _mm512_set1_epi32(bytes), z = _mm512_setzero_si512();
    a->pos = _mm512_max_epi8(v, z);
    a->neg = _mm512_abs_epi8(_mm512_min_epi8(v, z));
  }
  EFFDL_PACKED_AVX512 static inline void mac(vec* s, const act* a, const vec* w) {
    const __m512i ones = _mm512_set1_epi16(1);
    const __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(a->pos, *w), ones);
    const __m512i n = _mm512_madd_epi16(_mm512_maddubs_epi16(a->neg, *w), ones);
    *s = _mm512_sub_epi32(_mm512_add_epi32(*s, p), n);
  }
  EFFDL_PACKED_AVX512 static inline void load_sums(vec* d, const int32_t* p) { *d = _mm512_loadu_si512(p); }
  EFFDL_PACKED_AVX512 static inline void store(int32_t* d, const vec* s, const int8_t*) { _mm512_storeu_si512(d, *s); }
};

// The micro-kernel of int8_packed.h's driver on V's vector steps: R rows of q
// x P panels, R x P x (64 / sizeof(vec)) accumulators.
template <class V>
struct Micro {
  using vec = typename V::vec;
  static constexpr int kRows = V::kRows;
  static constexpr int kPanels = V::kPanels;
  static constexpr int kVecs = int(kGroupBytes / int64_t(sizeof(vec)));  // vectors per panel group
  static constexpr int kWidth = kPanels * kPanelCols;

  // One group: qg[r * ldq] are row r's 4 bytes, wg + p * row_bytes panel p's 64.
  template <int R, int P>
  static inline void step(const int8_t* qg, int64_t ldq, const int8_t* wg, int64_t row_bytes,
                          vec (&s)[R][P * kVecs]) {
    vec w[P * kVecs];
    EFFDL_UNROLL
    for (int p = 0; p < P; ++p)
      EFFDL_UNROLL
      for (int v = 0; v < kVecs; ++v) V::load(&w[p * kVecs + v], wg + p * row_bytes + v * int64_t(sizeof(vec)));
    EFFDL_UNROLL
    for (int r = 0; r < R; ++r) {
      typename V::act a;
      V::prepare(&a, group_at(qg + r * ldq));
      EFFDL_UNROLL
      for (int j = 0; j < P * kVecs; ++j) V::mac(&s[r][j], &a, &w[j]);
    }
  }

  template <int R, int P>
  static inline void dot(const int8_t* q, int64_t ldq, const KSpan<kWidth>& span, const int8_t* panel,
                         int64_t row_bytes, int32_t (*acc)[kWidth]) {
    constexpr int64_t lanes = int64_t(sizeof(vec)) / 4;
    vec s[R][P * kVecs];
    EFFDL_UNROLL
    for (int r = 0; r < R; ++r)
      EFFDL_UNROLL
      for (int j = 0; j < P * kVecs; ++j) {
        if (span.init)
          V::load_sums(&s[r][j], span.init[r] + j * lanes);
        else
          V::zero(&s[r][j]);
      }
    const int64_t full_end = std::min(span.g1, span.K / kGroupK);  // groups with 4 bytes inside K
    if (full_end < span.g1) {  // the partial last group first: after the loop it cost GCC its register allocation
      int8_t tail[R][kGroupK];
      tail_groups<R>(q, ldq, span.K, tail);
      step<R, P>(tail[0], kGroupK, panel + full_end * kGroupBytes, row_bytes, s);
    }
    for (int64_t kk = span.g0; kk < full_end; ++kk)
      step<R, P>(q + kk * kGroupK, ldq, panel + kk * kGroupBytes, row_bytes, s);
    const int64_t sums_at = packed_groups(span.K) * kGroupBytes;  // the panel's 128 * colsum
    EFFDL_UNROLL
    for (int r = 0; r < R; ++r)
      EFFDL_UNROLL
      for (int j = 0; j < P * kVecs; ++j) {
        const int8_t* shift = panel + (j / kVecs) * row_bytes + sums_at + (j % kVecs) * lanes * 4;
        V::store(acc[r] + j * lanes, &s[r][j], span.last ? shift : nullptr);
      }
  }
};

}  // namespace packed

// Each level's int8_linear_packed_block: the driver of int8_packed.h on its micro-kernel.
template <typename Out>
EFFDL_PACKED_AVX2 void int8_linear_packed_block_avx2(const int8_t* q, int64_t ldq, const float* q_scale,
                                                     int64_t M, int64_t K, const int8_t* packed, int64_t N,
                                                     const float* w_scale, const float* bias, Out* out,
                                                     int64_t ldo, int64_t p_begin, int64_t p_end) {
  int8_linear_packed_run<packed::Micro<packed::Avx2Ops>, Out>(q, ldq, q_scale, M, K, packed, N, w_scale, bias, out,
                                                           ldo, p_begin, p_end);
}

template <typename Out>
EFFDL_PACKED_AVX512 void int8_linear_packed_block_avx512(const int8_t* q, int64_t ldq, const float* q_scale,
                                                         int64_t M, int64_t K, const int8_t* packed, int64_t N,
                                                         const float* w_scale, const float* bias, Out* out,
                                                         int64_t ldo, int64_t p_begin, int64_t p_end) {
  int8_linear_packed_run<packed::Micro<packed::Avx512Ops>, Out>(q, ldq, q_scale, M, K, packed, N, w_scale, bias, out,
                                                           ldo, p_begin, p_end);
}

template <typename Out>
EFFDL_PACKED_VNNI void int8_linear_packed_block_vnni(const int8_t* q, int64_t ldq, const float* q_scale,
                                                     int64_t M, int64_t K, const int8_t* packed, int64_t N,
                                                     const float* w_scale, const float* bias, Out* out,
                                                     int64_t ldo, int64_t p_begin, int64_t p_end) {
  int8_linear_packed_run<packed::Micro<packed::VnniOps>, Out>(q, ldq, q_scale, M, K, packed, N, w_scale, bias, out, ldo, p_begin,
                                            p_end);
}

#undef EFFDL_PACKED_AVX2
#undef EFFDL_PACKED_AVX512
#undef EFFDL_PACKED_VNNI

// The packed int8_linear core each level's table holds.
template <Isa L, typename Out>
constexpr auto int8_linear_packed_kernel = &int8_linear_packed_block<Out>;
template <typename Out>
constexpr auto int8_linear_packed_kernel<Isa::kAvx2, Out> = &int8_linear_packed_block_avx2<Out>;
template <typename Out>
constexpr auto int8_linear_packed_kernel<Isa::kAvx512, Out> = &int8_linear_packed_block_avx512<Out>;
template <typename Out>
constexpr auto int8_linear_packed_kernel<Isa::kAvx512Vnni, Out> = &int8_linear_packed_block_vnni<Out>;

#else

template <Isa L, typename Out>
constexpr auto int8_linear_packed_kernel = &int8_linear_packed_block<Out>;

#endif

}  // namespace effdl::core
