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

/// WatermarkOptions::progress over a loop of tensors: before(i) reports the elements of the
/// tensors before i; the destructor reports the end (every exit of the loop included).
class ProgressTicker {
 public:
  ProgressTicker(const std::function<void(int64_t, int64_t)>& f, std::span<const NamedTensor> tensors)
      : f_(f), tensors_(tensors) {
    if (f_)
      for (const auto& t : tensors) total_ += t.view.numel();
  }
  ~ProgressTicker() {
    if (f_) f_(total_, total_);
  }
  ProgressTicker(const ProgressTicker&) = delete;
  ProgressTicker& operator=(const ProgressTicker&) = delete;
  void before(std::size_t i) {
    if (!f_) return;
    for (; next_ < i; ++next_) done_ += tensors_[next_].view.numel();
    f_(done_, total_);
  }

 private:
  const std::function<void(int64_t, int64_t)>& f_;
  std::span<const NamedTensor> tensors_;
  int64_t total_ = 0, done_ = 0;
  std::size_t next_ = 0;
};

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

namespace {

/// The per-bit steps of one tensor, or the reason it cannot carry them.
struct Steps {
  std::vector<float> deltas;
  std::string skip;  ///< non-empty: leave the tensor as it is
};

// Spread spectrum: +-strength * RMS per bit (minus lambda times the host's own projection for
// improved spread spectrum). The RMS comes from a strided sample; a sparse tensor that samples
// as all-zero is measured exactly before giving up.
Steps spread_spectrum_steps(const NamedTensor& s, const detail::CarrierSpec& carrier, const std::vector<int64_t>& n,
                            const std::optional<CorrelateStats>& stats, const Payload& payload,
                            const WatermarkOptions& o, Backend& backend) {
  const auto sample = backend.sample(s.view, kRmsSample);
  double ss = 0;
  bool finite = true;
  for (double v : sample) {
    finite = finite && std::isfinite(v);
    ss += v * v;
  }
  if (!finite) return {{}, "contains NaN/Inf values"};
  const double numel = static_cast<double>(s.view.numel());
  double rms = std::sqrt(ss / static_cast<double>(sample.size()));
  if (!(rms > 0) && stats) rms = std::sqrt(stats->sum_sq / numel);
  if (!(rms > 0)) {
    CorrelateStats full;
    backend.correlate(s.view, std::span(&carrier, 1), std::span(&full, 1));
    rms = std::sqrt(full.sum_sq / numel);
  }
  if (!(rms > 0)) return {{}, "all elements are zero"};
  const double alpha = o.effective_strength() * rms;
  Steps out{std::vector<float>(carrier.num_bits), {}};
  for (uint32_t b = 0; b < carrier.num_bits; ++b) {
    double step = alpha * payload_sign(payload, b);
    if (o.lambda > 0 && n[b] > 0) step -= o.lambda * stats->bit_sums[b] / static_cast<double>(n[b]);
    out.deltas[b] = static_cast<float>(step);
  }
  return out;
}

// STDM: move each bit's projection onto its keyed lattice point for the payload bit.
Steps stdm_steps(const detail::CarrierSpec& carrier, const std::vector<int64_t>& n, const CorrelateStats& stats,
                 int64_t numel, const Payload& payload, const WatermarkOptions& o) {
  const double rms = std::sqrt(stats.sum_sq / static_cast<double>(numel));
  if (!(rms > 0)) return {{}, "all elements are zero"};
  return {stdm_deltas(carrier, stats, n, payload, detail::stdm_step(o.effective_strength(), rms)), {}};
}

}  // namespace

EmbedReport embed(std::span<const NamedTensor> src, std::span<const NamedTensor> dst, const WatermarkKey& key,
                  const Payload& payload, const WatermarkOptions& options, Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  DIDMARK_EXPECTS(options.scheme != Scheme::automatic, invalid_argument,
                  "scheme 'auto' is for verification: choose spread-spectrum or stdm to embed");
  check_payload(payload);
  for (const auto& t : src) check_tensor(t);
  for (const auto& t : dst) check_tensor(t);
  const Pairing pairing = check_pairing(src, dst);
  const auto selection = detail::select_tensors(src, options.policy);
  const auto L = static_cast<uint32_t>(payload.size());

  EmbedReport report;
  report.scheme = options.scheme;
  report.strength = options.effective_strength();
  report.backend = backend.description();
  double total_src = 0, total_diff = 0;
  ProgressTicker ticker(options.progress, src);

  for (std::size_t i = 0; i < src.size(); ++i) {
    const NamedTensor& s = src[i];
    const NamedTensor& d = dst[i];
    ticker.before(i);
    TensorReport tr;
    tr.name = s.name;
    tr.dtype = s.view.dtype;
    tr.elements = s.view.numel();
    auto skip = [&](std::string why, bool named_is_error) {
      DIDMARK_EXPECTS(!named_is_error || !selection[i].named, invalid_argument, "tensor '", s.name,
                      "' cannot be marked: ", why);
      if (!pairing.in_place && s.view.numel() > 0 && s.view.data != d.view.data) backend.copy(s.view, d.view);
      tr.skip_reason = std::move(why);
      report.tensors.push_back(tr);
    };
    if (!selection[i].eligible) {
      skip(selection[i].reason, false);
      continue;
    }

    const detail::CarrierSpec carrier = derive_carrier(key, s.name, L);
    const auto n = bit_counts(carrier, tr.elements);
    // One read pass first when it is needed: STDM and ISS need the projections, and an
    // in-place embed must know about NaN/Inf before it writes.
    std::optional<CorrelateStats> stats;
    if (options.scheme == Scheme::stdm || options.lambda > 0 || pairing.in_place) {
      stats.emplace();
      backend.correlate(s.view, std::span(&carrier, 1), std::span(&*stats, 1));
      if (stats->nonfinite > 0) {
        skip(detail::concat("contains ", stats->nonfinite, " NaN/Inf values"), true);
        continue;
      }
    }
    const Steps steps = options.scheme == Scheme::stdm
                            ? stdm_steps(carrier, n, *stats, tr.elements, payload, options)
                            : spread_spectrum_steps(s, carrier, n, stats, payload, options, backend);
    if (!steps.skip.empty()) {
      skip(steps.skip, true);
      continue;
    }

    const AddStats as = backend.carrier_add(s.view, d.view, carrier, steps.deltas);
    if (as.nonfinite > 0) {
      // Only reachable out of place (in place was checked first): restore and skip.
      skip(detail::concat("contains ", as.nonfinite, " NaN/Inf values"), true);
      continue;
    }
    if (!(as.sum_sq_diff > 0)) {
      // Values so small (e.g. all denormal) that the step rounds away: nothing was marked,
      // and nothing changed in place either.
      skip("the step rounds away (values too small for the dtype)", true);
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
                          ? report.strength * std::sqrt(static_cast<double>(report.elements_marked))
                          : 0.0;
  report.seconds = seconds_since(t0);
  return report;
}

EmbedReport embed_in_place(std::span<const NamedTensor> tensors, const WatermarkKey& key, const Payload& payload,
                           const WatermarkOptions& options, Backend& backend) {
  return embed(tensors, tensors, key, payload, options, backend);
}

namespace {

/// One claim's running sums under one scheme, over the tensors seen so far.
struct SchemeAccum {
  std::vector<double> soft;    // per bit: normalized projections
  std::vector<double> weight;  // per bit: normalizer (elements, or STDM weights)
  double z_num = 0;            // spread spectrum: sum_t sqrt(N_t) z_t
};

struct ClaimAccum {
  SchemeAccum ss, stdm;
  int64_t elements = 0;
  int64_t nonfinite = 0;
  int tensors = 0;
  std::vector<TensorReport> per_tensor;
};

// Spread spectrum: each tensor normalized by its own RMS, so the combined statistic weighs
// tensors by size, not by scale; the normalizer depends on w only, so Hoeffding still holds.
// N counts the finite elements (the sums leave NaN/Inf out).
void add_spread_spectrum(const CorrelateStats& st, const std::vector<int64_t>& n, const Payload& payload, double N,
                         SchemeAccum& a, TensorReport& r) {
  const double inv_rms = std::sqrt(N / st.sum_sq);
  double T = 0;
  for (std::size_t b = 0; b < st.bit_sums.size(); ++b) {
    a.soft[b] += st.bit_sums[b] * inv_rms;
    a.weight[b] += static_cast<double>(n[b]);
    T += payload_sign(payload, b) * st.bit_sums[b];
  }
  r.z = T / std::sqrt(st.sum_sq);
  a.z_num += std::sqrt(N) * r.z;
}

// STDM: each bit's projection against its keyed lattice; weights are the bits' element counts.
void add_stdm(const CorrelateStats& st, const detail::CarrierSpec& carrier, const std::vector<int64_t>& n,
              double strength, double N, SchemeAccum& a) {
  const double step = detail::stdm_step(strength, std::sqrt(st.sum_sq / N));
  for (uint32_t b = 0; b < carrier.num_bits; ++b) {
    if (n[b] == 0) continue;
    const double p = st.bit_sums[b] / static_cast<double>(n[b]);
    const double w = static_cast<double>(n[b]);
    a.soft[b] += w * detail::stdm_soft(p, step, stdm_dither_unit(carrier, b) * step);
    a.weight[b] += w;
  }
}

/// Soft bits, decisions, bit errors and the test of one scheme's sums.
void finish_scheme(const SchemeAccum& a, Scheme scheme, const Payload& expected, bool have_payload,
                   int64_t elements, VerifyReport& r) {
  const auto L = expected.size();
  r.scheme = scheme;
  r.soft_bits.assign(L, 0.0f);
  r.decoded.assign(L, 0);
  r.bit_errors = 0;
  int agree = 0, covered = 0;
  for (std::size_t b = 0; b < L; ++b) {
    double soft = 0;
    if (a.weight[b] > 0) {
      soft = scheme == Scheme::spread_spectrum ? a.soft[b] / std::sqrt(a.weight[b]) : a.soft[b] / a.weight[b];
      ++covered;
    }
    r.soft_bits[b] = static_cast<float>(soft);
    r.decoded[b] = soft < 0 ? 1 : 0;
    const bool ok = a.weight[b] > 0 && r.decoded[b] == expected.bits[b];
    agree += ok ? 1 : 0;
    r.bit_errors += ok ? 0 : 1;
  }
  if (!have_payload) {
    r.bit_errors = 0;
    r.z = 0;
    r.p_value = 1;
    r.log10_p = 0;
    return;
  }
  if (scheme == Scheme::spread_spectrum) {
    r.z = elements > 0 ? a.z_num / std::sqrt(static_cast<double>(elements)) : 0.0;
    r.log10_p = hoeffding_log10_p(r.z);
  } else {
    // Bits with no elements cannot agree by chance or otherwise: they leave the test.
    r.log10_p = binomial_tail_log10(covered, agree);
    r.z = r.log10_p < 0 ? std::sqrt(-2.0 * r.log10_p * std::log(10.0)) : 0.0;
  }
  r.p_value = std::pow(10.0, r.log10_p);
}

/// The claim's report: one scheme's, or with automatic the better of both at a doubled p.
VerifyReport finish_claim(const ClaimAccum& a, Scheme scheme, const Payload& expected, bool have_payload,
                          double log10_threshold) {
  VerifyReport r;
  r.bits = static_cast<int>(expected.size());
  r.elements = a.elements;
  r.nonfinite = a.nonfinite;
  r.tensors = a.tensors;
  r.per_tensor = a.per_tensor;
  if (scheme == Scheme::automatic) {
    VerifyReport ss = r, st = r;
    finish_scheme(a.ss, Scheme::spread_spectrum, expected, have_payload, a.elements, ss);
    finish_scheme(a.stdm, Scheme::stdm, expected, have_payload, a.elements, st);
    r = (!have_payload || ss.log10_p <= st.log10_p) ? std::move(ss) : std::move(st);
    if (have_payload) {
      r.log10_p = std::min(0.0, r.log10_p + std::log10(2.0));  // two tests, one verdict
      r.p_value = std::pow(10.0, r.log10_p);
    }
  } else {
    finish_scheme(scheme == Scheme::stdm ? a.stdm : a.ss, scheme, expected, have_payload, a.elements, r);
  }
  r.detected = have_payload && a.elements > 0 && r.log10_p <= log10_threshold;
  return r;
}

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
  const bool want_ss = options.scheme != Scheme::stdm, want_stdm = options.scheme != Scheme::spread_spectrum;
  const double stdm_strength = options.strength_for(Scheme::stdm);

  std::vector<ClaimAccum> acc(claims.size());
  for (auto& a : acc)
    for (SchemeAccum* s : {&a.ss, &a.stdm}) {
      s->soft.assign(L, 0.0);
      s->weight.assign(L, 0.0);
    }
  std::vector<detail::CarrierSpec> carriers(claims.size());
  std::vector<CorrelateStats> stats(claims.size());

  ProgressTicker ticker(options.progress, tensors);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const NamedTensor& t = tensors[i];
    ticker.before(i);
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
    if (claims.empty()) continue;
    for (std::size_t k = 0; k < claims.size(); ++k) carriers[k] = derive_carrier(claims[k].key, t.name, L);
    backend.correlate(t.view, carriers, stats);
    // NaN/Inf never switch a tensor off (that would let a few edited values hide the mark):
    // the sums leave them out, and the statistic runs on the finite elements.
    tr.nonfinite = stats[0].nonfinite;
    const int64_t finite = tr.elements - tr.nonfinite;
    if (!(stats[0].sum_sq > 0) || finite <= 0) {
      skip_all(tr.nonfinite > 0 ? "no finite non-zero element" : "all elements are zero");
      continue;
    }
    const double N = static_cast<double>(finite);
    for (std::size_t k = 0; k < claims.size(); ++k) {
      ClaimAccum& a = acc[k];
      const auto n = bit_counts(carriers[k], tr.elements);
      TensorReport r = tr;
      r.used = true;
      if (want_ss) add_spread_spectrum(stats[k], n, claims[k].payload, N, a.ss, r);
      if (want_stdm) add_stdm(stats[k], carriers[k], n, stdm_strength, N, a.stdm);
      a.elements += finite;
      a.nonfinite += tr.nonfinite;
      a.tensors += 1;
      a.per_tensor.push_back(std::move(r));
    }
  }
  backend.synchronize();

  std::vector<VerifyReport> out;
  out.reserve(claims.size());
  const double log10_threshold = std::log10(options.p_threshold);
  for (std::size_t k = 0; k < claims.size(); ++k)
    out.push_back(finish_claim(acc[k], options.scheme, claims[k].payload, have_payload, log10_threshold));
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
