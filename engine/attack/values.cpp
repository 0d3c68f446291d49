// Value attacks: noise, casts, quantization, pruning, merges and a second mark.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <regex>

#include "attack/attacks.hpp"
#include "attack/ops.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::attack_detail {
namespace {

/// The tensors a value attack touches: floating, matching the context's regex, and for
/// quantization and pruning of rank >= 2 (vectors stay in float, as the real tools leave them).
std::vector<OwnedTensor*> targets(TensorSet& m, const AttackContext& ctx, bool matrices_only) {
  std::optional<std::regex> re;
  if (!ctx.tensors_regex.empty()) re.emplace(ctx.tensors_regex, std::regex::ECMAScript | std::regex::icase);
  std::vector<OwnedTensor*> out;
  for (auto& t : m.tensors) {
    if (!t.is_floating() || t.numel() == 0) continue;
    if (matrices_only && t.shape.size() < 2) continue;
    if (re && !std::regex_search(t.name, *re)) continue;
    out.push_back(&t);
  }
  return out;
}

int64_t last_dim(const OwnedTensor& t) { return t.shape.empty() ? 1 : t.shape.back(); }

void noise(OwnedTensor& t, double rel, std::mt19937_64 rng) {
  auto v = t.values();
  std::normal_distribution<double> nd(0.0, rel * rms(v));
  for (auto& x : v) x += nd(rng);
  t.assign(v);
}

std::optional<DType> cast_target(const std::string& s) {
  if (s == "f16" || s == "fp16") return DType::f16;
  if (s == "bf16") return DType::bf16;
  if (s == "fp8-e4m3" || s == "f8-e4m3" || s == "fp8") return DType::f8_e4m3;
  if (s == "fp8-e5m2" || s == "f8-e5m2") return DType::f8_e5m2;
  return std::nullopt;
}

// Round through `to`; f16/bf16 are then stored as such where the format holds them, fp8 goes
// back into the tensor's own dtype (the verifier reads 16- and 32-bit floats).
void cast(OwnedTensor& t, DType to, bool store) {
  OwnedTensor c(t.name, to, t.shape);
  c.assign(t.values());
  if (store) {
    t = std::move(c);
  } else {
    t.assign(c.values());
  }
}

void quant_int8(OwnedTensor& t, bool per_channel) {
  auto v = t.values();
  const int64_t rows = per_channel ? t.shape[0] : 1;
  const auto per = static_cast<int64_t>(v.size()) / rows;
  for (int64_t r = 0; r < rows; ++r) {
    double* p = v.data() + r * per;
    double amax = 0;
    for (int64_t i = 0; i < per; ++i)
      if (std::isfinite(p[i])) amax = std::max(amax, std::fabs(p[i]));
    if (amax == 0) continue;
    const double scale = amax / 127.0;
    for (int64_t i = 0; i < per; ++i) p[i] = std::clamp(std::nearbyint(p[i] / scale), -127.0, 127.0) * scale;
  }
  t.assign(v);
}

// GPTQ/AWQ storage: per group of G consecutive inputs (the last axis), a scale and an integer
// zero point, 4-bit codes 0..15.
void quant_int4(OwnedTensor& t, int64_t group) {
  auto v = t.values();
  const int64_t cols = last_dim(t), rows = static_cast<int64_t>(v.size()) / cols;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 < cols; c0 += group) {
      double* p = v.data() + r * cols + c0;
      const int64_t n = std::min(group, cols - c0);
      double lo = 0, hi = 0;  // the range always holds 0, as the tools do
      for (int64_t i = 0; i < n; ++i)
        if (std::isfinite(p[i])) lo = std::min(lo, p[i]), hi = std::max(hi, p[i]);
      if (hi == lo) continue;
      const double scale = (hi - lo) / 15.0, zero = std::nearbyint(-lo / scale);
      for (int64_t i = 0; i < n; ++i) p[i] = (std::clamp(std::nearbyint(p[i] / scale) + zero, 0.0, 15.0) - zero) * scale;
    }
  t.assign(v);
}

void prune_magnitude(OwnedTensor& t, double frac) {
  auto v = t.values();
  const auto k = static_cast<std::size_t>(std::floor(frac * static_cast<double>(v.size())));
  if (k == 0) return;
  std::vector<uint32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0u);
  // Smallest magnitudes first; ties broken by index so the result does not depend on the sort.
  auto less = [&](uint32_t a, uint32_t b) {
    const double x = std::fabs(v[a]), y = std::fabs(v[b]);
    return x < y || (x == y && a < b);
  };
  std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k - 1), idx.end(), less);
  for (std::size_t i = 0; i < k; ++i) v[idx[i]] = 0;
  t.assign(v);
}

void prune_n_of_m(OwnedTensor& t, int n, int m) {
  auto v = t.values();
  const int64_t cols = last_dim(t), rows = static_cast<int64_t>(v.size()) / cols;
  std::vector<int> order(static_cast<std::size_t>(m));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c0 = 0; c0 + m <= cols; c0 += m) {
      double* p = v.data() + r * cols + c0;
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return std::fabs(p[a]) > std::fabs(p[b]); });
      for (int i = n; i < m; ++i) p[order[static_cast<std::size_t>(i)]] = 0;
    }
  t.assign(v);
}

TensorSet load_partner(const std::string& path, const AttackSpec& spec) {
  try {
    return load_tensor_set(path);
  } catch (const Error& e) {
    DIDMARK_THROW(e.code(), spec.text, ": cannot read the merge partner: ", e.what());
  }
}

const OwnedTensor& partner_of(const TensorSet& other, const OwnedTensor& t, const AttackSpec& spec,
                              const std::string& path) {
  const OwnedTensor* o = other.find(t.name);
  DIDMARK_EXPECTS(o != nullptr, invalid_argument, spec.text, ": merge partner '", path,
                  "' is of another architecture: it has no tensor '", t.name, "'");
  DIDMARK_EXPECTS(o->shape == t.shape && o->is_floating(), invalid_argument, spec.text, ": merge partner '", path,
                  "' is of another architecture: tensor '", t.name, "' is ", t.view().describe(), " here and ",
                  o->view().describe(), " there");
  return *o;
}

// TIES (Yadav et al. 2023) with the partner as the base: the task vector tau = w - partner is
// trimmed to its `density` largest-magnitude entries per tensor; with one task vector sign
// election keeps every surviving entry and the disjoint mean is the entry itself, so the
// merge is partner + (1 - alpha) * trim(tau). density 1 is the linear merge.
void ties(OwnedTensor& t, const OwnedTensor& o, double alpha, double density) {
  auto w = t.values();
  const auto b = o.values();
  std::vector<double> tau(w.size());
  for (std::size_t i = 0; i < w.size(); ++i) tau[i] = w[i] - b[i];
  const auto keep = static_cast<std::size_t>(std::ceil(density * static_cast<double>(w.size())));
  std::vector<double> mags(tau.size());
  for (std::size_t i = 0; i < tau.size(); ++i) mags[i] = std::fabs(tau[i]);
  double cut = 0;
  if (keep < mags.size()) {
    std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(mags.size() - keep), mags.end());
    cut = mags[mags.size() - keep];
  }
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = b[i] + (std::fabs(tau[i]) >= cut ? (1 - alpha) * tau[i] : 0.0);
  t.assign(w);
}

}  // namespace

AttackReport value_attack(TensorSet& m, const AttackSpec& spec, AttackContext& ctx) {
  AttackReport rep;
  rep.spec = spec.text;
  const std::string& k = spec.kind;
  if (k == "remark") {
    const Identity id = load_identity(spec.args[0]);
    WatermarkOptions o = ctx.remark_options;
    if (spec.args.size() > 1) o.set_strength(spec.strength);
    o.max_relative_change = 1.0;  // the thief has no budget to keep
    const auto named = m.named();
    const EmbedReport e = embed_in_place(named, id.watermark_key(), did_codeword(id.did()), o,
                                         ctx.backend ? *ctx.backend : default_backend());
    rep.tensors_changed = e.tensors_marked;
    rep.notes.push_back("second mark by " + id.did() + " (" + std::string(scheme_name(e.scheme)) + ", strength " +
                        std::to_string(e.strength) + ") in " + std::to_string(e.tensors_marked) + " tensors");
    return rep;
  }
  const bool matrices = k == "quant" || k == "prune";
  auto ts = targets(m, ctx, matrices);
  if (k == "noise") {
    for (auto* t : ts) noise(*t, spec.strength, stream(ctx.seed, ctx.applied, t->name));
  } else if (k == "cast") {
    const DType to = *cast_target(spec.args[0]);
    const bool store = (to == DType::f16 || to == DType::bf16) &&
                       !(m.format == CheckpointFormat::npy && to == DType::bf16);
    int n = 0;
    for (auto* t : ts)
      if (t->dtype != to) cast(*t, to, store), ++n;
    rep.notes.push_back(store ? "stored as " + std::string(dtype_name(to))
                              : "rounded through " + std::string(dtype_name(to)) + ", stored in the original dtypes");
    rep.tensors_changed = n;
    return rep;
  } else if (k == "quant") {
    const std::string& q = spec.args[0];
    for (auto* t : ts) {
      if (q == "int8") quant_int8(*t, false);
      else if (q == "int8-channel") quant_int8(*t, true);
      else quant_int4(*t, static_cast<int64_t>(spec.strength));
    }
  } else if (k == "prune") {
    const std::string& a = spec.args[0];
    const auto of = a.find("of");
    for (auto* t : ts) {
      if (of != std::string::npos)
        prune_n_of_m(*t, std::stoi(a.substr(0, of)), std::stoi(a.substr(of + 2)));
      else
        prune_magnitude(*t, spec.strength);
    }
  } else if (k == "merge" || k == "merge-ties") {
    const std::string& path = spec.args[0];
    const TensorSet other = load_partner(path, spec);
    const double alpha = spec.strength;
    const double density = spec.args.size() > 2 ? std::stod(spec.args[2]) : 0.2;
    for (auto* t : ts) partner_of(other, *t, spec, path);  // all checked before any change
    for (auto* t : ts) {
      const OwnedTensor& o = partner_of(other, *t, spec, path);
      if (k == "merge-ties") {
        ties(*t, o, alpha, density);
        continue;
      }
      auto w = t->values();
      const auto b = o.values();
      for (std::size_t i = 0; i < w.size(); ++i) w[i] = (1 - alpha) * w[i] + alpha * b[i];
      t->assign(w);
    }
  } else {
    DIDMARK_THROW(Errc::internal, "no value attack '", k, "'");
  }
  rep.tensors_changed = static_cast<int>(ts.size());
  return rep;
}

}  // namespace didmark::attack_detail
