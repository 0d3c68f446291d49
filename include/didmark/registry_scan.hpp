#pragma once
/// \file registry_scan.hpp
/// One checkpoint against a whole registry at the cost of a few owners: screen, then confirm.
///
/// A marked model does not need all of its elements to be recognised: the known-payload z of
/// a spread-spectrum mark at strength s over n elements is about s * sqrt(n). So every owner
/// is first scored on a sample of the model — chosen from sizes and a seed, never from a key,
/// so the Hoeffding bound holds on it — in one pass for all keys (Backend::screen), and only
/// the owners whose sample z stands out (the candidates) take the ordinary full pass
/// (verify_many). A candidate's report is that full pass, bit for bit what verify() gives;
/// the others get the report of their sample (VerifyReport::screened).
///
/// The screen has up to three nested stages: a sample sized for z = 5/sqrt(2) at the assumed
/// strength for every owner (kept when z >= -0.5), twice that for the survivors (sized for
/// z = 5, kept when z >= 1.5), then the full-size sample (sized for ScreenOptions::z_target).
/// Each sample holds the one before it, so a stage only reads the groups the previous one
/// lacked and a survivor's z is that of the whole sample so far. An intact mark at the assumed
/// strength goes on with probability 1 - 3e-5 and 1 - 2.3e-4; about 6% of unmarked owners
/// reach the last stage. A stage is left out when its sample would not be at most half the
/// next one. A model small enough that the final sample would be all of it ends at stride 1:
/// nothing is left out.
///
/// What a screen can miss: a mark much weaker than the assumed strength (a model averaged
/// with its unmarked original, for instance), whose sample z falls under the candidate
/// threshold while the full model would still prove it, and STDM marks (their lattice test
/// has no meaning on a sample). Screening is therefore automatic only for many owners, and
/// ScreenMode::off restores the exhaustive full pass (docs/watermark.md#many-owners).
///
/// Family-wise error: with K owners tested in one call, a per-test p-value p becomes
/// family_log10_p(log10 p, K) (Šidák: 1 - (1 - p)^K). The owners' carriers are independent
/// given the weights, so the correction holds, and it must count every owner the screen looked
/// at, not only the candidates (a candidate was selected because its sample scored high).
///
/// Example:
/// \code
///   didmark::ScreenSummary how;
///   auto reports = didmark::verify_screened(tensors, claims, {}, {}, backend, &how);
///   for (std::size_t k = 0; k < reports.size(); ++k)
///     if (family_log10_p(reports[k].log10_p, claims.size()) <= -9) ...  // 1e-9 family-wise
/// \endcode

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/watermark.hpp"

namespace didmark {

/// When verify_screened screens.
enum class ScreenMode : uint8_t {
  automatic,  ///< when at least ScreenOptions::min_claims claims are tested and the scheme allows it
  on,         ///< whenever the scheme allows it (not STDM)
  off,        ///< never: every claim takes the full pass (verify_many)
};
/// "auto", "on", "off".
std::string_view screen_mode_name(ScreenMode m) noexcept;
std::optional<ScreenMode> parse_screen_mode(std::string_view s) noexcept;

inline constexpr double kDefaultScreenZ = 10.0;
inline constexpr std::size_t kDefaultScreenMinClaims = 32;

struct ScreenOptions {
  ScreenMode mode = ScreenMode::automatic;
  /// ScreenMode::automatic screens from this many claims on.
  std::size_t min_claims = kDefaultScreenMinClaims;
  /// The final sample holds (z_target / strength)^2 elements: an intact mark at the assumed
  /// strength reaches z_target on it (4M elements at 0.5% for the default 10).
  double z_target = kDefaultScreenZ;
  /// Strength assumed for sizing; unset: the options' spread-spectrum strength (0.005).
  std::optional<double> strength;
  /// A claim is a candidate when its final sample z is at least this. Unset:
  /// sqrt(2 ln(100 K)) for K claims, i.e. at most 0.01 false candidates per call in
  /// expectation under the Hoeffding bound (5.25 for K = 10^4).
  std::optional<double> candidate_z;
  /// Seed of the sampled groups' per-tensor phases. 0: a fresh random seed per call, so an
  /// uploader cannot aim at the sampled blocks (a marketplace should keep it that way, or use
  /// a secret seed); any other value makes the screen reproducible.
  uint64_t seed = 0;
};

/// One stage of a screen.
struct ScreenStage {
  int64_t stride = 1;         ///< groups of 1024 elements per sampled group
  int64_t elements = 0;       ///< finite elements in the sample
  std::size_t claims = 0;     ///< claims scored
  double threshold = 0;       ///< z a claim needed to go on (the last stage: candidate_z)
  std::size_t passed = 0;     ///< claims at or above it
  double seconds = 0;
};

/// What verify_screened did.
struct ScreenSummary {
  bool screened = false;      ///< false: every claim took the full pass (`reason` says why)
  std::string reason;
  std::size_t claims = 0;
  int64_t model_elements = 0;  ///< elements of the eligible tensors
  double strength = 0;         ///< assumed for sizing
  std::vector<ScreenStage> stages;
  std::size_t candidates = 0;  ///< claims confirmed by the full pass
  double screen_seconds = 0;
  double confirm_seconds = 0;
};

/// verify_many for many claims at the cost of a few: screen every claim on a key-independent
/// sample, confirm the candidates with the full pass. Reports come in claim order; those of
/// candidates are verify_many's, the others have `screened` set (z and p of the sample, no
/// decoded bits, never detected). With ScreenMode::off, too few claims for automatic, or
/// Scheme::stdm, this is verify_many (summary->reason says which).
std::vector<VerifyReport> verify_screened(std::span<const NamedTensor> tensors, std::span<const Claim> claims,
                                          const WatermarkOptions& options, const ScreenOptions& screen,
                                          Backend& backend = default_backend(), ScreenSummary* summary = nullptr);

/// log10 of the Šidák family-wise p-value 1 - (1 - p)^tests from log10 p (exact where p
/// underflows; tests = 0 counts as 1).
double family_log10_p(double log10_p, std::size_t tests) noexcept;

/// Sample z at or above which a screen keeps a claim among `claims` (the default candidate_z).
double default_candidate_z(std::size_t claims) noexcept;

}  // namespace didmark
