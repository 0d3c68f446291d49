#pragma once
// Internals of the split shared with the statement code and the tests.
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "didmark/royalty.hpp"

namespace didmark::detail {

/// Indices of `ids` in ascending byte order (= UTF-16 order for the ASCII of DIDs).
std::vector<uint32_t> sorted_order(std::span<const std::string_view> ids);

/// Walking payees in sorted (so random) memory order stalls on every cache miss; touching
/// the payee `kAhead` steps ahead, and its DID's characters half as far ahead, overlaps them.
inline constexpr std::size_t kPrefetchAhead = 16;
inline void prefetch(const void* p) {
#if defined(__x86_64__)
  // GCC 12 drops __builtin_prefetch in these loops (measured); an asm statement stays.
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}
inline void prefetch_payee(std::span<const Payee> payees, std::span<const uint32_t> order, std::size_t k) {
  if (k + kPrefetchAhead < order.size()) prefetch(payees.data() + order[k + kPrefetchAhead]);
  if (k + kPrefetchAhead / 2 < order.size()) prefetch(payees[order[k + kPrefetchAhead / 2]].did.data());
}

/// A weight reduced to its exact value, packed for sequential passes over many payees.
struct ExactWeight {
  Amount mant = 0;  ///< |value| = mant * 2^e2 * 5^e5
  int32_t e2 = 0, e5 = 0;
  int32_t sign = 0;  ///< -1, 0, +1
};
inline ExactWeight exact_weight(const Weight& w) {
  return {w.mantissa(), w.exp2(), w.exp5(), w.sign()};
}

/// The split over weights already in id order (ties go to the smaller index); nullopt when
/// every weight is zero after the negative policy. NegativeWeights::refuse must have been
/// checked by the caller (it is treated as clip here).
std::optional<std::vector<Amount>> split_sorted(Amount revenue, std::span<const ExactWeight> ws,
                                                NegativeWeights negative);

}  // namespace didmark::detail
