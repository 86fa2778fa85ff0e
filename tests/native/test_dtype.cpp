// core/dtype.h: fp16 and bf16 conversions.
//   - fp16 -> float is checked on all 65536 bit patterns against an independent
//     formula (and the compiler's _Float16 where it exists); fp16 -> float ->
//     fp16 is the identity (NaN stays NaN, sign kept).
//   - float -> fp16 is checked against the compiler's _Float16 conversion and a
//     straightforward double-precision reference on a sweep of float bit
//     patterns, every half-way case, and the boundaries of the half range.
//   - bf16 round-to-nearest-even against a bit-level reference, ties included.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "check.h"
#include "core/dtype.h"

using namespace effdl::core;

namespace {

bool fp16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

// Independent fp16 -> double: the value the bits denote.
double fp16_value(uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(double(mant), -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(double(1024 + mant), exp - 25);
}

// Independent float -> fp16, round to nearest even, for non-NaN input: the
// quotient by the half ulp of the value's binade is exact in double, and
// nearbyint rounds it to even. A value that rounds up into the next binade
// carries into the exponent field by itself (mantissa 1024 == next exponent).
uint16_t fp16_reference(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(double(f));
  if (a >= 65536.0) return sign | 0x7c00u;  // includes inf
  if (a < std::ldexp(1.0, -14)) {
    return uint16_t(sign | uint16_t(std::nearbyint(std::ldexp(a, 24))));  // subnormal grid 2^-24
  }
  int e2 = 0;
  std::frexp(a, &e2);  // a = m * 2^e2, m in [0.5, 1): floor(log2 a) = e2 - 1
  const int e = e2 - 1;
  const double r = std::nearbyint(std::ldexp(a, 10 - e));  // in [1024, 2048]
  return uint16_t(sign | uint16_t(((e + 15) << 10) + int(r) - 1024));
}

// bf16 reference: keep the high 16 bits, round on the low 16 to nearest even.
uint16_t bf16_reference(uint32_t u) {
  const uint32_t hi = u >> 16, lo = u & 0xffffu;
  const bool up = lo > 0x8000u || (lo == 0x8000u && (hi & 1u));
  return uint16_t(hi + (up ? 1u : 0u));
}

#if defined(__FLT16_MAX__)
uint16_t fp16_compiler(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, sizeof bits);
  return bits;
}
float fp16_compiler_to_float(uint16_t bits) {
  _Float16 h;
  std::memcpy(&h, &bits, sizeof h);
  return static_cast<float>(h);
}
#endif

// One float -> fp16 / bf16 comparison; both references must agree with the core.
void check_float(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t got = fp16_from_float(f).bits;
  const uint16_t got_bf = bf16_from_float(f).bits;
  if (std::isnan(f)) {
    CHECK_MSG(fp16_is_nan(got), "fp16_from_float(nan 0x%08x) = 0x%04x", unsigned(u), unsigned(got));
    CHECK_MSG((got & 0x8000u) == ((u >> 16) & 0x8000u), "nan sign 0x%08x", unsigned(u));
    CHECK_MSG(bf16_is_nan(got_bf), "bf16_from_float(nan 0x%08x) = 0x%04x", unsigned(u), unsigned(got_bf));
    CHECK_MSG((got_bf & 0x8000u) == ((u >> 16) & 0x8000u), "bf16 nan sign 0x%08x", unsigned(u));
    return;
  }
  const uint16_t want = fp16_reference(f);
  CHECK_MSG(got == want, "fp16_from_float(%.9g = 0x%08x) = 0x%04x, reference 0x%04x", double(f), unsigned(u),
            unsigned(got), unsigned(want));
#if defined(__FLT16_MAX__)
  const uint16_t cc = fp16_compiler(f);
  CHECK_MSG(got == cc, "fp16_from_float(%.9g = 0x%08x) = 0x%04x, _Float16 0x%04x", double(f), unsigned(u),
            unsigned(got), unsigned(cc));
#endif
  const uint16_t want_bf = bf16_reference(u);
  CHECK_MSG(got_bf == want_bf, "bf16_from_float(%.9g = 0x%08x) = 0x%04x, reference 0x%04x", double(f),
            unsigned(u), unsigned(got_bf), unsigned(want_bf));
}

void test_fp16_exhaustive_roundtrip() {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t h = uint16_t(b);
    const float f = to_float(fp16{h});
    const uint16_t back = fp16_from_float(f).bits;
    if (fp16_is_nan(h)) {
      CHECK_MSG(std::isnan(f), "to_float(fp16 0x%04x) = %g, want nan", unsigned(h), double(f));
      CHECK_MSG(fp16_is_nan(back), "fp16 0x%04x -> float -> 0x%04x, want nan", unsigned(h), unsigned(back));
      CHECK_MSG((back & 0x8000u) == (h & 0x8000u), "nan sign lost: 0x%04x -> 0x%04x", unsigned(h),
                unsigned(back));
      continue;
    }
    // bit-exact (distinguishes -0 and +0)
    CHECK_MSG(back == h, "fp16 0x%04x -> %.9g -> 0x%04x", unsigned(h), double(f), unsigned(back));
    const double v = fp16_value(h);
    CHECK_MSG(double(f) == v && std::signbit(f) == std::signbit(v), "to_float(fp16 0x%04x) = %.9g, want %.9g",
              unsigned(h), double(f), v);
#if defined(__FLT16_MAX__)
    CHECK_MSG(float_to_bits(f) == float_to_bits(fp16_compiler_to_float(h)),
              "to_float(fp16 0x%04x) vs _Float16", unsigned(h));
#endif
  }
  // order: increasing finite positive halves map to increasing floats
  float prev = -1.f;
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const float f = to_float(fp16{uint16_t(h)});
    if (!CHECK_MSG(f > prev, "to_float not increasing at 0x%04x", unsigned(h))) break;
    prev = f;
  }
  CHECK(to_float(fp16{0x7bffu}) == 65504.f);
  CHECK(to_float(fp16{0x0001u}) == std::ldexp(1.f, -24));
  CHECK(to_float(fp16{0x0400u}) == std::ldexp(1.f, -14));
  CHECK(std::isinf(to_float(fp16{0xfc00u})) && to_float(fp16{0xfc00u}) < 0);
}

void test_fp16_from_float_sweep() {
  // every 4099th bit pattern (4099 is prime, so the low bits are covered evenly)
  long n = 0;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
    check_float(bits_to_float(uint32_t(u)));
    ++n;
  }
  CHECK(n > 1000000);

  // boundaries, with their neighbours and negatives
  const float specials[] = {
      0.f,
      65504.f,
      65519.99f,
      65520.f,
      65535.f,
      65536.f,
      65504.f + 8.f,   // below the half-way point to 65536: rounds down to 65504
      65504.f + 16.f,  // 65520: the tie, rounds (to even) up to inf
      std::ldexp(1.f, -14),
      std::ldexp(1.f, -24),
      std::ldexp(1.f, -25),                         // tie with 0: rounds to +0
      std::ldexp(1.f, -25) * 1.0000001f,            // just above: smallest subnormal
      std::ldexp(3.f, -25),                         // tie between 1 and 2 ulps: to 2
      std::ldexp(1023.5f, -24),                     // tie at the subnormal/normal boundary
      std::ldexp(1.f, -14) - std::ldexp(1.f, -25),  // the same value, written differently
      std::ldexp(1.f, -26),
      std::ldexp(1.f, -15),
      1.f,
      1.f + std::ldexp(1.f, -11),  // tie: to 1.0 (even)
      1.f + std::ldexp(3.f, -11),  // tie: to 1 + 2^-9 (even)
      2048.f + 1.f,                // tie at spacing 2
      FLT_MIN,
      FLT_TRUE_MIN,
      FLT_MAX,
      INFINITY,
      NAN,
      std::nanf("0x12345"),
  };
  for (float f : specials) {
    for (int d = -3; d <= 3; ++d) {
      const uint32_t u = float_to_bits(f) + uint32_t(d);
      check_float(bits_to_float(u));
      check_float(-bits_to_float(u));
    }
  }
  CHECK(fp16_from_float(65504.f).bits == 0x7bffu);
  CHECK(fp16_from_float(65519.99f).bits == 0x7bffu);
  CHECK(fp16_from_float(65520.f).bits == 0x7c00u);
  CHECK(fp16_from_float(-65520.f).bits == 0xfc00u);
  CHECK(fp16_from_float(std::ldexp(1.f, -14)).bits == 0x0400u);
  CHECK(fp16_from_float(std::ldexp(1.f, -24)).bits == 0x0001u);
  CHECK(fp16_from_float(std::ldexp(1.f, -25)).bits == 0x0000u);
  CHECK(fp16_from_float(-std::ldexp(1.f, -25)).bits == 0x8000u);
  CHECK(fp16_from_float(-0.f).bits == 0x8000u);
  CHECK(fp16_from_float(INFINITY).bits == 0x7c00u);
  CHECK(fp16_is_nan(fp16_from_float(NAN).bits));

  // every half-way point between consecutive halves (exactly representable in
  // float: at most 12 significant bits), and one float ulp either side
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const double lo = fp16_value(uint16_t(h)), hi = fp16_value(uint16_t(h + 1));
    const float mid = float((lo + hi) / 2);
    CHECK(double(mid) == (lo + hi) / 2);
    const uint16_t even = (h & 1u) ? uint16_t(h + 1) : uint16_t(h);
    CHECK_MSG(fp16_from_float(mid).bits == even, "tie between 0x%04x and 0x%04x", unsigned(h),
              unsigned(h + 1));
    CHECK(fp16_from_float(-mid).bits == (even | 0x8000u));
    for (float f : {mid, std::nextafter(mid, 0.f), std::nextafter(mid, INFINITY)}) {
      check_float(f);
      check_float(-f);
    }
  }

  // dense: every float from 2^-26 up to 2^-13 (subnormal halves and the first
  // normal binade) at a stride of 7, and every float in [32768, 65536 + 64)
  for (uint32_t u = float_to_bits(std::ldexp(1.f, -26)); u < float_to_bits(std::ldexp(1.f, -13)); u += 7) {
    check_float(bits_to_float(u));
  }
  for (uint32_t u = float_to_bits(32768.f); u < float_to_bits(65600.f); ++u) check_float(bits_to_float(u));
}

void test_bf16() {
  // bf16 -> float is a shift; bf16 -> float -> bf16 is the identity (NaN stays NaN)
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = to_float(bf16{uint16_t(b)});
    CHECK(float_to_bits(f) == b << 16);
    const uint16_t back = bf16_from_float(f).bits;
    if (bf16_is_nan(uint16_t(b))) {
      CHECK_MSG(bf16_is_nan(back) && (back & 0x8000u) == (b & 0x8000u), "bf16 nan 0x%04x -> 0x%04x",
                unsigned(b), unsigned(back));
    } else {
      CHECK_MSG(back == b, "bf16 0x%04x -> 0x%04x", unsigned(b), unsigned(back));
    }
  }
  // ties (low half exactly 0x8000) round to even; one bit either side rounds
  // down / up; for every high half, both signs
  for (uint32_t hi = 0; hi < 65536; ++hi) {
    const uint32_t base = hi << 16;
    if (std::isnan(bits_to_float(base)) || std::isinf(bits_to_float(base))) continue;
    const uint16_t even = (hi & 1u) ? uint16_t(hi + 1) : uint16_t(hi);
    CHECK_MSG(bf16_from_float(bits_to_float(base | 0x8000u)).bits == even, "bf16 tie 0x%08x",
              unsigned(base | 0x8000u));
    CHECK(bf16_from_float(bits_to_float(base | 0x7fffu)).bits == hi);
    CHECK(bf16_from_float(bits_to_float(base | 0x8001u)).bits == uint16_t(hi + 1));
    CHECK(bf16_from_float(bits_to_float(base | 0x0001u)).bits == hi);
    CHECK(bf16_from_float(bits_to_float(base)).bits == hi);
  }
  CHECK(bf16_from_float(1.f + std::ldexp(1.f, -8)).bits == 0x3f80u);  // tie: 1.0 (even)
  CHECK(bf16_from_float(1.f + std::ldexp(3.f, -8)).bits == 0x3f82u);  // tie: up to even
  CHECK(bf16_from_float(FLT_MAX).bits == 0x7f80u);                    // rounds to inf
  CHECK(bf16_from_float(-FLT_MAX).bits == 0xff80u);
  CHECK(bf16_from_float(bits_to_float(0x7f7f7fffu)).bits == 0x7f7fu);  // largest finite stays
  CHECK(bf16_from_float(INFINITY).bits == 0x7f80u);
  CHECK(bf16_from_float(-0.f).bits == 0x8000u);
  CHECK(bf16_from_float(FLT_TRUE_MIN).bits == 0x0000u);
  CHECK(bf16_is_nan(bf16_from_float(bits_to_float(0x7f800001u)).bits));  // payload only in the low half
  CHECK(bf16_is_nan(bf16_from_float(bits_to_float(0xff800001u)).bits));
}

void test_load_store() {
  CHECK(load(store<bf16>(1.5f)) == 1.5f);
  CHECK(load(store<fp16>(-2.25f)) == -2.25f);
  CHECK(store<float>(0.1f) == 0.1f);
  CHECK(store<double>(0.1) == 0.1);
  CHECK(store_from_float<double>(0.1f) == double(0.1f));
  CHECK(store_from_float<fp16>(65520.f).bits == 0x7c00u);
  CHECK(store_from_float<bf16>(3.f).bits == 0x4040u);
  static_assert(sizeof(bf16) == 2 && sizeof(fp16) == 2, "16-bit storage types");
}

}  // namespace

int main() {
  test_fp16_exhaustive_roundtrip();
  test_fp16_from_float_sweep();
  test_bf16();
  test_load_store();
#if !defined(__FLT16_MAX__)
  std::printf("test_dtype: no _Float16 in this compiler; fp16 checked against the reference only\n");
#endif
  return effdl_test::finish("test_dtype");
}
