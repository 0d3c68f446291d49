// verify_screened: every claim scored on a key-independent sample in one pass per tensor
// (Backend::screen), the candidates confirmed by the ordinary full pass.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

#include "common/thread_pool.hpp"
#include "didmark/detail/hash.hpp"
#include "didmark/detail/screen_math.hpp"
#include "didmark/error.hpp"
#include "didmark/registry_scan.hpp"
#include "watermark/eligibility.hpp"

namespace didmark {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// The first of two stages: sized for z = 5 at the assumed strength and passed at z >= 1.5, so an
// intact mark goes on with probability 1 - 2.3e-4 while ~6.7% of unmarked claims do.
constexpr double kStage1Z = 5.0;
constexpr double kStage1Keep = 1.5;

/// An eligible tensor of the screen.
struct Target {
  const NamedTensor* tensor;
  uint64_t name_hash;
  int64_t groups;
};

struct StageResult {
  std::vector<double> z;  // per scored claim
  int64_t elements = 0;
  int64_t nonfinite = 0;
  int tensors = 0;
};

int64_t phase_of(uint64_t seed, int stage, uint64_t name_hash, int64_t stride) {
  const uint64_t h = detail::fmix64(seed ^ detail::fmix64(name_hash + 0x9E3779B97F4A7C15ull * (stage + 1u)));
  return static_cast<int64_t>(h % static_cast<uint64_t>(stride));
}

uint64_t fresh_seed() {
  std::random_device rd;
  const uint64_t s = (uint64_t{rd()} << 32) ^ rd();
  return s != 0 ? s : 1;
}

/// Score claims `ids` on the sample of stride `stride`; z per claim in the order of `ids`.
StageResult run_stage(const std::vector<Target>& targets, std::span<const Claim> claims,
                      const std::vector<std::size_t>& ids, uint32_t L, int64_t stride, uint64_t seed, int stage,
                      Backend& backend) {
  const std::size_t K = ids.size();
  const std::size_t words = (L + 63) / 64;
  std::vector<uint64_t> payload(K * words, 0);
  for (std::size_t i = 0; i < K; ++i) {
    const auto& bits = claims[ids[i]].payload.bits;
    for (std::size_t b = 0; b < bits.size(); ++b)
      if (bits[b]) payload[i * words + b / 64] |= uint64_t{1} << (b % 64);
  }
  std::vector<double> num(K, 0.0);
  std::vector<detail::CarrierSpec> carriers(K);
  ScreenSums sums;
  StageResult r;
  constexpr int64_t kDerivePerTask = 512;
  const auto derive_tasks = static_cast<int64_t>((K + kDerivePerTask - 1) / kDerivePerTask);
  for (const Target& tg : targets) {
    const ScreenSample sample{stride, phase_of(seed, stage, tg.name_hash, stride)};
    if (detail::screen_group_count(tg.groups, sample.stride, sample.phase) == 0) continue;
    const std::string& name = tg.tensor->name;
    backend.host_pool().parallel_for(derive_tasks, [&](int, int64_t t) {
      const auto k1 = std::min<std::size_t>(K, static_cast<std::size_t>((t + 1) * kDerivePerTask));
      for (auto k = static_cast<std::size_t>(t * kDerivePerTask); k < k1; ++k)
        carriers[k] = derive_carrier(claims[ids[k]].key, name, L);
    });
    backend.screen(tg.tensor->view, sample, carriers, payload, sums);
    r.nonfinite += sums.nonfinite;
    if (sums.elements <= 0 || !(sums.sum_sq > 0)) continue;
    // Each tensor normalized by its own sample RMS, as verify() does with the whole tensor.
    const double w = std::sqrt(static_cast<double>(sums.elements) / sums.sum_sq);
    for (std::size_t k = 0; k < K; ++k) num[k] += sums.t[k] * w;
    r.elements += sums.elements;
    r.tensors += 1;
  }
  r.z.assign(K, 0.0);
  if (r.elements > 0)
    for (std::size_t k = 0; k < K; ++k) r.z[k] = num[k] / std::sqrt(static_cast<double>(r.elements));
  return r;
}

void check_screen_options(const ScreenOptions& s) {
  DIDMARK_EXPECTS(std::isfinite(s.z_target) && s.z_target > 0, invalid_argument,
                  "screen: target z must be a positive number, got ", s.z_target);
  DIDMARK_EXPECTS(!s.strength || (std::isfinite(*s.strength) && *s.strength > 0), invalid_argument,
                  "screen: assumed strength must be a positive number, got ", s.strength.value_or(0));
  DIDMARK_EXPECTS(!s.candidate_z || std::isfinite(*s.candidate_z), invalid_argument,
                  "screen: candidate z must be a finite number");
}

}  // namespace

std::string_view screen_mode_name(ScreenMode m) noexcept {
  switch (m) {
    case ScreenMode::automatic: return "auto";
    case ScreenMode::on: return "on";
    case ScreenMode::off: return "off";
  }
  return "?";
}

std::optional<ScreenMode> parse_screen_mode(std::string_view s) noexcept {
  if (s == "auto" || s == "automatic") return ScreenMode::automatic;
  if (s == "on") return ScreenMode::on;
  if (s == "off") return ScreenMode::off;
  return std::nullopt;
}

double default_candidate_z(std::size_t claims) noexcept {
  return std::sqrt(2.0 * std::log(100.0 * static_cast<double>(std::max<std::size_t>(claims, 1))));
}

double family_log10_p(double log10_p, std::size_t tests) noexcept {
  const double K = static_cast<double>(std::max<std::size_t>(tests, 1));
  if (!(log10_p < 0)) return 0.0;
  // 1 - (1 - p)^K = K p (1 - (K - 1) p / 2 + ...): below 1e-15 the first term is exact to
  // double precision (K p <= 1e-15 * K, and K p^2 is far below its last bit).
  if (log10_p < -15) return std::min(0.0, log10_p + std::log10(K));
  const double p = std::pow(10.0, log10_p);
  const double pf = -std::expm1(K * std::log1p(-p));
  return pf > 0 ? std::min(0.0, std::log10(pf)) : log10_p + std::log10(K);
}

std::vector<VerifyReport> verify_screened(std::span<const NamedTensor> tensors, std::span<const Claim> claims,
                                          const WatermarkOptions& options, const ScreenOptions& screen,
                                          Backend& backend, ScreenSummary* summary) {
  const auto t0 = Clock::now();
  check_screen_options(screen);
  ScreenSummary how;
  how.claims = claims.size();
  auto full = [&](std::string why) {
    how.reason = std::move(why);
    auto r = verify_many(tensors, claims, options, backend);
    how.candidates = claims.size();
    how.confirm_seconds = since(t0);
    if (summary) *summary = how;
    return r;
  };
  if (claims.empty()) return full("no owner to test");
  if (screen.mode == ScreenMode::off) return full("screening is off");
  if (options.scheme == Scheme::stdm) return full("STDM marks cannot be screened on a sample");
  if (screen.mode == ScreenMode::automatic && claims.size() < screen.min_claims)
    return full(detail::concat("fewer than ", screen.min_claims, " owners"));

  const std::size_t L = claims[0].payload.size();
  for (const auto& c : claims) {
    DIDMARK_EXPECTS(!c.payload.bits.empty() && c.payload.size() <= kMaxPayloadBits, invalid_argument,
                    "payload has ", c.payload.size(), " bits; 1..", kMaxPayloadBits, " are supported");
    DIDMARK_EXPECTS(c.payload.size() == L, invalid_argument, "claims carry payloads of different lengths (",
                    c.payload.size(), " vs ", L, ")");
  }
  for (const auto& t : tensors) {
    validate_view(t.view, detail::concat("tensor '", t.name, "'"));
    if (is_watermarkable(t.view.dtype))
      DIDMARK_EXPECTS(t.view.is_contiguous(), unsupported, "tensor '", t.name, "' is not contiguous (",
                      t.view.describe(), "); pass a contiguous copy");
  }
  const auto selection = detail::select_tensors(tensors, options.policy);
  std::vector<Target> targets;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const int64_t n = tensors[i].view.numel();
    if (!selection[i].eligible || n <= 0) continue;
    targets.push_back({&tensors[i], detail::fnv1a64(tensors[i].name), (n + detail::kScreenGroup - 1) / detail::kScreenGroup});
    how.model_elements += n;
  }
  if (targets.empty()) return full("no eligible tensor");

  const double s = screen.strength.value_or(options.strength_for(Scheme::spread_spectrum));
  how.strength = s;
  const double N = static_cast<double>(how.model_elements);
  auto stride_for = [&](double z) {
    const double n = (z / s) * (z / s);
    return static_cast<int64_t>(std::max(1.0, std::floor(N / n)));
  };
  const double candidate_z = screen.candidate_z.value_or(default_candidate_z(claims.size()));
  struct Plan {
    int64_t stride;
    double threshold;
  };
  std::vector<Plan> plan;
  const int64_t final_stride = stride_for(screen.z_target);
  // Two stages pay when the final sample is at least twice the first one.
  if (screen.z_target >= kStage1Z * std::sqrt(2.0) && stride_for(kStage1Z) >= 2 * final_stride)
    plan.push_back({stride_for(kStage1Z), kStage1Keep});
  plan.push_back({final_stride, candidate_z});

  const uint64_t seed = screen.seed != 0 ? screen.seed : fresh_seed();
  const auto bits = static_cast<uint32_t>(L);
  std::vector<std::size_t> ids(claims.size());
  for (std::size_t k = 0; k < ids.size(); ++k) ids[k] = k;
  std::vector<VerifyReport> out(claims.size());
  for (std::size_t st = 0; st < plan.size(); ++st) {
    const auto ts = Clock::now();
    const StageResult r = run_stage(targets, claims, ids, bits, plan[st].stride, seed, static_cast<int>(st), backend);
    ScreenStage stage;
    stage.stride = plan[st].stride;
    stage.elements = r.elements;
    stage.claims = ids.size();
    stage.threshold = plan[st].threshold;
    std::vector<std::size_t> kept;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      VerifyReport& v = out[ids[i]];
      v.screened = true;
      v.scheme = Scheme::spread_spectrum;
      v.bits = static_cast<int>(L);
      v.z = r.z[i];
      v.log10_p = hoeffding_log10_p(v.z);
      v.p_value = std::pow(10.0, v.log10_p);
      v.elements = r.elements;
      v.nonfinite = r.nonfinite;
      v.tensors = r.tensors;
      if (r.elements > 0 && v.z >= plan[st].threshold) kept.push_back(ids[i]);
    }
    stage.passed = kept.size();
    stage.seconds = since(ts);
    how.stages.push_back(stage);
    ids = std::move(kept);
  }
  how.screened = true;
  how.screen_seconds = since(t0);

  const auto tc = Clock::now();
  if (!ids.empty()) {
    std::vector<Claim> confirm;
    confirm.reserve(ids.size());
    for (std::size_t k : ids) confirm.push_back(claims[k]);
    auto full_reports = verify_many(tensors, confirm, options, backend);
    for (std::size_t i = 0; i < ids.size(); ++i) out[ids[i]] = std::move(full_reports[i]);
  }
  how.candidates = ids.size();
  how.confirm_seconds = since(tc);
  const double secs = since(t0);
  for (auto& v : out)
    if (v.screened) v.seconds = secs;
  if (summary) *summary = how;
  return out;
}

}  // namespace didmark
