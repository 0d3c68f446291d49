#pragma once
/// \file half.hpp
/// IEEE binary16 and bfloat16 conversions as plain integer code, so host and device round
/// the same way bit for bit (no dependence on F16C, __half or compiler flags).
///  * *_rne: round to nearest, ties to even (what a cast does);
///  * *_sr:  stochastic rounding with a caller-supplied uniform 32-bit word. The watermark
///    embeds steps smaller than half an ulp of many 16-bit weights; rounding to nearest would
///    erase them, while stochastic rounding keeps the step in expectation (E[out] = in).

#include <cstdint>
#include <cstring>

#include "didmark/detail/config.hpp"

namespace didmark::detail {

DIDMARK_HD DIDMARK_FORCEINLINE uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
DIDMARK_HD DIDMARK_FORCEINLINE float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// ---- bfloat16 -------------------------------------------------------------------------
DIDMARK_HD DIDMARK_FORCEINLINE float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

DIDMARK_HD DIDMARK_FORCEINLINE uint16_t f32_to_bf16_rne(float f) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

/// P(round away from zero) = (discarded low 16 bits) / 2^16, decided by the top bits of u.
DIDMARK_HD DIDMARK_FORCEINLINE uint16_t f32_to_bf16_sr(float f, uint32_t u) {
  const uint32_t x = f32_bits(f);
  if ((x & 0x7F800000u) == 0x7F800000u) return f32_to_bf16_rne(f);  // Inf/NaN
  uint32_t q = x >> 16;
  if ((u >> 16) < (x & 0xFFFFu)) ++q;  // magnitude increment (sign-magnitude encoding)
  if ((q & 0x7F80u) == 0x7F80u) --q;   // a finite input never becomes Inf
  return static_cast<uint16_t>(q);
}

// ---- binary16 -------------------------------------------------------------------------
DIDMARK_HD DIDMARK_FORCEINLINE float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t man = h & 0x3FFu;
  if (exp == 0) {
    // Subnormal or zero: man * 2^-24 is exact in binary32.
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return bits_f32(f32_bits(v) | sign);
  }
  if (exp == 31) return bits_f32(sign | 0x7F800000u | (man << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

namespace half_impl {
/// Split |f| (finite, below 65520) into the f16 magnitude truncated toward zero and the
/// discarded remainder, as (q, rem, shift): value = (q + rem / 2^shift) ulp.
struct Split {
  uint32_t q, rem, shift;
};
DIDMARK_HD DIDMARK_FORCEINLINE Split split(uint32_t ax) {
  if (ax >= 0x38800000u) {  // normal f16 range (>= 2^-14): drop 13 mantissa bits
    return Split{(ax - 0x38000000u) >> 13, ax & 0x1FFFu, 13u};
  }
  // Subnormal f16: value * 2^24 = m * 2^(e - 126), with the implicit bit in m.
  const uint32_t e = ax >> 23;
  if (e == 0) return Split{0u, ax == 0 ? 0u : 1u, 64u};  // f32 subnormal: far below 2^-24
  const uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - e;  // >= 14
  if (shift >= 32u) return Split{0u, m, shift};
  return Split{m >> shift, m & ((1u << shift) - 1u), shift};
}
}  // namespace half_impl

DIDMARK_HD DIDMARK_FORCEINLINE uint16_t f32_to_f16_rne(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return static_cast<uint16_t>(sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u : 0u));
  if (ax >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520 rounds to Inf
  const half_impl::Split s = half_impl::split(ax);
  uint32_t q = s.q;
  if (s.shift < 32u) {
    const uint32_t halfway = 1u << (s.shift - 1u);
    if (s.rem > halfway || (s.rem == halfway && (q & 1u))) ++q;  // carries into the exponent correctly
  }
  return static_cast<uint16_t>(sign | q);
}

/// P(round away from zero) = rem / 2^shift, decided by the top `shift` bits of u.
DIDMARK_HD DIDMARK_FORCEINLINE uint16_t f32_to_f16_sr(float f, uint32_t u) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return f32_to_f16_rne(f);                     // Inf/NaN
  if (ax >= 0x477FE000u) return static_cast<uint16_t>(sign | 0x7BFFu);  // finite, at or past the max
  const half_impl::Split s = half_impl::split(ax);
  uint32_t q = s.q;
  bool up;
  if (s.shift < 32u) {
    up = (u >> (32u - s.shift)) < s.rem;
  } else if (s.shift < 56u) {
    up = (static_cast<uint64_t>(u) << (s.shift - 32u)) < s.rem;
  } else {
    up = false;
  }
  if (up) ++q;
  if (q >= 0x7C00u) q = 0x7BFFu;  // a finite input never becomes Inf
  return static_cast<uint16_t>(sign | q);
}

}  // namespace didmark::detail
