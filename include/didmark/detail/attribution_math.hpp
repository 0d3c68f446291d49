#pragma once
// Per-element formulas of attribution, shared by the CPU op table and the CUDA kernels
// ("one formula, two launchers"): the KNN-Shapley recursion step and the keyed Rademacher
// entry. Both sides call exactly these functions, so the projection matrix is bit-identical
// across devices and the recursion terms are identical (only their summation order differs).

#include <cstdint>

#include "didmark/detail/config.hpp"
#include "didmark/detail/philox.hpp"

namespace didmark::attribution {

// ---- KNN-Shapley (Jia et al. 2019), ranks 1-based, nearest first ----------------------

/// s_N: the value of the farthest of n points, 1[match] / K * min(K, n) / n.
DIDMARK_HD DIDMARK_FORCEINLINE double knn_shapley_last(bool match, int64_t n, int k) {
  if (!match) return 0.0;
  const int64_t m = n < k ? n : static_cast<int64_t>(k);
  return static_cast<double>(m) / (static_cast<double>(k) * static_cast<double>(n));
}

/// s_i - s_{i+1} for rank i < n: (1[match_i] - 1[match_{i+1}]) / K * min(K, i) / i.
DIDMARK_HD DIDMARK_FORCEINLINE double knn_shapley_step(bool match_i, bool match_next, int64_t i, int k) {
  const int diff = static_cast<int>(match_i) - static_cast<int>(match_next);
  if (diff == 0) return 0.0;
  const int64_t m = i < k ? i : static_cast<int64_t>(k);
  return static_cast<double>(diff) * static_cast<double>(m) / (static_cast<double>(k) * static_cast<double>(i));
}

// ---- Keyed Rademacher projection ---------------------------------------------------------

/// Counter word w of every Rademacher draw: "RAD0", a domain apart from the carriers.
inline constexpr uint32_t kRademacherDomain = 0x52414430u;
/// Entries per Philox call: one call gives the signs of 128 consecutive columns of a row.
inline constexpr int64_t kRademacherBlock = 128;

DIDMARK_HD DIDMARK_FORCEINLINE detail::u32x2 rademacher_key(uint64_t seed) {
  return detail::u32x2{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
}

/// The 128 sign bits of row `row`, columns [128 * block, 128 * block + 128): bit e (word
/// e / 32, bit e % 32) set means entry (row, 128 * block + e) is negative.
DIDMARK_HD DIDMARK_FORCEINLINE detail::u32x4 rademacher_bits(detail::u32x2 key, uint64_t row, uint32_t block) {
  const detail::u32x4 ctr{block, static_cast<uint32_t>(row), static_cast<uint32_t>(row >> 32), kRademacherDomain};
  return detail::philox4x32_10(ctr, key);
}

DIDMARK_HD DIDMARK_FORCEINLINE uint32_t rademacher_word(const detail::u32x4& r, uint32_t w) {
  return w == 0 ? r.x : w == 1 ? r.y : w == 2 ? r.z : r.w;
}

/// Entry e (0..127) of a block: -scale when its bit is set, +scale otherwise.
template <class T>
DIDMARK_HD DIDMARK_FORCEINLINE T rademacher_value(const detail::u32x4& r, uint32_t e, T scale) {
  return ((rademacher_word(r, e >> 5) >> (e & 31u)) & 1u) ? -scale : scale;
}

}  // namespace didmark::attribution
