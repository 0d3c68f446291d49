// Architecture maps: which tensors share the hidden, FFN and head dimensions, recognised
// from BERT, GPT-2 and Llama names, or read from JSON.
#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "didmark/attack.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace fs = std::filesystem;
using nlohmann::json;

std::string_view activation_name(Activation a) noexcept {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::gelu: return "gelu";
    case Activation::silu: return "silu";
    case Activation::gated: return "gated";
    default: return "unknown";
  }
}

std::optional<Activation> parse_activation(std::string_view s) noexcept {
  std::string l(s);
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "relu" || l == "relu6" || l == "leaky_relu") return Activation::relu;
  if (l.rfind("gelu", 0) == 0 || l == "quick_gelu") return Activation::gelu;
  if (l == "silu" || l == "swish") return Activation::silu;
  if (l == "gated" || l == "swiglu" || l == "geglu" || l == "reglu") return Activation::gated;
  if (l == "unknown") return Activation::unknown;
  return std::nullopt;
}

ArchitectureHints architecture_hints_from_config(const fs::path& config_json) {
  std::ifstream in(config_json);
  DIDMARK_EXPECTS(in.good(), not_found, "cannot read config '", config_json.string(), "'");
  json j = json::parse(in, nullptr, false);
  DIDMARK_EXPECTS(!j.is_discarded() && j.is_object(), corrupt_input, "config '", config_json.string(),
                  "' is not a JSON object");
  ArchitectureHints h;
  auto int_of = [&](std::initializer_list<const char*> keys) -> int64_t {
    for (const char* k : keys)
      if (j.contains(k) && j[k].is_number_integer()) return j[k].get<int64_t>();
    return 0;
  };
  h.heads = int_of({"num_attention_heads", "n_head", "num_heads"});
  h.kv_heads = int_of({"num_key_value_heads", "n_head_kv", "num_kv_heads"});
  const std::string model_type = j.value("model_type", std::string());
  for (const char* k : {"hidden_act", "activation_function", "hidden_activation"})
    if (j.contains(k) && j[k].is_string()) {
      h.activation = parse_activation(j[k].get<std::string>());
      break;
    }
  // Llama-family configs name the gate's activation ("silu"); the MLP itself is gated.
  if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2" || model_type == "gemma")
    h.activation = Activation::gated;
  return h;
}

namespace {

enum class Dim { hidden, q, k, v, o, ffn_in, ffn_gate, ffn_out, none };

struct Builder {
  std::string family;
  ArchitectureMap map;
  std::map<int, LayerMap> layers;
  int matched = 0;

  void add_size(int64_t& have, int64_t size, const std::string& tensor, const char* what) {
    if (have == 0) have = size;
    DIDMARK_EXPECTS(have == size, invalid_argument, "architecture (", family, "): tensor '", tensor, "' has ", size,
                    " along its ", what, " axis, other tensors ", have);
  }

  void add(Dim d, int layer, const std::string& tensor, int axis, int64_t offset, int64_t size) {
    AxisRef r{tensor, axis, offset};
    if (d == Dim::hidden) {
      add_size(map.hidden, size, tensor, "hidden");
      map.hidden_axes.push_back(r);
      return;
    }
    LayerMap& L = layers[layer];
    L.index = layer;
    switch (d) {
      case Dim::q: add_size(L.attention.q_size, size, tensor, "query"); L.attention.q.push_back(r); break;
      case Dim::k: add_size(L.attention.kv_size, size, tensor, "key"); L.attention.k.push_back(r); break;
      case Dim::v: add_size(L.attention.kv_size, size, tensor, "value"); L.attention.v.push_back(r); break;
      case Dim::o: add_size(L.attention.q_size, size, tensor, "attention output"); L.attention.o.push_back(r); break;
      case Dim::ffn_in: add_size(L.ffn.size, size, tensor, "FFN"); L.ffn.in.push_back(r); break;
      case Dim::ffn_gate: add_size(L.ffn.size, size, tensor, "FFN"); L.ffn.gate.push_back(r); break;
      case Dim::ffn_out: add_size(L.ffn.size, size, tensor, "FFN"); L.ffn.out.push_back(r); break;
      default: break;
    }
  }
  void member(int layer, const std::string& tensor) {
    if (layer < 0) return;
    LayerMap& L = layers[layer];
    L.index = layer;
    L.tensors.push_back(tensor);
  }
};

/// One naming rule: `re` (group 1 = prefix, group 2 = layer number when `layered`), and what
/// each axis of a matching tensor is.
struct Rule {
  std::regex re;
  bool layered;
  std::function<void(Builder&, int layer, const std::string& name, const std::vector<int64_t>& shape,
                      const std::smatch& m)>
      add;
};

using Shape = std::vector<int64_t>;

Rule rule(const std::string& pattern, bool layered,
          std::function<void(Builder&, int, const std::string&, const Shape&, const std::smatch&)> f) {
  return Rule{std::regex(pattern), layered, std::move(f)};
}

// Shorthands: axis `a` of a tensor belongs to dimension d (whole axis).
void ax(Builder& b, Dim d, int layer, const std::string& n, const Shape& s, int a) {
  DIDMARK_EXPECTS(static_cast<int>(s.size()) > a, invalid_argument, "architecture (", b.family, "): tensor '", n,
                  "' has rank ", s.size(), ", expected at least ", a + 1);
  b.add(d, layer, n, a, 0, s[static_cast<std::size_t>(a)]);
}

Dim qkv_dim(const std::string& which) {
  if (which == "query" || which == "q") return Dim::q;
  if (which == "key" || which == "k") return Dim::k;
  return Dim::v;
}

std::vector<Rule> bert_rules() {
  const std::string P = "^(|.*\\.)", L = "encoder\\.layer\\.(\\d+)\\.";
  std::vector<Rule> r;
  r.push_back(rule(P + "embeddings\\.(word|position|token_type)_embeddings\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 1);
                   }));
  r.push_back(rule(P + "embeddings\\.LayerNorm\\.(weight|bias|gamma|beta)$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 0);
                   }));
  r.push_back(rule(P + L + "attention\\.self\\.(query|key|value)\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch& m) {
                     ax(b, qkv_dim(m[3].str()), l, n, s, 0);
                     ax(b, Dim::hidden, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "attention\\.self\\.(query|key|value)\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch& m) {
                     ax(b, qkv_dim(m[3].str()), l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "attention\\.output\\.dense\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                     ax(b, Dim::o, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "(attention\\.output\\.dense\\.bias|attention\\.output\\.LayerNorm\\.(weight|bias|gamma|beta)|"
                           "output\\.LayerNorm\\.(weight|bias|gamma|beta)|output\\.dense\\.bias)$",
                   true, [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "intermediate\\.dense\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::ffn_in, l, n, s, 0);
                     ax(b, Dim::hidden, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "intermediate\\.dense\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::ffn_in, l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "output\\.dense\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                     ax(b, Dim::ffn_out, l, n, s, 1);
                   }));
  // The pooler reads the hidden state; its own output space stays as it is.
  r.push_back(rule(P + "pooler\\.dense\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 1);
                   }));
  r.push_back(rule(P + "pooler\\.dense\\.bias$", false, [](Builder&, int, const std::string&, const Shape&,
                                                           const std::smatch&) {}));
  return r;
}

std::vector<Rule> gpt2_rules() {
  const std::string P = "^(|.*\\.)", L = "h\\.(\\d+)\\.";
  std::vector<Rule> r;
  r.push_back(rule(P + "(wte|wpe)\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 1);
                   }));
  r.push_back(rule(P + L + "(ln_1|ln_2)\\.(weight|bias)$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                   }));
  // Conv1D stores [in, out]; c_attn's out axis is q | k | v.
  r.push_back(rule(P + L + "attn\\.c_attn\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                     DIDMARK_EXPECTS(s.size() == 2 && s[1] % 3 == 0, invalid_argument, "architecture (gpt2): '", n,
                                     "' should be [hidden, 3 x hidden]");
                     const int64_t q = s[1] / 3;
                     b.add(Dim::q, l, n, 1, 0, q);
                     b.add(Dim::k, l, n, 1, q, q);
                     b.add(Dim::v, l, n, 1, 2 * q, q);
                   }));
  r.push_back(rule(P + L + "attn\\.c_attn\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     DIDMARK_EXPECTS(s.size() == 1 && s[0] % 3 == 0, invalid_argument, "architecture (gpt2): '", n,
                                     "' should be [3 x hidden]");
                     const int64_t q = s[0] / 3;
                     b.add(Dim::q, l, n, 0, 0, q);
                     b.add(Dim::k, l, n, 0, q, q);
                     b.add(Dim::v, l, n, 0, 2 * q, q);
                   }));
  r.push_back(rule(P + L + "attn\\.c_proj\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::o, l, n, s, 0);
                     ax(b, Dim::hidden, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "(attn|mlp)\\.c_proj\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "mlp\\.c_fc\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                     ax(b, Dim::ffn_in, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "mlp\\.c_fc\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::ffn_in, l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "mlp\\.c_proj\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::ffn_out, l, n, s, 0);
                     ax(b, Dim::hidden, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "attn\\.(bias|masked_bias)$", true,
                   [](Builder&, int, const std::string&, const Shape&, const std::smatch&) {}));
  r.push_back(rule(P + "ln_f\\.(weight|bias)$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 0);
                   }));
  r.push_back(rule(P + "lm_head\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 1);
                   }));
  return r;
}

std::vector<Rule> llama_rules() {
  const std::string P = "^(|.*\\.)", L = "layers\\.(\\d+)\\.";
  std::vector<Rule> r;
  r.push_back(rule(P + "embed_tokens\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 1);
                   }));
  r.push_back(rule(P + L + "(input_layernorm|post_attention_layernorm)\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "self_attn\\.(q|k|v)_proj\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch& m) {
                     ax(b, qkv_dim(m[3].str()), l, n, s, 0);
                     ax(b, Dim::hidden, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "self_attn\\.(q|k|v)_proj\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch& m) {
                     ax(b, qkv_dim(m[3].str()), l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "self_attn\\.o_proj\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                     ax(b, Dim::o, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "self_attn\\.o_proj\\.bias$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                   }));
  r.push_back(rule(P + L + "mlp\\.(gate|up)_proj\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch& m) {
                     ax(b, m[3].str() == "gate" ? Dim::ffn_gate : Dim::ffn_in, l, n, s, 0);
                     ax(b, Dim::hidden, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "mlp\\.down_proj\\.weight$", true,
                   [](Builder& b, int l, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, l, n, s, 0);
                     ax(b, Dim::ffn_out, l, n, s, 1);
                   }));
  r.push_back(rule(P + L + "self_attn\\.rotary_emb\\.inv_freq$", true,
                   [](Builder&, int, const std::string&, const Shape&, const std::smatch&) {}));
  r.push_back(rule(P + "norm\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 0);
                   }));
  r.push_back(rule(P + "lm_head\\.weight$", false,
                   [](Builder& b, int, const std::string& n, const Shape& s, const std::smatch&) {
                     ax(b, Dim::hidden, -1, n, s, 1);
                   }));
  return r;
}

bool floating(DType t) { return is_watermarkable(t) || t == DType::f8_e4m3 || t == DType::f8_e5m2; }

Builder try_family(const std::string& family, const std::vector<Rule>& rules, std::span<const NamedTensor> tensors,
                   Activation act) {
  Builder b;
  b.family = family;
  b.map.family = family;
  for (const auto& t : tensors) {
    std::smatch m;
    bool hit = false;
    for (const auto& r : rules) {
      if (!std::regex_match(t.name, m, r.re)) continue;
      const int layer = r.layered ? std::stoi(m[2].str()) : -1;
      r.add(b, layer, t.name, t.view.shape, m);
      b.member(layer, t.name);
      hit = true;
      ++b.matched;
      break;
    }
    if (!hit && floating(t.view.dtype)) b.map.unmapped.push_back(t.name);
  }
  for (auto& [i, L] : b.layers) {
    L.ffn.activation = act;
    b.map.layers.push_back(std::move(L));
  }
  return b;
}

void apply_heads(ArchitectureMap& m, const ArchitectureHints& h) {
  for (auto& L : m.layers) {
    auto& a = L.attention;
    if (h.heads <= 0 || a.q_size == 0) continue;
    DIDMARK_EXPECTS(a.q_size % h.heads == 0, invalid_argument, "architecture (", m.family, "): layer ", L.index,
                    " has ", a.q_size, " query rows, not a multiple of ", h.heads, " heads");
    a.heads = h.heads;
    a.head_dim = a.q_size / h.heads;
    const int64_t kv = a.kv_size ? a.kv_size : a.q_size;
    DIDMARK_EXPECTS(kv % a.head_dim == 0, invalid_argument, "architecture (", m.family, "): layer ", L.index,
                    " has ", kv, " key rows, not a multiple of the head size ", a.head_dim);
    a.kv_heads = kv / a.head_dim;
    DIDMARK_EXPECTS(h.kv_heads <= 0 || h.kv_heads == a.kv_heads, invalid_argument, "architecture (", m.family,
                    "): layer ", L.index, " has ", a.kv_heads, " key/value heads, the hints say ", h.kv_heads);
    DIDMARK_EXPECTS(a.heads % a.kv_heads == 0, invalid_argument, "architecture (", m.family, "): ", a.heads,
                    " query heads do not group evenly over ", a.kv_heads, " key/value heads");
  }
}

}  // namespace

ArchitectureMap recognise_architecture(std::span<const NamedTensor> tensors, const ArchitectureHints& hints) {
  struct Family {
    const char* name;
    std::vector<Rule> rules;
    Activation act;
  };
  std::vector<Family> fams;
  fams.push_back({"bert", bert_rules(), Activation::gelu});
  fams.push_back({"gpt2", gpt2_rules(), Activation::gelu});
  fams.push_back({"llama", llama_rules(), Activation::gated});
  std::optional<Builder> best;
  for (const auto& f : fams) {
    Builder b = try_family(f.name, f.rules, tensors, hints.activation.value_or(f.act));
    bool has_layer = false;
    for (const auto& L : b.map.layers) has_layer = has_layer || L.ffn.size > 0 || L.attention.q_size > 0;
    if (!has_layer || b.map.hidden == 0) continue;
    if (!best || b.matched > best->matched) best = std::move(b);
  }
  DIDMARK_EXPECTS(best.has_value(), invalid_argument,
                  "no known architecture in these tensor names: looked for BERT (encoder.layer.N.attention.self.query."
                  "weight, intermediate.dense, ...), GPT-2 (h.N.attn.c_attn.weight, mlp.c_fc, ...) and Llama "
                  "(layers.N.self_attn.q_proj.weight, mlp.gate_proj, ...); give the map as JSON (--arch)");
  ArchitectureMap m = std::move(best->map);
  if (m.family == "llama")
    for (auto& L : m.layers) L.attention.rope = true;
  apply_heads(m, hints);
  check_architecture_map(m, tensors);
  return m;
}

// ---- JSON -------------------------------------------------------------------------------

namespace {

json refs_json(const std::vector<AxisRef>& v) {
  json a = json::array();
  for (const auto& r : v) {
    json j{{"tensor", r.tensor}, {"axis", r.axis}};
    if (r.offset) j["offset"] = r.offset;
    a.push_back(std::move(j));
  }
  return a;
}

struct Reader {
  std::string source;
  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    DIDMARK_THROW(Errc::invalid_argument, "architecture map '", source, "': ", where, ": ", what);
  }
  const json& need(const json& j, const char* key, const std::string& where) const {
    if (!j.is_object() || !j.contains(key)) fail(where, std::string("missing \"") + key + "\"");
    return j[key];
  }
  int64_t integer(const json& j, const char* key, const std::string& where, int64_t dflt, bool required) const {
    if (!j.contains(key)) {
      if (required) fail(where, std::string("missing \"") + key + "\"");
      return dflt;
    }
    if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0)
      fail(where, std::string("\"") + key + "\" must be a non-negative integer");
    return j[key].get<int64_t>();
  }
  std::vector<AxisRef> refs(const json& j, const char* key, const std::string& where) const {
    std::vector<AxisRef> out;
    if (!j.contains(key)) return out;
    const json& a = j[key];
    if (!a.is_array()) fail(where, std::string("\"") + key + "\" must be an array of {tensor, axis[, offset]}");
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string w = where + "." + key + "[" + std::to_string(i) + "]";
      const json& e = a[i];
      if (!e.is_object() || !e.contains("tensor") || !e["tensor"].is_string()) fail(w, "needs a string \"tensor\"");
      out.push_back({e["tensor"].get<std::string>(), static_cast<int>(integer(e, "axis", w, 0, true)),
                     integer(e, "offset", w, 0, false)});
    }
    return out;
  }
};

}  // namespace

std::string architecture_map_json(const ArchitectureMap& m) {
  json layers = json::array();
  for (const auto& L : m.layers) {
    const auto& a = L.attention;
    const auto& f = L.ffn;
    layers.push_back({{"index", L.index},
                      {"tensors", L.tensors},
                      {"attention",
                       {{"heads", a.heads},
                        {"kv_heads", a.kv_heads},
                        {"head_dim", a.head_dim},
                        {"q_size", a.q_size},
                        {"kv_size", a.kv_size},
                        {"rope", a.rope},
                        {"q", refs_json(a.q)},
                        {"k", refs_json(a.k)},
                        {"v", refs_json(a.v)},
                        {"o", refs_json(a.o)}}},
                      {"ffn",
                       {{"size", f.size},
                        {"activation", std::string(activation_name(f.activation))},
                        {"in", refs_json(f.in)},
                        {"gate", refs_json(f.gate)},
                        {"out", refs_json(f.out)}}}});
  }
  json j{{"family", m.family},
         {"hidden", {{"size", m.hidden}, {"axes", refs_json(m.hidden_axes)}}},
         {"layers", layers},
         {"unmapped", m.unmapped}};
  return j.dump(2);
}

ArchitectureMap parse_architecture_map(std::string_view text, std::string_view source) {
  Reader rd{std::string(source)};
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) rd.fail("top level", "not a JSON object");
  ArchitectureMap m;
  m.family = j.value("family", std::string("custom"));
  const json& h = rd.need(j, "hidden", "top level");
  m.hidden = rd.integer(h, "size", "hidden", 0, true);
  m.hidden_axes = rd.refs(h, "axes", "hidden");
  if (j.contains("layers")) {
    if (!j["layers"].is_array()) rd.fail("top level", "\"layers\" must be an array");
    for (std::size_t i = 0; i < j["layers"].size(); ++i) {
      const json& l = j["layers"][i];
      const std::string w = "layers[" + std::to_string(i) + "]";
      if (!l.is_object()) rd.fail(w, "must be an object");
      LayerMap L;
      L.index = static_cast<int>(rd.integer(l, "index", w, static_cast<int64_t>(i), false));
      if (l.contains("tensors")) {
        if (!l["tensors"].is_array()) rd.fail(w, "\"tensors\" must be an array of names");
        for (const auto& t : l["tensors"]) {
          if (!t.is_string()) rd.fail(w, "\"tensors\" must be an array of names");
          L.tensors.push_back(t.get<std::string>());
        }
      }
      if (l.contains("attention")) {
        const json& a = l["attention"];
        const std::string wa = w + ".attention";
        L.attention.heads = rd.integer(a, "heads", wa, 0, false);
        L.attention.kv_heads = rd.integer(a, "kv_heads", wa, L.attention.heads, false);
        L.attention.head_dim = rd.integer(a, "head_dim", wa, 0, false);
        L.attention.q = rd.refs(a, "q", wa);
        L.attention.k = rd.refs(a, "k", wa);
        L.attention.v = rd.refs(a, "v", wa);
        L.attention.o = rd.refs(a, "o", wa);
        L.attention.rope = a.value("rope", false);
        const int64_t hd = L.attention.head_dim;
        L.attention.q_size = rd.integer(a, "q_size", wa, L.attention.heads * hd, false);
        L.attention.kv_size = rd.integer(a, "kv_size", wa, L.attention.kv_heads * hd, false);
        if (L.attention.heads > 0 && hd == 0 && L.attention.q_size % L.attention.heads == 0)
          L.attention.head_dim = L.attention.q_size / L.attention.heads;
        const auto& at = L.attention;
        if ((!at.q.empty() || !at.o.empty()) && at.q_size == 0)
          rd.fail(wa, "give \"heads\" and \"head_dim\" (or \"q_size\")");
        if (at.heads > 0 && (at.head_dim == 0 || at.kv_heads == 0 || at.heads * at.head_dim != at.q_size ||
                             at.kv_heads * at.head_dim != at.kv_size || at.heads % at.kv_heads != 0))
          rd.fail(wa, "heads, kv_heads, head_dim, q_size and kv_size do not agree");
      }
      if (l.contains("ffn")) {
        const json& f = l["ffn"];
        const std::string wf = w + ".ffn";
        L.ffn.size = rd.integer(f, "size", wf, 0, true);
        const std::string act = f.value("activation", std::string("unknown"));
        const auto pa = parse_activation(act);
        if (!pa) rd.fail(wf, "unknown \"activation\" '" + act + "' (relu, gelu, silu, gated)");
        L.ffn.activation = *pa;
        L.ffn.in = rd.refs(f, "in", wf);
        L.ffn.gate = rd.refs(f, "gate", wf);
        L.ffn.out = rd.refs(f, "out", wf);
      }
      m.layers.push_back(std::move(L));
    }
  }
  if (j.contains("unmapped") && j["unmapped"].is_array())
    for (const auto& t : j["unmapped"])
      if (t.is_string()) m.unmapped.push_back(t.get<std::string>());
  return m;
}

void check_architecture_map(const ArchitectureMap& m, std::span<const NamedTensor> tensors) {
  std::map<std::string, const TensorView*> by;
  for (const auto& t : tensors) by[t.name] = &t.view;
  auto check = [&](const std::vector<AxisRef>& refs, int64_t size, const std::string& what) {
    for (const auto& r : refs) {
      const auto it = by.find(r.tensor);
      DIDMARK_EXPECTS(it != by.end(), invalid_argument, "architecture map (", m.family, "): ", what, " names tensor '",
                      r.tensor, "', which is not in the checkpoint");
      const TensorView& v = *it->second;
      DIDMARK_EXPECTS(r.axis >= 0 && r.axis < v.rank(), invalid_argument, "architecture map (", m.family, "): ", what,
                      ": tensor '", r.tensor, "' has no axis ", r.axis, " (rank ", v.rank(), ")");
      const int64_t have = v.shape[static_cast<std::size_t>(r.axis)];
      DIDMARK_EXPECTS(r.offset >= 0 && r.offset + size <= have, invalid_argument, "architecture map (", m.family,
                      "): ", what, ": tensor '", r.tensor, "' axis ", r.axis, " has ", have, ", needs ", size,
                      r.offset ? " after offset " + std::to_string(r.offset) : std::string());
    }
  };
  check(m.hidden_axes, m.hidden, "hidden");
  for (const auto& L : m.layers) {
    const std::string w = "layer " + std::to_string(L.index);
    check(L.attention.q, L.attention.q_size, w + " attention q");
    check(L.attention.o, L.attention.q_size, w + " attention o");
    check(L.attention.k, L.attention.kv_size, w + " attention k");
    check(L.attention.v, L.attention.kv_size, w + " attention v");
    check(L.ffn.in, L.ffn.size, w + " ffn in");
    check(L.ffn.gate, L.ffn.size, w + " ffn gate");
    check(L.ffn.out, L.ffn.size, w + " ffn out");
    for (const auto& t : L.tensors)
      DIDMARK_EXPECTS(by.count(t), invalid_argument, "architecture map (", m.family, "): ", w, " lists tensor '", t,
                      "', which is not in the checkpoint");
  }
}

}  // namespace didmark
