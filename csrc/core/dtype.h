// Torch-free scalar types for the kernel cores: 16-bit float storage types
// with exact round-to-nearest-even conversions, and the accumulator type that
// each storage type computes in.
#pragma once

#include <cstdint>
#include <cstring>

namespace effdl::core {

// Storage-only 16-bit floats. The glue reinterprets c10::BFloat16 / c10::Half
// buffers as these: both are a single uint16_t, so the layouts agree.
struct bf16 {
  uint16_t bits;
};
struct fp16 {
  uint16_t bits;
};

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float to_float(bf16 h) { return bits_to_float(uint32_t(h.bits) << 16); }

inline bf16 bf16_from_float(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return bf16{uint16_t(u >> 16)};
}

inline float to_float(fp16 h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t mant = h.bits & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24 is exact in fp32
    const float mag = float(mant) * 5.9604644775390625e-08f;
    return sign ? -mag : mag;
  }
  if (exp == 31) return bits_to_float(sign | 0x7f800000u | (mant << 13));
  return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline fp16 fp16_from_float(float f) {
  uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x47800000u) {  // >= 65536, Inf or NaN
    return fp16{uint16_t(sign | (u > 0x7f800000u ? 0x7e00u : 0x7c00u))};
  }
  if (u < 0x38800000u) {
    // below the smallest normal half: adding 0.5f aligns the value so that the
    // hardware's round-to-nearest-even lands on the half subnormal grid (2^-24)
    const float aligned = bits_to_float(u) + 0.5f;
    return fp16{uint16_t(sign | uint16_t(float_to_bits(aligned) - 0x3f000000u))};
  }
  const uint32_t mant_odd = (u >> 13) & 1u;
  u += 0xc8000fffu + mant_odd;  // rebias exponent 127 -> 15, round half to even
  return fp16{uint16_t(sign | uint16_t(u >> 13))};
}

// Accumulator / compute type of a storage type.
template <typename T>
struct acc_type {
  using type = float;
};
template <>
struct acc_type<double> {
  using type = double;
};
template <typename T>
using acc_t = typename acc_type<T>::type;

inline float load(float v) { return v; }
inline double load(double v) { return v; }
inline float load(bf16 v) { return to_float(v); }
inline float load(fp16 v) { return to_float(v); }

template <typename T>
inline T store(acc_t<T> v);
template <>
inline float store<float>(float v) { return v; }
template <>
inline double store<double>(double v) { return v; }
template <>
inline bf16 store<bf16>(float v) { return bf16_from_float(v); }
template <>
inline fp16 store<fp16>(float v) { return fp16_from_float(v); }

// Converts any storage type to float / double (used for outputs of int8 ops).
template <typename T>
inline T store_from_float(float v) {
  return store<T>(static_cast<acc_t<T>>(v));
}

}  // namespace effdl::core
