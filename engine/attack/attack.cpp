// Attack specs: parsing, checking, dispatch.
#include <charconv>
#include <cmath>

#include "attack/attacks.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

std::vector<std::string> split(std::string_view s) {
  std::vector<std::string> out;
  std::size_t b = 0;
  for (std::size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == ':') {
      out.emplace_back(s.substr(b, i - b));
      b = i + 1;
    }
  return out;
}

std::string join(const std::vector<std::string>& v, std::size_t from, std::size_t to) {
  std::string s;
  for (std::size_t i = from; i < to; ++i) s += (i > from ? ":" : "") + v[i];
  return s;
}

std::optional<double> number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  std::size_t used = 0;
  try {
    const double v = std::stod(s, &used);
    if (used != s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
  } catch (...) {
    return std::nullopt;
  }
}

[[noreturn]] void bad(std::string_view spec, const std::string& why) {
  DIDMARK_THROW(Errc::invalid_argument, "attack '", spec, "': ", why);
}

double need_number(std::string_view spec, const std::vector<std::string>& t, std::size_t i, const char* what, double lo,
                   double hi, bool lo_open) {
  if (t.size() <= i || t[i].empty()) bad(spec, std::string("needs ") + what);
  const auto v = number(t[i]);
  if (!v) bad(spec, std::string(what) + " '" + t[i] + "' is not a number");
  if ((lo_open ? *v <= lo : *v < lo) || *v > hi)
    bad(spec, std::string(what) + " " + t[i] + " is out of range " + (lo_open ? "(" : "[") + std::to_string(lo) +
                  ", " + std::to_string(hi) + "]");
  return *v;
}

void arity(std::string_view spec, const std::vector<std::string>& t, std::size_t lo, std::size_t hi,
           const char* form) {
  if (t.size() < lo || t.size() > hi) bad(spec, std::string("expected the form ") + form);
}

AttackSpec cast_spec(AttackSpec s, const std::vector<std::string>& t) {
  arity(s.text, t, 2, 2, "cast:f16|bf16|fp8-e4m3|fp8-e5m2");
  const std::string& d = t[1];
  if (d == "f16" || d == "fp16" || d == "bf16") s.strength = 16;
  else if (d == "fp8-e4m3" || d == "fp8-e5m2" || d == "fp8" || d == "f8-e4m3" || d == "f8-e5m2") s.strength = 8;
  else bad(s.text, "unknown cast type '" + d + "' (f16, bf16, fp8-e4m3, fp8-e5m2)");
  s.args = {d};
  return s;
}

AttackSpec noise_spec(AttackSpec s, const std::vector<std::string>& t) {
  arity(s.text, t, 2, 2, "noise:REL (Gaussian noise of REL x each tensor's RMS)");
  s.strength = need_number(s.text, t, 1, "REL", 0, 10, true);
  s.args = {t[1]};
  return s;
}

}  // namespace

AttackSpec parse_attack_spec(std::string_view text) {
  AttackSpec s;
  s.text = std::string(text);
  const auto t = split(text);
  s.kind = t[0];
  const std::string& k = s.kind;
  if (k == "noise") return noise_spec(s, t);
  if (k == "cast") return cast_spec(s, t);
  if (k == "quant") {
    if (t.size() == 2 && (t[1] == "int8" || t[1] == "int8-channel")) {
      s.args = {t[1]};
      s.strength = 8;
      return s;
    }
    if (t.size() >= 2 && t[1] == "int4") {
      arity(text, t, 2, 3, "quant:int4:gG (G: group size, e.g. g128)");
      int64_t g = 128;
      if (t.size() == 3) {
        if (t[2].size() < 2 || t[2][0] != 'g') bad(text, "the group is written gG, e.g. g128");
        g = static_cast<int64_t>(need_number(text, {t[2].substr(1)}, 0, "group size", 2, 1 << 20, false));
        if (static_cast<double>(g) != *number(t[2].substr(1))) bad(text, "the group size must be a whole number");
      }
      s.args = {"int4", "g" + std::to_string(g)};
      s.strength = static_cast<double>(g);
      return s;
    }
    bad(text, "expected quant:int8, quant:int8-channel or quant:int4:gG");
  }
  if (k == "prune") {
    arity(text, t, 2, 2, "prune:FRAC (magnitude) or prune:NofM (structured, e.g. 2of4)");
    const auto of = t[1].find("of");
    if (of != std::string::npos) {
      const auto n = number(t[1].substr(0, of)), m = number(t[1].substr(of + 2));
      if (!n || !m || *n != std::floor(*n) || *m != std::floor(*m) || *n < 1 || *n >= *m || *m > 64)
        bad(text, "structured pruning is NofM with 1 <= N < M <= 64 (keep N of every M), e.g. 2of4");
      s.strength = 1 - *n / *m;
    } else {
      s.strength = need_number(text, t, 1, "FRAC", 0, 1, false);
      if (s.strength >= 1) bad(text, "FRAC must be below 1 (it is the fraction of weights set to zero)");
    }
    s.args = {t[1]};
    return s;
  }
  if (k == "merge" || k == "merge-ties") {
    const bool ties = k == "merge-ties";
    if (t.size() < 3) bad(text, ties ? "expected merge-ties:OTHER:ALPHA[:DENSITY]" : "expected merge:OTHER:ALPHA");
    std::size_t end = t.size() - 1;
    std::string density;
    if (ties && t.size() >= 4 && number(t[t.size() - 1]) && number(t[t.size() - 2])) {
      density = t.back();
      end = t.size() - 2;
      need_number(text, t, t.size() - 1, "DENSITY", 0, 1, true);
    }
    s.strength = need_number(text, t, end, "ALPHA (the partner's weight)", 0, 1, false);
    const std::string path = join(t, 1, end);
    if (path.empty()) bad(text, "needs the partner checkpoint OTHER");
    s.args = {path, t[end]};
    if (!density.empty()) s.args.push_back(density);
    return s;
  }
  if (k == "permute") {
    arity(text, t, 2, 2, "permute:hidden|ffn|heads|channels|all");
    if (t[1] != "hidden" && t[1] != "ffn" && t[1] != "heads" && t[1] != "channels" && t[1] != "all")
      bad(text, "permute what? hidden, ffn, heads, channels or all");
    s.args = {t[1]};
    return s;
  }
  if (k == "rescale") {
    arity(text, t, 1, 2, "rescale or rescale:force");
    if (t.size() == 2 && t[1] != "force") bad(text, "the only option is rescale:force");
    if (t.size() == 2) s.args = {"force"};
    return s;
  }
  if (k == "rescale-attn") {
    arity(text, t, 1, 1, "rescale-attn");
    return s;
  }
  if (k == "rescale-channels") {
    arity(text, t, 1, 1, "rescale-channels");
    return s;
  }
  if (k == "dummy") {
    arity(text, t, 2, 2, "dummy:N (N neurons added to every FFN)");
    s.strength = need_number(text, t, 1, "N", 1, 1e6, false);
    if (s.strength != std::floor(s.strength)) bad(text, "N must be a whole number");
    s.args = {t[1]};
    return s;
  }
  if (k == "rename") {
    if (t.size() < 2 || join(t, 1, t.size()).empty()) bad(text, "expected rename:PREFIX");
    s.args = {join(t, 1, t.size())};
    return s;
  }
  if (k == "truncate") {
    arity(text, t, 2, 2, "truncate:LAYERS (keep the first LAYERS layers)");
    s.strength = need_number(text, t, 1, "LAYERS", 1, 1e6, false);
    if (s.strength != std::floor(s.strength)) bad(text, "LAYERS must be a whole number");
    s.args = {t[1]};
    return s;
  }
  if (k == "remark") {
    if (t.size() < 2) bad(text, "expected remark:ID.json[:STRENGTH]");
    std::size_t end = t.size();
    if (t.size() >= 3 && number(t.back())) {
      s.strength = need_number(text, t, t.size() - 1, "STRENGTH", 0, 0.2, true);
      end = t.size() - 1;
    }
    s.args = {join(t, 1, end)};
    if (end < t.size()) s.args.push_back(t.back());
    return s;
  }
  bad(text,
      "unknown attack '" + k +
          "' (noise, cast, quant, prune, merge, merge-ties, permute, rescale, rescale-attn, rescale-channels, dummy, rename, "
          "truncate, remark)");
}

AttackSpec parse_array_attack_spec(std::string_view text) {
  AttackSpec s;
  s.text = std::string(text);
  const auto t = split(text);
  s.kind = t[0];
  const std::string& k = s.kind;
  if (k == "noise") return noise_spec(s, t);
  if (k == "cast") return cast_spec(s, t);
  if (k == "quant") {
    arity(text, t, 2, 2, "quant:int8-dim or quant:binary");
    if (t[1] == "int8-dim") s.strength = 8;
    else if (t[1] == "binary") s.strength = 1;
    else bad(text, "arrays quantize as quant:int8-dim (per dimension) or quant:binary (sign)");
    s.args = {t[1]};
    return s;
  }
  if (k == "rotate" || k == "permute-dims") {
    arity(text, t, 1, 1, k == "rotate" ? "rotate" : "permute-dims");
    return s;
  }
  if (k == "pca") {
    arity(text, t, 2, 2, "pca:K (keep K principal components)");
    s.strength = need_number(text, t, 1, "K", 1, 1e6, false);
    if (s.strength != std::floor(s.strength)) bad(text, "K must be a whole number");
    s.args = {t[1]};
    return s;
  }
  if (k == "subset") {
    arity(text, t, 2, 2, "subset:FRAC (keep FRAC of the rows, shuffled)");
    s.strength = need_number(text, t, 1, "FRAC", 0, 1, true);
    s.args = {t[1]};
    return s;
  }
  bad(text, "unknown array attack '" + k +
                "' (noise, cast, quant:int8-dim, quant:binary, rotate, permute-dims, pca:K, subset:FRAC)");
}

AttackReport apply_attack(TensorSet& model, const AttackSpec& spec, AttackContext& ctx) {
  const std::string& k = spec.kind;
  AttackReport r;
  if (k == "permute" || k == "rescale" || k == "rescale-attn" || k == "rescale-channels" || k == "dummy" ||
      k == "rename" || k == "truncate")
    r = attack_detail::structural_attack(model, spec, ctx);
  else
    r = attack_detail::value_attack(model, spec, ctx);
  ++ctx.applied;
  return r;
}

}  // namespace didmark
