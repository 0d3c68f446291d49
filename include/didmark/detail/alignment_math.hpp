#pragma once
// Per-element formulas of the alignment ops, shared by the CPU loops
// (engine/backend/cpu/alignment_cpu.cpp) and the CUDA kernels (kernels/alignment.cu).
//
// Descriptor sums are reduced in one fixed order on every device, in double over values rounded
// to float (the square of a float is exact in double, so fused and separate multiply-adds
// agree):
//  * row sums of squares: 32 lanes, lane l adding elements l, l + 32, l + 64, ... in order,
//    then the tree lane[i] += lane[i + h] for h = 16, 8, 4, 2, 1 (a warp does the same with
//    shuffles);
//  * column sums of squares: rows are cut into blocks of kAlignColBlock; each block adds its
//    rows in order, then the block partials are added in block order.
// Realigned values are (v * row_mul) * col_mul in float, in that order.
#include <cmath>
#include <cstdint>

#include "didmark/detail/config.hpp"
#include "didmark/detail/exact_math.hpp"
#include "didmark/detail/half.hpp"

namespace didmark::detail {

enum class AlignElem : uint32_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

inline constexpr int kAlignLanes = 32;
inline constexpr int64_t kAlignColBlock = 256;

/// Element i of a buffer of type t, as float (f64 rounds to nearest).
DIDMARK_HD DIDMARK_FORCEINLINE float align_load(const void* p, int64_t i, AlignElem t) {
  switch (t) {
    case AlignElem::f64: return static_cast<float>(static_cast<const double*>(p)[i]);
    case AlignElem::f16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case AlignElem::bf16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

/// Element i for the descriptor sums: rounded to float first (f64 inputs too), so that its
/// square is exact in double and a fused multiply-add gives the same sum as a separate one.
DIDMARK_HD DIDMARK_FORCEINLINE double align_load_f64(const void* p, int64_t i, AlignElem t) {
  return static_cast<double>(align_load(p, i, t));
}

DIDMARK_HD DIDMARK_FORCEINLINE double align_sq(double v) { return exact_mul(v, v); }

/// A realigned element: the suspect's value times the row's and the column's multipliers
/// (sign, undone scale, or 0 for a dropped or held-out slice).
DIDMARK_HD DIDMARK_FORCEINLINE float realign_value(float v, float row_mul, float col_mul) {
  return exact_mul(exact_mul(v, row_mul), col_mul);
}

/// int8 signature quantization of a value against its row's scale (max |v| of the row).
DIDMARK_HD DIDMARK_FORCEINLINE int8_t quantize_signature(float v, float scale) {
  if (!(scale > 0)) return 0;
  float q = v / scale * 127.0f;
  q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
  return static_cast<int8_t>(lrintf(q));
}
DIDMARK_HD DIDMARK_FORCEINLINE float dequantize_signature(int8_t q, float scale) {
  return static_cast<float>(q) * scale / 127.0f;
}

/// splitmix64 finalizer: the public hash behind the array sample (no key involved).
DIDMARK_HD DIDMARK_FORCEINLINE uint64_t align_mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace didmark::detail
