#pragma once
/// \file embed_math.hpp
/// Per-element formulas of the watermark passes, shared by the CPU loops
/// (engine/backend/cpu) and the CUDA kernels (kernels/carrier.cu): one formula, two
/// launchers, so both devices store bit-identical marked values.

#include <cstdint>
#include <cstring>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/config.hpp"
#include "didmark/detail/half.hpp"

namespace didmark::detail {

/// Storage types for 16-bit floats (bits only; arithmetic goes through f32).
struct half_t {
  uint16_t bits;
};
struct bfloat16_t {
  uint16_t bits;
};

/// The type sums are accumulated in: double for f64 tensors, float otherwise.
template <class T>
struct acc_type {
  using type = float;
};
template <>
struct acc_type<double> {
  using type = double;
};
template <class T>
using acc_t = typename acc_type<T>::type;

DIDMARK_HD DIDMARK_FORCEINLINE float to_acc(float v) { return v; }
DIDMARK_HD DIDMARK_FORCEINLINE double to_acc(double v) { return v; }
DIDMARK_HD DIDMARK_FORCEINLINE float to_acc(half_t v) { return f16_to_f32(v.bits); }
DIDMARK_HD DIDMARK_FORCEINLINE float to_acc(bfloat16_t v) { return bf16_to_f32(v.bits); }

DIDMARK_HD DIDMARK_FORCEINLINE bool is_finite(float v) { return (f32_bits(v) & 0x7F800000u) != 0x7F800000u; }
DIDMARK_HD DIDMARK_FORCEINLINE bool is_finite(double v) {
#if defined(__CUDA_ARCH__)
  const uint64_t u = static_cast<uint64_t>(__double_as_longlong(v));
#else
  uint64_t u;
  std::memcpy(&u, &v, 8);
#endif
  return (u & 0x7FF0000000000000ull) != 0x7FF0000000000000ull;
}

/// The embed step for one element: v + c * delta, rounded to v's type (stochastic rounding
/// with `dither` for 16-bit types). Non-finite inputs come back unchanged.
DIDMARK_HD DIDMARK_FORCEINLINE float embed_element(float v, float delta, uint32_t sign_bit, uint32_t) {
  return is_finite(v) ? v + apply_sign(delta, sign_bit) : v;
}
DIDMARK_HD DIDMARK_FORCEINLINE double embed_element(double v, float delta, uint32_t sign_bit, uint32_t) {
  return is_finite(v) ? v + static_cast<double>(apply_sign(delta, sign_bit)) : v;
}
DIDMARK_HD DIDMARK_FORCEINLINE half_t embed_element(half_t v, float delta, uint32_t sign_bit, uint32_t dither) {
  const float f = f16_to_f32(v.bits);
  if (!is_finite(f)) return v;
  return half_t{f32_to_f16_sr(f + apply_sign(delta, sign_bit), dither)};
}
DIDMARK_HD DIDMARK_FORCEINLINE bfloat16_t embed_element(bfloat16_t v, float delta, uint32_t sign_bit,
                                                         uint32_t dither) {
  const float f = bf16_to_f32(v.bits);
  if (!is_finite(f)) return v;
  return bfloat16_t{f32_to_bf16_sr(f + apply_sign(delta, sign_bit), dither)};
}

}  // namespace didmark::detail
