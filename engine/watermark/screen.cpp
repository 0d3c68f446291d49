// verify_screened: every claim scored on a key-independent sample in one pass per stage
// (Backend::screen_many), the candidates confirmed by the ordinary full pass.
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

// The stages before the last, sized for these z at the assumed strength (the samples are nested:
// each holds the previous one) and passed at these z. An intact mark goes on with probability
// 1 - 3e-5 and 1 - 2.3e-4; of unmarked claims about 69% pass the first, about 6% both.
constexpr double kStageZ[2] = {5.0 / 1.4142135623730951, 5.0};
constexpr double kStageKeep[2] = {-0.5, 1.5};

/// An eligible tensor of the screen and what its sample has shown so far.
struct Target {
  const NamedTensor* tensor;
  uint64_t name_hash;
  int64_t groups;
  int64_t phase = 0;    // of the sample's groups, modulo the first stage's stride
  double weight = 0;    // 1 / rms of its first sample (0: not sampled yet)
  double sum_sq = 0;    // of the sampled (quantized) values so far
  int64_t elements = 0;
};

/// The screen's running sums: per claim (in `ids` order) sum_t weight_t T_kt over the sample so
/// far; the key-independent normalizer is sqrt(sum_t weight_t^2 sum_sq_t).
struct Running {
  std::vector<double> num;
  int64_t elements = 0;
  int64_t nonfinite = 0;
  int tensors = 0;
};

int64_t phase_of(uint64_t seed, uint64_t name_hash, int64_t stride) {
  const uint64_t h = detail::fmix64(seed ^ detail::fmix64(name_hash + 0x9E3779B97F4A7C15ull));
  return static_cast<int64_t>(h % static_cast<uint64_t>(stride));
}

uint64_t fresh_seed() {
  std::random_device rd;
  const uint64_t s = (uint64_t{rd()} << 32) ^ rd();
  return s != 0 ? s : 1;
}

/// Every eligible tensor's carrier for every claim, derived once for all stages (two Philox
/// calls each, several tensors per pass): all[t * claims + c], the carrier sets of a
/// screen_many call.
std::vector<detail::CarrierSpec> derive_all(const std::vector<Target>& targets, std::span<const Claim> claims,
                                            uint32_t L, Backend& backend) {
  const std::size_t C = claims.size();
  std::vector<detail::CarrierSpec> all(targets.size() * C);
  std::vector<uint64_t> hashes(targets.size());
  for (std::size_t t = 0; t < targets.size(); ++t) hashes[t] = targets[t].name_hash;
  constexpr int64_t kDerivePerTask = 64;
  const auto tasks = static_cast<int64_t>((C + kDerivePerTask - 1) / kDerivePerTask);
  backend.host_pool().parallel_for(tasks, [&](int, int64_t task) {
    const auto c0 = static_cast<std::size_t>(task * kDerivePerTask);
    const std::size_t c1 = std::min(C, c0 + kDerivePerTask);
    for (std::size_t c = c0; c < c1; ++c) derive_carriers_hashed(claims[c].key, hashes, L, all.data() + c, C);
  });
  return all;
}

/// Add the groups (i + phase) % stride == 0 of every tensor, with `phase` = the tensor's phase
/// plus each of `shifts`, to the running sums of the K claims still in (a stage's sample, or the
/// part of it the previous stage did not have), whose carriers for tensor t are carrier set t:
/// one Backend::screen_many call for the whole stage, its results added in the order of tensors
/// and then shifts, as one screen() call per tensor and shift used to add them.
void add_sample(std::vector<Target>& targets, std::span<const detail::CarrierSpec> carriers, std::size_t K,
                const std::vector<uint64_t>& payload, int64_t stride, const std::vector<int64_t>& shifts, Running& run,
                Backend& backend) {
  std::vector<ScreenItem> items;
  std::vector<std::size_t> item_target;
  for (std::size_t t = 0; t < targets.size(); ++t) {
    const Target& tg = targets[t];
    for (const int64_t shift : shifts) {
      const ScreenSample sample{stride, (tg.phase + shift) % stride};
      if (detail::screen_group_count(tg.groups, sample.stride, sample.phase) == 0) continue;
      items.push_back({tg.tensor->view, sample, t});
      item_target.push_back(t);
    }
  }
  if (items.empty()) return;
  std::vector<ScreenSums> sums(items.size());
  backend.screen_many(items, K, carriers, payload, sums);
  for (std::size_t i = 0; i < items.size(); ++i) {
    Target& tg = targets[item_target[i]];
    const ScreenSums& s = sums[i];
    run.nonfinite += s.nonfinite;
    if (s.elements <= 0 || !(s.sum_sq > 0)) continue;
    // Each tensor weighted by 1 / rms of its first sample, as verify() weighs whole tensors; a
    // weight fixed by the weights alone keeps the bound valid as the sample grows.
    if (tg.weight == 0) {
      tg.weight = std::sqrt(static_cast<double>(s.elements) / s.sum_sq);
      run.tensors += 1;
    }
    tg.sum_sq += s.sum_sq;
    tg.elements += s.elements;
    run.elements += s.elements;
    for (std::size_t k = 0; k < K; ++k) run.num[k] += s.t[k] * tg.weight;
  }
}

double normalizer(const std::vector<Target>& targets) {
  double d = 0;
  for (const Target& t : targets) d += t.weight * t.weight * t.sum_sq;
  return std::sqrt(d);
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
  // Strides from the last stage back: each earlier stage's stride a multiple of the next one's,
  // so every sample holds the one before it and a stage only adds the groups it lacks.
  struct Plan {
    int64_t stride;
    double threshold;
  };
  std::vector<Plan> plan;
  plan.reserve(3);
  plan.push_back({stride_for(screen.z_target), candidate_z});
  for (int i = 1; i >= 0; --i) {
    const int64_t m = stride_for(kStageZ[i]) / plan.back().stride;
    if (screen.z_target <= kStageZ[i] || m < 2) continue;
    plan.push_back({plan.back().stride * m, kStageKeep[i]});
  }
  std::reverse(plan.begin(), plan.end());

  const uint64_t seed = screen.seed != 0 ? screen.seed : fresh_seed();
  for (Target& t : targets) t.phase = phase_of(seed, t.name_hash, plan.front().stride);
  const auto bits = static_cast<uint32_t>(L);
  const std::size_t words = (L + 63) / 64;
  // Every claim's payload bits packed once (bit b at word b / 64), gathered per stage.
  std::vector<uint64_t> packed(claims.size() * words, 0);
  for (std::size_t i = 0; i < claims.size(); ++i) {
    const auto& pb = claims[i].payload.bits;
    for (std::size_t b = 0; b < pb.size(); ++b)
      packed[i * words + b / 64] |= static_cast<uint64_t>(pb[b] != 0) << (b % 64);
  }
  // Claims in batches, so that what is held at once (a carrier per claim and tensor, 24 bytes,
  // and a sum per claim and sampled tensor) stays bounded for very large registries: a claim's
  // screen depends on its own key and the key-independent sample only, so batches change no
  // result. 2^22 pairs (100 MB of carriers) hold 10^4 owners of a 400-tensor model in one.
  constexpr std::size_t kBatchPairs = std::size_t{1} << 22;
  const std::size_t batch = std::max<std::size_t>(1, kBatchPairs / targets.size());
  const std::vector<Target> fresh = targets;  // a batch starts from no sample
  std::vector<VerifyReport> out(claims.size());
  std::vector<std::size_t> candidates;
  for (std::size_t b0 = 0; b0 < claims.size(); b0 += batch) {
    const std::size_t b1 = std::min(claims.size(), b0 + batch);
    if (b0 > 0) targets = fresh;
    // Carrier sets of the claims still in the screen (ids), set t at [t * ids.size(), ...).
    std::vector<detail::CarrierSpec> all = derive_all(targets, claims.subspan(b0, b1 - b0), bits, backend);
    std::vector<std::size_t> ids(b1 - b0);
    for (std::size_t k = 0; k < ids.size(); ++k) ids[k] = b0 + k;
    Running run;
    run.num.assign(ids.size(), 0.0);
    for (std::size_t st = 0; st < plan.size(); ++st) {
      const auto ts = Clock::now();
      std::vector<uint64_t> payload(ids.size() * words);
      for (std::size_t i = 0; i < ids.size(); ++i)
        std::copy_n(packed.begin() + static_cast<std::ptrdiff_t>(ids[i] * words), words,
                    payload.begin() + static_cast<std::ptrdiff_t>(i * words));
      const std::span<const detail::CarrierSpec> carriers(all.data(), targets.size() * ids.size());
      if (st == 0) {
        add_sample(targets, carriers, ids.size(), payload, plan[0].stride, {0}, run, backend);
      } else {
        // The groups of this stage's sample the previous one lacked: the previous stride's phases
        // shifted by each non-zero multiple of this stride.
        const int64_t prev = plan[st - 1].stride, cur = plan[st].stride;
        std::vector<int64_t> shifts;
        for (int64_t j = 1; j < prev / cur; ++j) shifts.push_back(j * cur);
        add_sample(targets, carriers, ids.size(), payload, prev, shifts, run, backend);
      }
      const double D = normalizer(targets);
      ScreenStage stage;
      stage.stride = plan[st].stride;
      stage.elements = run.elements;
      stage.claims = ids.size();
      stage.threshold = plan[st].threshold;
      std::vector<std::size_t> kept, kept_at;
      Running next;
      next.elements = run.elements;
      next.nonfinite = run.nonfinite;
      next.tensors = run.tensors;
      for (std::size_t i = 0; i < ids.size(); ++i) {
        VerifyReport& v = out[ids[i]];
        v.screened = true;
        v.scheme = Scheme::spread_spectrum;
        v.bits = static_cast<int>(L);
        v.z = D > 0 ? run.num[i] / D : 0.0;
        v.log10_p = hoeffding_log10_p(v.z);
        v.p_value = std::pow(10.0, v.log10_p);
        v.elements = run.elements;
        v.nonfinite = run.nonfinite;
        v.tensors = run.tensors;
        if (D > 0 && v.z >= plan[st].threshold) {
          kept_at.push_back(i);
          kept.push_back(ids[i]);
          next.num.push_back(run.num[i]);
        }
      }
      stage.passed = kept.size();
      stage.seconds = since(ts);
      if (b0 == 0) {
        how.stages.push_back(stage);
      } else {
        how.stages[st].claims += stage.claims;
        how.stages[st].passed += stage.passed;
        how.stages[st].seconds += stage.seconds;
      }
      // The kept claims' carriers moved to the front of each set, in place: every write goes to
      // an index no larger than its read's, and reads only increase, so none is overwritten first.
      for (std::size_t t = 0; t < targets.size(); ++t)
        for (std::size_t j = 0; j < kept_at.size(); ++j)
          all[t * kept_at.size() + j] = all[t * ids.size() + kept_at[j]];
      ids = std::move(kept);
      run = std::move(next);
    }
    candidates.insert(candidates.end(), ids.begin(), ids.end());
  }
  how.screened = true;
  how.screen_seconds = since(t0);

  const auto tc = Clock::now();
  const std::vector<std::size_t>& ids = candidates;
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
