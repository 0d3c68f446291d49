#pragma once
// The array mark's per-row formulas, shared by the CPU loops and kernels/dataset_array.cu.
//
// Row r of D elements has its own carrier v1 (detail/carrier.hpp) keyed by the row id:
// element j belongs to block g = j / 128, its sign is bit (j % 128) of the block's Philox
// output, and the block carries payload bit (g + bit_offset) mod L.
//
// The embed step size must come out the same on every device, so the row's sum of squares is
// reduced in a fixed order: 32 lanes, lane l adding elements l, l + 32, l + 64, ... in
// order (in double; squares of 32-bit and 16-bit values are exact in double), then the tree
// lane[i] += lane[i + h] for h = 16, 8, 4, 2, 1. A warp does exactly this with shuffles.
// alpha = float(strength * sqrt(ss / D)); element j becomes round(x_j + c_j * s_b * alpha)
// with round-to-nearest for f32/f64 and keyed stochastic rounding for f16/bf16.
#include <cmath>
#include <cstdint>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/config.hpp"
#include "didmark/detail/embed_math.hpp"
#include "didmark/detail/exact_math.hpp"
#include "didmark/detail/half.hpp"

namespace didmark::dataset {

inline constexpr int kLanes = 32;

enum class ElemType : uint32_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

template <ElemType T>
struct Elem;
template <>
struct Elem<ElemType::f32> {
  using storage = float;
  DIDMARK_HD static DIDMARK_FORCEINLINE double load(const storage* p, int64_t j) { return static_cast<double>(p[j]); }
};
template <>
struct Elem<ElemType::f64> {
  using storage = double;
  DIDMARK_HD static DIDMARK_FORCEINLINE double load(const storage* p, int64_t j) { return p[j]; }
};
template <>
struct Elem<ElemType::f16> {
  using storage = uint16_t;
  DIDMARK_HD static DIDMARK_FORCEINLINE double load(const storage* p, int64_t j) {
    return static_cast<double>(detail::f16_to_f32(p[j]));
  }
};
template <>
struct Elem<ElemType::bf16> {
  using storage = uint16_t;
  DIDMARK_HD static DIDMARK_FORCEINLINE double load(const storage* p, int64_t j) {
    return static_cast<double>(detail::bf16_to_f32(p[j]));
  }
};

using detail::exact_add;
using detail::exact_mul;

/// The embed step of a row from its fixed-order sum of squares.
DIDMARK_HD DIDMARK_FORCEINLINE float row_alpha(double sum_sq, int64_t dim, double strength) {
  return static_cast<float>(exact_mul(strength, sqrt(sum_sq / static_cast<double>(dim))));
}

/// Element j of a row after the embed step; `step` is alpha * s_b for j's block. The
/// weight mark's own element step (embed_math.hpp), so both marks round alike.
template <ElemType T>
DIDMARK_HD DIDMARK_FORCEINLINE typename Elem<T>::storage embed_elem(typename Elem<T>::storage v, float step,
                                                                   const detail::u32x4& r, uint32_t e) {
  const uint32_t sign = detail::carrier_sign_bit(r, e);
  if constexpr (T == ElemType::f32 || T == ElemType::f64) {
    return detail::embed_element(v, step, sign, 0u);
  } else if constexpr (T == ElemType::f16) {
    return detail::embed_element(detail::half_t{v}, step, sign, detail::carrier_dither(r, e)).bits;
  } else {
    return detail::embed_element(detail::bfloat16_t{v}, step, sign, detail::carrier_dither(r, e)).bits;
  }
}

/// Is x finite (NaN and Inf fail)?
DIDMARK_HD DIDMARK_FORCEINLINE bool is_finite(double x) { return detail::is_finite(x); }

/// Per-row result of the array embed pass (written by the CPU loop and the CUDA kernel).
struct RowEmbedStats {
  double src_sq = 0;    ///< sum x^2 (fixed-order sum, the one alpha came from)
  double dst_sq = 0;    ///< sum y^2 as stored
  double dot = 0;       ///< sum x*y
  uint32_t status = 0;  ///< kRowOk, kRowZero or kRowNonFinite (those two are copied unchanged)
};
inline constexpr uint32_t kRowOk = 0, kRowZero = 1, kRowNonFinite = 2;

}  // namespace didmark::dataset
