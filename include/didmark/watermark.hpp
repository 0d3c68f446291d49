#pragma once
/// \file watermark.hpp
/// Blind watermarks in sets of named tensors (model weights, arrays).
///
/// A mark is a payload of L bits (default 256, usually the owner DID's codeword) spread over
/// the eligible tensors with a secret 256-bit key. Verification needs the key and the
/// tensors, never the original. Two schemes share one interface and the same two Backend
/// passes (correlate, carrier_add):
///  * Scheme::spread_spectrum (default): every element moves by a keyed +-alpha, with alpha
///    a fraction of the tensor's RMS; detection is a correlation with a Hoeffding bound.
///    Survives noise, casts, quantization and magnitude pruning (docs/watermark.md).
///  * Scheme::stdm: spread-transform dither modulation; each bit's projection is quantized
///    onto a keyed lattice. Far less distortion for the same bit reliability, but pruning
///    and heavy quantization break it.
///
/// Example:
/// \code
///   didmark::WatermarkKey key = didmark::WatermarkKey::from_hex(hex);
///   didmark::Payload payload = didmark::Payload::from_bits(codeword_bits);
///   auto er = didmark::embed_in_place(tensors, key, payload, {});
///   auto vr = didmark::verify(tensors, key, payload, {});
///   if (vr.detected) ...   // p_value <= 1e-9
/// \endcode

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/detail/carrier.hpp"
#include "didmark/tensor.hpp"

namespace didmark {

/// The secret that keys carriers: exactly 32 bytes.
struct WatermarkKey {
  std::array<uint8_t, 32> bytes{};

  /// From 64 hex digits; throws Errc::invalid_argument on any other length or a non-hex digit.
  static WatermarkKey from_hex(std::string_view hex);
  /// From exactly 32 bytes; throws Errc::invalid_argument otherwise.
  static WatermarkKey from_bytes(std::span<const uint8_t> raw);
  std::string to_hex() const;
  bool operator==(const WatermarkKey&) const = default;
};

/// The bits a mark carries, one byte (0 or 1) per bit.
struct Payload {
  std::vector<uint8_t> bits;

  /// Throws Errc::invalid_argument when empty, longer than kMaxPayloadBits, or not 0/1.
  static Payload from_bits(std::vector<uint8_t> bits);
  /// The first `nbits` bits of `bytes`, least significant bit of each byte first.
  static Payload from_bytes(std::span<const uint8_t> bytes, std::size_t nbits);
  std::size_t size() const noexcept { return bits.size(); }
};

inline constexpr std::size_t kMaxPayloadBits = 4096;
inline constexpr std::size_t kDefaultPayloadBits = 256;

/// spread_spectrum and stdm are marks; `automatic` is for verification only: both tests run on
/// the same pass and the report names the one that matched (its p-value doubled, Bonferroni
/// over the two tests).
enum class Scheme : uint8_t { spread_spectrum, stdm, automatic };
std::string_view scheme_name(Scheme s) noexcept;
std::optional<Scheme> parse_scheme(std::string_view s) noexcept;

/// Which tensors take part. By default: floating dtypes, rank >= 2, at least 4096 elements,
/// and names that do not look like norms, biases or position tables.
struct EligibilityPolicy {
  int64_t min_elements = 4096;
  int min_rank = 2;
  /// Regular expressions (RE2 syntax: the ECMAScript subset without backreferences or
  /// lookaround), case-insensitive, searched anywhere in the name: a match skips. Matching
  /// takes time linear in the name (RE2, no backtracking); patterns are at most
  /// kMaxTensorPatternBytes long, and names longer than kMaxTensorNameBytes are never eligible.
  std::vector<std::string> skip_patterns = default_skip_patterns();
  /// When non-empty, only names this regular expression matches (RE2 syntax, case-sensitive,
  /// searched anywhere in the name) are eligible; at most kMaxTensorPatternBytes long.
  std::string include_regex;
  /// When non-empty, exactly these tensors: each must exist, be floating, non-empty and
  /// finite (violations are errors, not skips). Size, rank and pattern rules do not apply.
  std::vector<std::string> names;

  static std::vector<std::string> default_skip_patterns();
};

struct WatermarkOptions {
  Scheme scheme = Scheme::spread_spectrum;
  /// Target relative change ||dw|| / ||w|| per tensor. Unset: 0.005 for spread spectrum,
  /// 0.001 for STDM (the STDM test needs the embed strength: its lattice step follows it).
  /// 16-bit tensors add their rounding on top (reported exactly).
  std::optional<double> strength;
  /// Spread spectrum only: fraction (0..1) of the host's own projection removed per bit
  /// (improved spread spectrum, Malvar & Florencio 2003). Costs ~lambda*sqrt(L/N) extra
  /// relative change and a second pass; the known-payload test does not need it.
  double lambda = 0.0;
  /// Embed fails (report.within_budget = false) when a tensor's change exceeds this.
  double max_relative_change = 0.01;
  /// Verification: `detected` when the p-value (bound) is at most this.
  double p_threshold = 1e-9;
  EligibilityPolicy policy;
  /// Called on the calling thread before each tensor and once at the end with the elements
  /// done so far and the total (for a progress bar; it must not throw).
  std::function<void(int64_t done, int64_t total)> progress;

  /// The strength `scheme` uses (for automatic: spread spectrum's).
  double effective_strength() const noexcept;
  /// The strength a given scheme uses under these options.
  double strength_for(Scheme s) const noexcept;
  /// Ask for strength `s` and let the change budget follow it: max_relative_change becomes
  /// at least 2 s, room for 16-bit rounding on top of the step. (Set max_relative_change
  /// afterwards to pin the budget.)
  void set_strength(double s) noexcept;
};

struct NamedTensor {
  std::string name;
  TensorView view;
};

/// What happened to one tensor.
struct TensorReport {
  std::string name;
  DType dtype = DType::f32;
  int64_t elements = 0;
  bool used = false;         ///< marked (embed) or counted in the statistic (verify)
  std::string skip_reason;   ///< why not, when !used
  double relative_change = 0;  ///< embed: ||dw|| / ||w|| as stored
  double z = 0;              ///< verify (spread spectrum): this tensor's own z-score
  /// verify: NaN/Inf elements, left out of the statistic (as if 0); the tensor still counts.
  int64_t nonfinite = 0;
};

struct EmbedReport {
  std::vector<TensorReport> tensors;
  int tensors_marked = 0;
  int64_t elements_marked = 0;
  double relative_change = 0;  ///< over all marked tensors: sqrt(sum ||dw||^2 / sum ||w||^2)
  double max_tensor_change = 0;
  bool within_budget = true;
  /// Spread spectrum: the z-score a verification should see, strength * sqrt(elements).
  /// Below hoeffding_z_threshold(p) the set is too small to prove at this strength.
  double expected_z = 0;
  Scheme scheme = Scheme::spread_spectrum;
  double strength = 0;
  double seconds = 0;
  std::string backend;
};

struct VerifyReport {
  bool detected = false;
  double z = 0;          ///< spread spectrum: combined z-score (STDM: normal equivalent of p)
  double p_value = 1;    ///< spread spectrum: Hoeffding bound exp(-z^2/2); STDM: exact binomial tail
  double log10_p = 0;    ///< log10 of p_value, finite where p_value underflows
  int bits = 0;
  int bit_errors = 0;    ///< decoded bits that differ from the expected payload
  int64_t elements = 0;          ///< finite elements tested
  int tensors = 0;
  /// NaN/Inf elements found in the tested tensors. They are left out of the statistic; the
  /// carriers at those positions are independent of the rest, so the bound still holds on
  /// the finite elements (docs/watermark.md).
  int64_t nonfinite = 0;
  std::vector<float> soft_bits;   ///< per-bit z (spread spectrum) or mean lattice agreement (STDM)
  std::vector<uint8_t> decoded;   ///< hard decisions
  std::vector<TensorReport> per_tensor;
  /// The scheme tested (with Scheme::automatic asked: the one that matched better).
  Scheme scheme = Scheme::spread_spectrum;
  /// Set by verify_screened (registry_scan.hpp) for a claim the screen did not keep: z and
  /// p_value are those of the spread-spectrum test on the screen's sample (`elements` sampled
  /// elements), nothing was decoded, and the claim is not detected.
  bool screened = false;
  double seconds = 0;
};

/// Mark `src` into `dst` (same names, shapes and dtypes, in the same order). dst may be the
/// same memory as src (in place). Tensors not marked are copied unchanged into dst.
EmbedReport embed(std::span<const NamedTensor> src, std::span<const NamedTensor> dst, const WatermarkKey& key,
                  const Payload& payload, const WatermarkOptions& options, Backend& backend = default_backend());

EmbedReport embed_in_place(std::span<const NamedTensor> tensors, const WatermarkKey& key, const Payload& payload,
                           const WatermarkOptions& options, Backend& backend = default_backend());

/// Is the mark of (key, payload) in these tensors? Blind: needs no original.
VerifyReport verify(std::span<const NamedTensor> tensors, const WatermarkKey& key, const Payload& expected,
                    const WatermarkOptions& options, Backend& backend = default_backend());

/// One claim to test: a key and the payload it should carry.
struct Claim {
  WatermarkKey key;
  Payload payload;
};

/// verify() for many claims; every tensor is read once for all of them.
std::vector<VerifyReport> verify_many(std::span<const NamedTensor> tensors, std::span<const Claim> claims,
                                      const WatermarkOptions& options, Backend& backend = default_backend());

/// Recover the bits of an unknown payload of `num_bits` bits under `key`. The report's
/// p_value/detected refer to nothing (no expected payload): read soft_bits and decoded.
VerifyReport decode(std::span<const NamedTensor> tensors, const WatermarkKey& key, std::size_t num_bits,
                    const WatermarkOptions& options, Backend& backend = default_backend());

/// The carrier of tensor `name` under `key` (carrier v1, see detail/carrier.hpp).
detail::CarrierSpec derive_carrier(const WatermarkKey& key, std::string_view name, uint32_t num_bits);
/// derive_carrier(key, name, num_bits) from the name's FNV-1a 64 hash (detail::fnv1a64), for
/// callers that derive one tensor's carrier for many keys.
detail::CarrierSpec derive_carrier_hashed(const WatermarkKey& key, uint64_t name_hash, uint32_t num_bits);
/// derive_carrier_hashed(key, name_hashes[i], num_bits) into out[i * stride] for every i, several
/// names per pass (for callers that derive many tensors' carriers for many keys).
void derive_carriers_hashed(const WatermarkKey& key, std::span<const uint64_t> name_hashes, uint32_t num_bits,
                            detail::CarrierSpec* out, std::size_t stride = 1);
/// The carrier of a numbered stream (e.g. a dataset row id) under `key`, in a domain
/// separate from tensor names.
detail::CarrierSpec derive_carrier(const WatermarkKey& key, uint64_t stream_id, uint32_t num_bits);

/// Hoeffding bound on P(Z >= z) for the spread-spectrum statistic: exp(-z^2/2), 1 for z <= 0.
double hoeffding_p_value(double z) noexcept;
/// log10 of hoeffding_p_value, exact where the value underflows.
double hoeffding_log10_p(double z) noexcept;
/// log10 P(X >= k) for X ~ Binomial(n, 1/2), exact summation in log space.
double binomial_tail_log10(int n, int k) noexcept;
/// z with exp(-z^2/2) = p: the threshold z for a p-value (6.44 for 1e-9).
double hoeffding_z_threshold(double p) noexcept;

/// How far above hoeffding_z_threshold an embed's expected z must be for the mark to count as
/// provable (weak marks are refused unless asked for): a marked file's z is about
/// expected_z + N(0, 1), so a margin of 2 is detected in 97.7% of files rather than a coin flip.
inline constexpr double kWeakMarginZ = 2.0;
/// The z an embed must expect at p-threshold `p`: hoeffding_z_threshold(p) + kWeakMarginZ.
inline double provable_z(double p) noexcept { return hoeffding_z_threshold(p) + kWeakMarginZ; }

}  // namespace didmark
