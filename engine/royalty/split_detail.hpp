#pragma once
// Internals of the split shared with the statement code and the tests.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "didmark/royalty.hpp"

namespace didmark::detail {

/// Indices of `ids` in ascending byte order (= UTF-16 order for the ASCII of DIDs).
std::vector<uint32_t> sorted_order(std::span<const std::string_view> ids);

/// Walking payees in sorted order, not memory order, misses the cache on every payee (and,
/// in a VM with 4 KiB pages, the TLB). Only a short loop body keeps many misses in flight: a
/// long one (validating, formatting) waits out each miss in turn (measured: 300 ns a payee
/// when formatting JSON between reads; software prefetches did not help). So such walks go
/// in chunks: a short loop gathers what a chunk of payees needs, then the long loop works on
/// the gathered copy from the cache.
inline constexpr std::size_t kChunk = 1024;

/// Reads the first and last byte of `s` (brings its cache lines in); returns them.
inline unsigned touch(std::string_view s) noexcept {
  return s.empty() ? 0u : static_cast<unsigned char>(s.front()) + static_cast<unsigned char>(s.back());
}
/// Keeps a value (the sum of touch()es) from being optimized away.
inline void keep(unsigned v) noexcept {
#if defined(__GNUC__)
  asm volatile("" : : "r"(v));
#else
  static volatile unsigned sink;
  sink = v;
#endif
}

/// A weight reduced to its exact value, packed (24 bytes) for sequential passes over many
/// payees: |value| = mant * 2^e2 * 5^e5 (exponents of doubles and of the decimals Weight
/// accepts fit in 16 bits).
struct ExactWeight {
  uint64_t mant_lo = 0, mant_hi = 0;
  int16_t e2 = 0, e5 = 0;
  int8_t sign = 0;  ///< -1, 0, +1
  Amount mant() const noexcept { return (static_cast<Amount>(mant_hi) << 64) | mant_lo; }
};
inline ExactWeight exact_weight(const Weight& w) {
  return {static_cast<uint64_t>(w.mantissa()), static_cast<uint64_t>(w.mantissa() >> 64), static_cast<int16_t>(w.exp2()),
          static_cast<int16_t>(w.exp5()), static_cast<int8_t>(w.sign())};
}

/// Which arithmetic split_sorted may use (tests compare the two).
enum class SplitArithmetic : uint8_t {
  automatic,  ///< 128-bit weights and 192-bit products when they suffice, else big integers
  big,        ///< always the big-integer path
};

/// The split over weights already in id order (ties go to the smaller index): sets
/// out[i].amount for i < ws.size() and returns true, or returns false (and writes nothing)
/// when every weight is zero after the negative policy. NegativeWeights::refuse must have
/// been checked by the caller (it is treated as clip here).
/// `scratch`, when given, holds 9 bytes per weight for the fractions (else they are allocated).
bool split_sorted(Amount revenue, std::span<const ExactWeight> ws, NegativeWeights negative, Payout* out,
                  SplitArithmetic arithmetic = SplitArithmetic::automatic, std::byte* scratch = nullptr);
/// Convenience for tests: the amounts, or nullopt when every weight is zero.
std::optional<std::vector<Amount>> split_sorted(Amount revenue, std::span<const ExactWeight> ws,
                                                NegativeWeights negative, SplitArithmetic arithmetic);

/// Builds Payouts: rows and one block of DID text, owned together.
struct PayoutsAccess {
  /// A row's weight as given, recorded next to the payouts of a cascade level for the
  /// statement (which then reads them in order): a double, or a decimal's text.
  struct WeightRecord {
    double value = 0;
    const std::string* decimal = nullptr;  // in the cascade's policy
  };
  struct Block {
    std::unique_ptr<char[]> text;  // the DIDs, when copied (see split_impl)
    std::size_t text_size = 0;
    std::size_t text_used = 0;  // bytes of DID text the rows view
    std::vector<Payout> rows;
    std::vector<WeightRecord> weights;  // per row, for cascade levels (else empty)
    std::vector<std::shared_ptr<const void>> keep;  // what else the rows' DIDs point into
  };
  static Payouts make(std::shared_ptr<Block> block) {
    Payouts p;
    p.rows_ = block->rows.data();
    p.size_ = block->rows.size();
    p.block_ = std::move(block);
    return p;
  }
  static const std::shared_ptr<const void>& block(const Payouts& p) { return p.block_; }
  /// The weights recorded next to the payouts (empty when none were).
  static std::span<const WeightRecord> weights(const Payouts& p) {
    if (!p.block_) return {};
    const auto* b = static_cast<const Block*>(p.block_.get());
    return b->rows.data() == p.rows_ && b->weights.size() == b->rows.size() ? std::span<const WeightRecord>(b->weights)
                                                                            : std::span<const WeightRecord>();
  }
  /// Whether the payouts view (and keep alive) `owner`'s DIDs: a cascade level split from it.
  static bool views(const Payouts& p, const void* owner) {
    if (!p.block_ || owner == nullptr) return false;
    const auto* b = static_cast<const Block*>(p.block_.get());
    return b->rows.data() == p.rows_ && !b->keep.empty() && b->keep.front().get() == owner;
  }
  /// The bytes of DID text the payouts view.
  static std::size_t text_bytes(const Payouts& p) {
    return p.block_ ? static_cast<const Block*>(p.block_.get())->text_used : 0;
  }
};

}  // namespace didmark::detail
