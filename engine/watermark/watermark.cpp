// Embedding and blind verification, written once against the Backend primitives.
#include <chrono>
#include <cmath>

#include "didmark/error.hpp"
#include "didmark/watermark.hpp"
#include "watermark/eligibility.hpp"
#include "didmark/detail/stdm_math.hpp"

namespace didmark {
namespace {

using Clock = std::chrono::steady_clock;

// Elements drawn to estimate a tensor's RMS before the single embed pass. The step only
// has to be proportional to the spread; the realized change is measured exactly.
constexpr int64_t kRmsSample = 1 << 16;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void check_options(const WatermarkOptions& o) {
  const double s = o.effective_strength();
  DIDMARK_EXPECTS(std::isfinite(s) && s > 0, invalid_argument, "strength must be a positive number, got ", s);
  DIDMARK_EXPECTS(o.max_relative_change > 0, invalid_argument, "max_relative_change must be positive");
  DIDMARK_EXPECTS(s <= o.max_relative_change, invalid_argument, "strength ", s,
                  " exceeds the relative-change budget ", o.max_relative_change);
  DIDMARK_EXPECTS(o.lambda >= 0 && o.lambda <= 1, invalid_argument, "lambda must be in [0, 1], got ", o.lambda);
  DIDMARK_EXPECTS(o.scheme == Scheme::spread_spectrum || o.lambda == 0, invalid_argument,
                  "lambda applies to spread spectrum only");
  DIDMARK_EXPECTS(o.p_threshold > 0 && o.p_threshold < 1, invalid_argument, "p threshold must be in (0, 1), got ",
                  o.p_threshold);
}

void check_payload(const Payload& p) {
  DIDMARK_EXPECTS(!p.bits.empty(), invalid_argument, "payload is empty: a mark needs at least one bit");
  DIDMARK_EXPECTS(p.bits.size() <= kMaxPayloadBits, invalid_argument, "payload has ", p.bits.size(),
                  " bits; at most ", kMaxPayloadBits, " are supported");
}

void check_tensor(const NamedTensor& t) {
  validate_view(t.view, detail::concat("tensor '", t.name, "'"));
  if (is_watermarkable(t.view.dtype))
    DIDMARK_EXPECTS(t.view.is_contiguous(), unsupported, "tensor '", t.name, "' is not contiguous (",
                    t.view.describe(), "); pass a contiguous copy");
}

/// Elements per payload bit for a tensor of `numel` elements (carrier v1 assignment).
std::vector<int64_t> bit_counts(const detail::CarrierSpec& c, int64_t numel) {
  const int64_t L = c.num_bits;
  std::vector<int64_t> n(static_cast<std::size_t>(L), 0);
  if (numel <= 0) return n;
  const int64_t blocks = (numel + detail::kCarrierBlock - 1) / detail::kCarrierBlock;
  const int64_t q = blocks / L, rem = blocks % L;
  for (int64_t b = 0; b < L; ++b) n[static_cast<std::size_t>(b)] = q * detail::kCarrierBlock;
  for (int64_t i = 0; i < rem; ++i) n[static_cast<std::size_t>((i + c.bit_offset) % L)] += detail::kCarrierBlock;
  const int64_t last_bit = (blocks - 1 + c.bit_offset) % L;
  n[static_cast<std::size_t>(last_bit)] -= blocks * detail::kCarrierBlock - numel;
  return n;
}

double payload_sign(const Payload& p, std::size_t b) { return p.bits[b] ? -1.0 : 1.0; }

/// The keyed dither of bit b for STDM, uniform in [0, 1).
double stdm_dither_unit(const detail::CarrierSpec& c, uint32_t b) {
  return detail::carrier_random(c, b, detail::kDomainStdmDither).x * 0x1p-32;
}

std::vector<float> stdm_deltas(const detail::CarrierSpec& c, const CorrelateStats& st, const std::vector<int64_t>& n,
                               const Payload& payload, double step) {
  std::vector<float> d(c.num_bits, 0.0f);
  for (uint32_t b = 0; b < c.num_bits; ++b) {
    if (n[b] == 0) continue;
    const double p = st.bit_sums[b] / static_cast<double>(n[b]);
    d[b] = static_cast<float>(detail::stdm_delta(p, step, stdm_dither_unit(c, b) * step, payload.bits[b]));
  }
  return d;
}

struct Pairing {
  bool in_place;
};

Pairing check_pairing(std::span<const NamedTensor> src, std::span<const NamedTensor> dst) {
  DIDMARK_EXPECTS(src.size() == dst.size(), invalid_argument, "embed: ", src.size(), " source tensors but ",
                  dst.size(), " destinations");
  bool all_same = true, any_same = false;
  for (std::size_t i = 0; i < src.size(); ++i) {
    const auto& a = src[i];
    const auto& b = dst[i];
    DIDMARK_EXPECTS(a.name == b.name, invalid_argument, "embed: destination ", i, " is '", b.name,
                    "' but source is '", a.name, "'");
    DIDMARK_EXPECTS(a.view.dtype == b.view.dtype && a.view.shape == b.view.shape, invalid_argument,
                    "embed: tensor '", a.name, "' is ", a.view.describe(), " but its destination is ",
                    b.view.describe());
    const bool same = a.view.data == b.view.data;
    all_same = all_same && same;
    any_same = any_same || same;
  }
  DIDMARK_EXPECTS(all_same || !any_same, invalid_argument,
                  "embed: some destinations are the sources and some are not; use embed_in_place or separate buffers");
  return Pairing{all_same && !src.empty()};
}

}  // namespace

EmbedReport embed(std::span<const NamedTensor> src, std::span<const NamedTensor> dst, const WatermarkKey& key,
                  const Payload& payload, const WatermarkOptions& options, Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  check_payload(payload);
  for (const auto& t : src) check_tensor(t);
  for (const auto& t : dst) check_tensor(t);
  const Pairing pairing = check_pairing(src, dst);
  const auto selection = detail::select_tensors(src, options.policy);
  const auto L = static_cast<uint32_t>(payload.size());
  const double strength = options.effective_strength();

  EmbedReport report;
  report.scheme = options.scheme;
  report.strength = strength;
  report.backend = backend.description();
  double total_src = 0, total_diff = 0;

  for (std::size_t i = 0; i < src.size(); ++i) {
    const NamedTensor& s = src[i];
    const NamedTensor& d = dst[i];
    TensorReport tr;
    tr.name = s.name;
    tr.dtype = s.view.dtype;
    tr.elements = s.view.numel();
    auto skip = [&](std::string why) {
      DIDMARK_EXPECTS(!selection[i].named, invalid_argument, "tensor '", s.name, "' cannot be marked: ", why);
      if (!pairing.in_place && s.view.numel() > 0 && s.view.data != d.view.data) backend.copy(s.view, d.view);
      tr.skip_reason = std::move(why);
      report.tensors.push_back(tr);
    };
    if (!selection[i].eligible) {
      if (!pairing.in_place && s.view.numel() > 0) backend.copy(s.view, d.view);
      tr.skip_reason = selection[i].reason;
      report.tensors.push_back(tr);
      continue;
    }

    const detail::CarrierSpec carrier = derive_carrier(key, s.name, L);
    const auto n = bit_counts(carrier, tr.elements);
    std::vector<float> deltas(L);

    // One read pass first when it is needed: STDM and ISS need the projections, and an
    // in-place embed must know about NaN/Inf before it writes.
    std::optional<CorrelateStats> stats;
    if (options.scheme == Scheme::stdm || options.lambda > 0 || pairing.in_place) {
      stats.emplace();
      backend.correlate(s.view, std::span(&carrier, 1), std::span(&*stats, 1));
      if (stats->nonfinite > 0) {
        skip(detail::concat("contains ", stats->nonfinite, " NaN/Inf values"));
        continue;
      }
    }

    if (options.scheme == Scheme::stdm) {
      const double rms = std::sqrt(stats->sum_sq / static_cast<double>(tr.elements));
      if (!(rms > 0)) {
        skip("all elements are zero");
        continue;
      }
      deltas = stdm_deltas(carrier, *stats, n, payload, detail::stdm_step(strength, rms));
    } else {
      const auto sample = backend.sample(s.view, kRmsSample);
      double ss = 0;
      bool finite = true;
      for (double v : sample) {
        finite = finite && std::isfinite(v);
        ss += v * v;
      }
      if (!finite) {
        skip("contains NaN/Inf values");
        continue;
      }
      double rms = std::sqrt(ss / static_cast<double>(sample.size()));
      if (!(rms > 0) && stats) rms = std::sqrt(stats->sum_sq / static_cast<double>(tr.elements));
      if (!(rms > 0)) {
        // A sparse tensor can sample as all-zero: measure it exactly before giving up.
        CorrelateStats full;
        backend.correlate(s.view, std::span(&carrier, 1), std::span(&full, 1));
        rms = std::sqrt(full.sum_sq / static_cast<double>(tr.elements));
      }
      if (!(rms > 0)) {
        skip("all elements are zero");
        continue;
      }
      const double alpha = strength * rms;
      for (uint32_t b = 0; b < L; ++b) {
        double step = alpha * payload_sign(payload, b);
        if (options.lambda > 0 && n[b] > 0) step -= options.lambda * stats->bit_sums[b] / static_cast<double>(n[b]);
        deltas[b] = static_cast<float>(step);
      }
    }

    const AddStats as = backend.carrier_add(s.view, d.view, carrier, deltas);
    if (as.nonfinite > 0) {
      // Only reachable out of place (in place was checked first): restore and skip.
      skip(detail::concat("contains ", as.nonfinite, " NaN/Inf values"));
      continue;
    }
    tr.used = true;
    tr.relative_change = as.sum_sq_src > 0 ? std::sqrt(as.sum_sq_diff / as.sum_sq_src) : 0.0;
    total_src += as.sum_sq_src;
    total_diff += as.sum_sq_diff;
    report.tensors_marked += 1;
    report.elements_marked += tr.elements;
    report.max_tensor_change = std::max(report.max_tensor_change, tr.relative_change);
    if (tr.relative_change > options.max_relative_change) report.within_budget = false;
    report.tensors.push_back(std::move(tr));
  }
  backend.synchronize();
  report.relative_change = total_src > 0 ? std::sqrt(total_diff / total_src) : 0.0;
  report.expected_z = options.scheme == Scheme::spread_spectrum
                          ? strength * std::sqrt(static_cast<double>(report.elements_marked))
                          : 0.0;
  report.seconds = seconds_since(t0);
  return report;
}

EmbedReport embed_in_place(std::span<const NamedTensor> tensors, const WatermarkKey& key, const Payload& payload,
                           const WatermarkOptions& options, Backend& backend) {
  return embed(tensors, tensors, key, payload, options, backend);
}

namespace {

struct ClaimAccum {
  std::vector<double> soft;     // per bit: sum over tensors of normalized projections
  std::vector<double> weight;   // per bit: normalizer (elements, or STDM weights)
  double z_num = 0;             // spread spectrum: sum_t sqrt(N_t) z_t
  int64_t elements = 0;
  int tensors = 0;
  std::vector<TensorReport> per_tensor;
};

std::vector<VerifyReport> run_verify(std::span<const NamedTensor> tensors, std::span<const Claim> claims,
                                     std::size_t num_bits, bool have_payload, const WatermarkOptions& options,
                                     Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  for (const auto& t : tensors) check_tensor(t);
  for (const auto& c : claims) {
    check_payload(c.payload);
    DIDMARK_EXPECTS(c.payload.size() == num_bits, invalid_argument, "claims carry payloads of different lengths (",
                    c.payload.size(), " vs ", num_bits, ")");
  }
  const auto selection = detail::select_tensors(tensors, options.policy);
  const auto L = static_cast<uint32_t>(num_bits);
  const double strength = options.effective_strength();

  std::vector<ClaimAccum> acc(claims.size());
  for (auto& a : acc) {
    a.soft.assign(L, 0.0);
    a.weight.assign(L, 0.0);
  }
  std::vector<detail::CarrierSpec> carriers(claims.size());
  std::vector<CorrelateStats> stats(claims.size());

  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    TensorReport tr;
    tr.name = t.name;
    tr.dtype = t.view.dtype;
    tr.elements = t.view.numel();
    auto skip_all = [&](const std::string& why) {
      DIDMARK_EXPECTS(!selection[i].named, invalid_argument, "tensor '", t.name, "' cannot be verified: ", why);
      tr.skip_reason = why;
      for (auto& a : acc) a.per_tensor.push_back(tr);
    };
    if (!selection[i].eligible) {
      tr.skip_reason = selection[i].reason;
      for (auto& a : acc) a.per_tensor.push_back(tr);
      continue;
    }
    for (std::size_t k = 0; k < claims.size(); ++k) carriers[k] = derive_carrier(claims[k].key, t.name, L);
    if (!claims.empty()) backend.correlate(t.view, carriers, stats);
    if (!claims.empty() && stats[0].nonfinite > 0) {
      skip_all(detail::concat("contains ", stats[0].nonfinite, " NaN/Inf values"));
      continue;
    }
    if (!claims.empty() && !(stats[0].sum_sq > 0)) {
      skip_all("all elements are zero");
      continue;
    }
    const double N = static_cast<double>(tr.elements);
    for (std::size_t k = 0; k < claims.size(); ++k) {
      const CorrelateStats& st = stats[k];
      ClaimAccum& a = acc[k];
      const auto n = bit_counts(carriers[k], tr.elements);
      TensorReport r = tr;
      r.used = true;
      if (options.scheme == Scheme::spread_spectrum) {
        // Normalize each tensor by its own RMS so that the combined statistic weighs tensors
        // by size, not by scale; the normalizer depends on w only, so Hoeffding still holds.
        const double inv_rms = std::sqrt(N / st.sum_sq);
        double T = 0;
        for (uint32_t b = 0; b < L; ++b) {
          a.soft[b] += st.bit_sums[b] * inv_rms;
          a.weight[b] += static_cast<double>(n[b]);
          T += payload_sign(claims[k].payload, b) * st.bit_sums[b];
        }
        r.z = T / std::sqrt(st.sum_sq);
        a.z_num += std::sqrt(N) * r.z;
      } else {
        const double step = detail::stdm_step(strength, std::sqrt(st.sum_sq / N));
        for (uint32_t b = 0; b < L; ++b) {
          if (n[b] == 0) continue;
          const double p = st.bit_sums[b] / static_cast<double>(n[b]);
          const double w = static_cast<double>(n[b]);
          a.soft[b] += w * detail::stdm_soft(p, step, stdm_dither_unit(carriers[k], b) * step);
          a.weight[b] += w;
        }
      }
      a.elements += tr.elements;
      a.tensors += 1;
      a.per_tensor.push_back(std::move(r));
    }
  }
  backend.synchronize();

  std::vector<VerifyReport> out(claims.size());
  const double log10_threshold = std::log10(options.p_threshold);
  for (std::size_t k = 0; k < claims.size(); ++k) {
    ClaimAccum& a = acc[k];
    VerifyReport& r = out[k];
    r.scheme = options.scheme;
    r.bits = static_cast<int>(L);
    r.elements = a.elements;
    r.tensors = a.tensors;
    r.per_tensor = std::move(a.per_tensor);
    r.soft_bits.resize(L);
    r.decoded.resize(L);
    int agree = 0, covered = 0;
    for (uint32_t b = 0; b < L; ++b) {
      double soft = 0;
      if (a.weight[b] > 0) {
        soft = options.scheme == Scheme::spread_spectrum ? a.soft[b] / std::sqrt(a.weight[b]) : a.soft[b] / a.weight[b];
        ++covered;
      }
      r.soft_bits[b] = static_cast<float>(soft);
      r.decoded[b] = soft < 0 ? 1 : 0;
      const bool ok = a.weight[b] > 0 && r.decoded[b] == claims[k].payload.bits[b];
      agree += ok ? 1 : 0;
      r.bit_errors += ok ? 0 : 1;
    }
    if (!have_payload) {
      r.bit_errors = 0;
      r.z = 0;
      r.p_value = 1;
      r.log10_p = 0;
      r.detected = false;
      continue;
    }
    if (options.scheme == Scheme::spread_spectrum) {
      r.z = a.elements > 0 ? a.z_num / std::sqrt(static_cast<double>(a.elements)) : 0.0;
      r.log10_p = hoeffding_log10_p(r.z);
      r.p_value = hoeffding_p_value(r.z);
    } else {
      // Bits with no elements cannot agree by chance or otherwise: they leave the test.
      r.log10_p = binomial_tail_log10(covered, agree);
      r.p_value = std::pow(10.0, r.log10_p);
      r.z = r.log10_p < 0 ? std::sqrt(-2.0 * r.log10_p * std::log(10.0)) : 0.0;
    }
    r.detected = a.elements > 0 && r.log10_p <= log10_threshold;
  }
  const double secs = seconds_since(t0);
  for (auto& r : out) r.seconds = secs;
  return out;
}

}  // namespace

std::vector<VerifyReport> verify_many(std::span<const NamedTensor> tensors, std::span<const Claim> claims,
                                      const WatermarkOptions& options, Backend& backend) {
  if (claims.empty()) return {};
  return run_verify(tensors, claims, claims[0].payload.size(), true, options, backend);
}

VerifyReport verify(std::span<const NamedTensor> tensors, const WatermarkKey& key, const Payload& expected,
                    const WatermarkOptions& options, Backend& backend) {
  const Claim claim{key, expected};
  return run_verify(tensors, std::span(&claim, 1), expected.size(), true, options, backend)[0];
}

VerifyReport decode(std::span<const NamedTensor> tensors, const WatermarkKey& key, std::size_t num_bits,
                    const WatermarkOptions& options, Backend& backend) {
  DIDMARK_EXPECTS(num_bits >= 1 && num_bits <= kMaxPayloadBits, invalid_argument, "decode: payload length ",
                  num_bits, " is outside 1..", kMaxPayloadBits);
  const Claim claim{key, Payload{std::vector<uint8_t>(num_bits, 0)}};
  return run_verify(tensors, std::span(&claim, 1), num_bits, false, options, backend)[0];
}

}  // namespace didmark
