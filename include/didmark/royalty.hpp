#pragma once
/// \file royalty.hpp
/// Exact royalty splitting: integer payouts, cascades of levels, signed statements.
///
/// Money is an unsigned 128-bit integer of minor units (cents, wei, ...); it is never a
/// floating-point number. Weights (scores) are exact rationals: a JSON number is the IEEE
/// double it denotes (m * 2^e, taken exactly), a decimal string is the decimal it spells.
///
/// The rule (didmark/largest-remainder/v1): revenue R over payees with weights w_i >= 0 gives
/// each payee floor(R * w_i / sum w); the units left over (fewer than the number of payees)
/// go one each to the largest remainders R * w_i mod sum w, ties to the smaller DID
/// (UTF-16 code-unit order, the order of RFC 8785). Payouts sum to exactly R, do not depend
/// on the order of the input, and are monotone in each payee's own weight.
///
/// A statement is a W3C Verifiable Credential 2.0 listing the inputs (revenue, policy,
/// weights) and the payouts, signed with the eddsa-jcs-2022 Data Integrity proof by the
/// operator's did:key. verify_statement() checks the signature, re-derives the payouts from
/// the inputs and checks that the file is byte for byte the canonical form that was signed.
///
/// Example:
/// \code
///   std::vector<didmark::Payee> ps = {{"did:web:a.example", didmark::Weight::from_double(70)},
///                                     {"did:web:b.example", didmark::Weight::from_double(30)}};
///   auto out = didmark::split(5, ps);
///   // exact shares 3.5 and 1.5; the one unit left goes to the larger remainder, a tie
///   // (0.5 each) broken by the smaller DID: did:web:a.example 4, did:web:b.example 1.
/// \endcode
/// docs/royalty.md has the formats, the rounding rule with worked examples and the policy file.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace didmark {

class Identity;

/// An amount of money in minor units, 0 .. 2^128 - 1.
__extension__ typedef unsigned __int128 Amount;
inline constexpr Amount kMaxAmount = ~Amount(0);

/// Decimal text of an amount ("0", "340282366920938463463374607431768211455").
std::string amount_to_string(Amount a);
/// Decimal digits only (no sign, no spaces, no leading '+'); leading zeros allowed.
/// Throws Errc::invalid_argument naming `what` when malformed or above 2^128 - 1.
Amount parse_amount(std::string_view text, std::string_view what = "amount");

/// An exact, finite weight.
class Weight {
 public:
  Weight() = default;
  /// A finite double, taken exactly (0.1 is 3602879701896397 / 2^55). NaN and infinities
  /// are refused (Errc::invalid_argument).
  static Weight from_double(double v);
  /// A decimal in JSON number syntax ("12", "-0.25", "1.5e-3"), taken exactly. At most 38
  /// significant digits; the value must be 0 or within 1e-100 .. 1e100.
  static Weight from_decimal(std::string_view text);

  bool is_decimal() const noexcept { return decimal_; }
  /// The double (from_double) or the nearest double (from_decimal).
  double to_double() const noexcept { return value_; }
  /// The decimal text as given (from_decimal only).
  const std::string& text() const noexcept { return text_; }
  /// -1, 0 or +1.
  int sign() const noexcept { return neg_ ? -1 : (mant_ == 0 ? 0 : 1); }

  /// value = (neg ? -1 : 1) * mantissa * 2^exp2 * 5^exp5, mantissa < 2^127 (internal use).
  Amount mantissa() const noexcept { return mant_; }
  int exp2() const noexcept { return e2_; }
  int exp5() const noexcept { return e5_; }

 private:
  Amount mant_ = 0;
  int e2_ = 0, e5_ = 0;
  bool neg_ = false;
  bool decimal_ = false;
  double value_ = 0;
  std::string text_;
};

/// A payee and its weight. Payee names are DIDs (any method).
struct Payee {
  std::string did;
  Weight weight;
};

/// What to do with negative weights (scores can be negative, money cannot).
enum class NegativeWeights : uint8_t {
  clip,    ///< negative weights count as 0 (default)
  shift,   ///< subtract the smallest weight from all when it is negative (it gets 0)
  refuse,  ///< Errc::invalid_argument naming the payee
};
std::string_view negative_weights_name(NegativeWeights p) noexcept;
std::optional<NegativeWeights> parse_negative_weights(std::string_view s) noexcept;

struct SplitOptions {
  NegativeWeights negative = NegativeWeights::clip;
  /// Receives everything when all weights are zero (after the negative policy). Without
  /// one, all-zero weights are refused (Errc::invalid_argument).
  std::optional<std::string> fallback;
};

/// A payee's DID and amount. `did` is a view into the text block of the result that holds
/// the payout (Payouts, CascadeResult): valid as long as that result, or a copy of it, lives.
struct Payout {
  std::string_view did;
  Amount amount = 0;
  bool operator==(const Payout&) const = default;  // compares the DIDs' text
};

namespace detail {
struct PayoutsAccess;
}

/// Payouts sorted by DID: a read-only sequence of Payout whose DIDs live in one block of text
/// (no allocation per payee). Copies are cheap and share the block; the views of a copy stay
/// valid after the original is gone.
class Payouts {
 public:
  using value_type = Payout;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using reference = const Payout&;
  using const_reference = const Payout&;
  using pointer = const Payout*;
  using const_pointer = const Payout*;
  using iterator = const Payout*;
  using const_iterator = const Payout*;

  Payouts() = default;
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  const Payout* data() const noexcept { return rows_; }
  const Payout* begin() const noexcept { return rows_; }
  const Payout* end() const noexcept { return rows_ + size_; }
  const Payout& operator[](std::size_t i) const noexcept { return rows_[i]; }
  const Payout& front() const noexcept { return rows_[0]; }
  const Payout& back() const noexcept { return rows_[size_ - 1]; }
  operator std::span<const Payout>() const noexcept { return {rows_, size_}; }
  friend bool operator==(const Payouts& a, const Payouts& b) noexcept {
    if (a.size_ != b.size_) return false;
    for (std::size_t i = 0; i < a.size_; ++i)
      if (!(a.rows_[i] == b.rows_[i])) return false;
    return true;
  }

 private:
  friend struct detail::PayoutsAccess;
  std::shared_ptr<const void> block_;  // owns the rows and the DID text
  const Payout* rows_ = nullptr;
  std::size_t size_ = 0;
};

/// Split `revenue` among `payees` by the largest-remainder rule. The result lists every payee
/// once (zero-weight payees with 0, plus the fallback when it was used), sorted by DID.
/// Refuses (Errc::invalid_argument) an empty list, duplicate DIDs, malformed DIDs and more
/// than 2^32 - 2 payees.
Payouts split(Amount revenue, std::span<const Payee> payees, const SplitOptions& options = {});

/// One level of a cascade: it keeps `keep_bps` basis points of what reaches it (rounded half
/// up: the same rule between "this level" and "the rest", ties to this level), splits that
/// among its payees and passes the rest to the next level. The last level keeps everything.
struct Level {
  std::string name;
  std::optional<int> keep_bps;  ///< 0..10000; unset means 10000 (required unset or 10000 on the last level)
  std::vector<Payee> payees;
  std::optional<std::string> fallback;  ///< overrides the policy's fallback for this level
};

struct Policy {
  std::vector<Level> levels;
  NegativeWeights negative = NegativeWeights::clip;
  std::optional<std::string> fallback;
};

struct LevelResult {
  std::string name;
  Amount received = 0;  ///< what reached this level
  Amount kept = 0;      ///< what its payees share
  Amount passed = 0;    ///< what went on to the next level
  Payouts payouts;      ///< this level's payees (sorted by DID)
  /// For each payout, the index of its payee in Level::payees, or kNotAPayee for a
  /// fallback that is not one of them.
  std::vector<uint32_t> payee_index;
  static constexpr uint32_t kNotAPayee = 0xffffffffu;
};

struct PathStep {
  std::size_t level = 0;  ///< index into CascadeResult::levels
  Amount amount = 0;
};

struct CascadeResult {
  Amount revenue = 0;
  /// The inputs, kept with the result (shared by copies): the DIDs of the payouts are views
  /// of its payees' DIDs, and make_statement() records its weights.
  std::shared_ptr<const Policy> policy;
  std::vector<LevelResult> levels;
  /// Every payee once with its total (the sum over the levels that paid it), sorted by DID;
  /// the totals sum to the revenue. With one level these are that level's payouts (shared).
  Payouts payees;
  /// How a payee's total came together: one step per level it appears in, in level order
  /// (empty for a DID that is not a payee).
  std::vector<PathStep> path(std::string_view did) const;
};

/// Run a cascade. The result keeps the policy (move it in to avoid a copy). Errc::invalid_argument
/// for an empty policy, bad basis points, or a level that cannot pay anybody (all-zero weights
/// and no fallback).
CascadeResult run_cascade(Amount revenue, Policy policy);

/// Read a weights file: a JSON object mapping payee DID to weight (a JSON number, or a
/// string in JSON number syntax for an exact decimal). Duplicate keys, malformed DIDs, and
/// integers that a double cannot hold exactly are refused with the file and key
/// (Errc::corrupt_input); a missing file is Errc::not_found.
std::vector<Payee> load_weights(const std::filesystem::path& path);

/// Read a cascade policy file (docs/royalty.md). A level's payees come from "weights"
/// (an inline object), "weights_file" (a path relative to the policy file) or
/// "weights": "input" (the `input` weights, e.g. the --weights file).
/// A level that takes "input" with `input` empty is refused (Errc::invalid_argument), as
/// is input given to a policy that never uses it.
Policy load_policy(const std::filesystem::path& path, std::span<const Payee> input);
/// The same from text held in memory (`source` names it in messages). "weights_file" levels
/// are read relative to `files_from`; without it (a request's policy) they are refused.
Policy parse_policy(std::string_view text, std::string_view source, std::span<const Payee> input,
                    const std::optional<std::filesystem::path>& files_from = std::nullopt);

/// A policy of one level holding `input`.
Policy single_level_policy(std::vector<Payee> input, NegativeWeights negative = NegativeWeights::clip,
                           std::optional<std::string> fallback = std::nullopt);

/// The current time as RFC 3339 UTC to the second ("2026-11-25T12:00:00Z"): the default
/// statement timestamp.
std::string utc_now();

struct StatementOptions {
  /// RFC 3339 UTC time ("2026-11-25T12:00:00Z") for validFrom and the proof's created.
  /// Empty: now.
  std::string timestamp;
  /// Optional label of the minor unit ("USD cents"); recorded as credentialSubject.unit.
  std::string unit;
};

/// The signed statement of a cascade: its inputs (the result's policy and revenue) and
/// payouts, as the canonical (RFC 8785) bytes of the credential with its proof, and a newline.
/// Deterministic for the same result and timestamp. Errc::invalid_argument when `operator_id`
/// is empty or `result` was not made by run_cascade().
std::string make_statement(const CascadeResult& result, const Identity& operator_id,
                           const StatementOptions& options = {});

/// What verify_statement found.
struct StatementCheck {
  bool valid = false;           ///< everything below holds
  bool signature_ok = false;    ///< the eddsa-jcs-2022 proof verifies under the issuer's did:key
  bool payouts_ok = false;      ///< the payouts re-derived from the inputs equal the stated ones
  bool canonical_ok = false;    ///< the file is exactly the canonical bytes (+ one newline)
  /// The document claims to be a credential (a JSON object with '@context' and a 'proof'):
  /// false means the file is some other JSON (weights, a policy, an identity), not a bad statement.
  bool is_credential = false;
  std::string reason;           ///< the first failure, in words (empty when valid)
  std::string issuer;
  std::string created;
  Amount revenue = 0;
  std::size_t payees = 0;
  std::size_t levels = 0;
};

/// Check a statement's bytes. Errc::corrupt_input only when the text is not JSON at all;
/// every other defect is reported as valid = false with the reason.
StatementCheck verify_statement(std::string_view bytes);

/// RFC 8785 canonical form of a JSON text (errors: Errc::corrupt_input with the position).
std::string canonicalize_json(std::string_view json_text);

}  // namespace didmark
