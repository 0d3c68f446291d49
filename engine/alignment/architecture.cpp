// Dimension maps from tensor names. A rule is a dotted suffix pattern ("{L}" matches a layer
// number) and the dimension of each axis; "@" marks anchored dimensions, "L." per-layer ones.
#include "alignment/architecture.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <string_view>

namespace didmark::alignment {
namespace {

struct Rule {
  const char* arch;
  const char* pattern;
  const char* dim0;
  const char* dim1;  // nullptr for rank-1 tensors
  int out_axis;
  const char* roles = nullptr;  // per axis '+', '-' or '0' when not the default (see ArchTensor)
};

// clang-format off
const Rule kRules[] = {
  // BERT (Hugging Face BertModel and heads), any prefix.
  {"bert", "embeddings.word_embeddings.weight", "@vocab", "hidden", 1},
  {"bert", "embeddings.position_embeddings.weight", "@positions", "hidden", 1},
  {"bert", "embeddings.token_type_embeddings.weight", "@token_types", "hidden", 1},
  {"bert", "embeddings.LayerNorm.weight", "hidden", nullptr, 0},
  {"bert", "embeddings.LayerNorm.bias", "hidden", nullptr, 0},
  {"bert", "layer.{L}.attention.self.query.weight", "L.qk", "hidden", 0},
  {"bert", "layer.{L}.attention.self.query.bias", "L.qk", nullptr, 0},
  {"bert", "layer.{L}.attention.self.key.weight", "L.qk", "hidden", 0, "--"},
  {"bert", "layer.{L}.attention.self.key.bias", "L.qk", nullptr, 0, "-"},
  {"bert", "layer.{L}.attention.self.value.weight", "L.vo", "hidden", 0},
  {"bert", "layer.{L}.attention.self.value.bias", "L.vo", nullptr, 0},
  {"bert", "layer.{L}.attention.output.dense.weight", "hidden", "L.vo", 0},
  {"bert", "layer.{L}.attention.output.dense.bias", "hidden", nullptr, 0},
  {"bert", "layer.{L}.attention.output.LayerNorm.weight", "hidden", nullptr, 0},
  {"bert", "layer.{L}.attention.output.LayerNorm.bias", "hidden", nullptr, 0},
  {"bert", "layer.{L}.intermediate.dense.weight", "L.ffn", "hidden", 0},
  {"bert", "layer.{L}.intermediate.dense.bias", "L.ffn", nullptr, 0},
  {"bert", "layer.{L}.output.dense.weight", "hidden", "L.ffn", 0},
  {"bert", "layer.{L}.output.dense.bias", "hidden", nullptr, 0},
  {"bert", "layer.{L}.output.LayerNorm.weight", "hidden", nullptr, 0},
  {"bert", "layer.{L}.output.LayerNorm.bias", "hidden", nullptr, 0},
  {"bert", "pooler.dense.weight", "pooler", "hidden", 0},
  {"bert", "pooler.dense.bias", "pooler", nullptr, 0},
  {"bert", "cls.predictions.transform.dense.weight", "mlm", "hidden", 0},
  {"bert", "cls.predictions.transform.dense.bias", "mlm", nullptr, 0},
  {"bert", "cls.predictions.transform.LayerNorm.weight", "mlm", nullptr, 0},
  {"bert", "cls.predictions.transform.LayerNorm.bias", "mlm", nullptr, 0},
  {"bert", "cls.predictions.decoder.weight", "@vocab", "mlm", 0},
  {"bert", "classifier.weight", "@classes", "hidden", 0},
  // GPT-2 (Conv1D stores [in, out]).
  {"gpt2", "wte.weight", "@vocab", "hidden", 1},
  {"gpt2", "wpe.weight", "@positions", "hidden", 1},
  {"gpt2", "h.{L}.ln_1.weight", "hidden", nullptr, 0},
  {"gpt2", "h.{L}.ln_1.bias", "hidden", nullptr, 0},
  {"gpt2", "h.{L}.ln_2.weight", "hidden", nullptr, 0},
  {"gpt2", "h.{L}.ln_2.bias", "hidden", nullptr, 0},
  {"gpt2", "ln_f.weight", "hidden", nullptr, 0},
  {"gpt2", "ln_f.bias", "hidden", nullptr, 0},
  {"gpt2", "h.{L}.attn.c_attn.weight", "hidden", "L.qkv", 1},
  {"gpt2", "h.{L}.attn.c_attn.bias", "L.qkv", nullptr, 0},
  {"gpt2", "h.{L}.attn.c_proj.weight", "L.attn", "hidden", 1},
  {"gpt2", "h.{L}.attn.c_proj.bias", "hidden", nullptr, 0},
  {"gpt2", "h.{L}.mlp.c_fc.weight", "hidden", "L.ffn", 1},
  {"gpt2", "h.{L}.mlp.c_fc.bias", "L.ffn", nullptr, 0},
  {"gpt2", "h.{L}.mlp.c_proj.weight", "L.ffn", "hidden", 1},
  {"gpt2", "h.{L}.mlp.c_proj.bias", "hidden", nullptr, 0},
  // Llama / Mistral / Qwen naming.
  {"llama", "embed_tokens.weight", "@vocab", "hidden", 1},
  {"llama", "norm.weight", "hidden", nullptr, 0},
  {"llama", "layers.{L}.input_layernorm.weight", "hidden", nullptr, 0},
  {"llama", "layers.{L}.post_attention_layernorm.weight", "hidden", nullptr, 0},
  {"llama", "layers.{L}.pre_feedforward_layernorm.weight", "hidden", nullptr, 0},
  {"llama", "layers.{L}.post_feedforward_layernorm.weight", "hidden", nullptr, 0},
  {"llama", "layers.{L}.self_attn.q_proj.weight", "L.q", "hidden", 0},
  {"llama", "layers.{L}.self_attn.q_proj.bias", "L.q", nullptr, 0},
  {"llama", "layers.{L}.self_attn.k_proj.weight", "L.k", "hidden", 0, "--"},
  {"llama", "layers.{L}.self_attn.k_proj.bias", "L.k", nullptr, 0, "-"},
  {"llama", "layers.{L}.self_attn.v_proj.weight", "L.v", "hidden", 0},
  {"llama", "layers.{L}.self_attn.v_proj.bias", "L.v", nullptr, 0},
  {"llama", "layers.{L}.self_attn.o_proj.weight", "hidden", "L.o", 0},
  {"llama", "layers.{L}.self_attn.o_proj.bias", "hidden", nullptr, 0},
  {"llama", "layers.{L}.mlp.gate_proj.weight", "L.ffn", "hidden", 0, "0-"},
  {"llama", "layers.{L}.mlp.gate_proj.bias", "L.ffn", nullptr, 0, "0"},
  {"llama", "layers.{L}.mlp.up_proj.weight", "L.ffn", "hidden", 0},
  {"llama", "layers.{L}.mlp.up_proj.bias", "L.ffn", nullptr, 0},
  {"llama", "layers.{L}.mlp.down_proj.weight", "hidden", "L.ffn", 0},
  {"llama", "layers.{L}.mlp.down_proj.bias", "hidden", nullptr, 0},
  // Output heads shared by GPT-2 and Llama naming.
  {"llama", "lm_head.weight", "@vocab", "hidden", 0},
};
// clang-format on

std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t b = 0;
  for (std::size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '.') {
      out.push_back(s.substr(b, i - b));
      b = i + 1;
    }
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() && s.size() < 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

/// The name ends with the pattern's tokens (at a dot boundary); returns the layer or -1
/// (no layer in the pattern), or -2 when it does not match.
int match_rule(const std::vector<std::string_view>& name, std::string_view pattern) {
  const auto pat = split_dots(pattern);
  if (pat.size() > name.size()) return -2;
  const std::size_t off = name.size() - pat.size();
  int layer = -1;
  for (std::size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] == "{L}") {
      if (!all_digits(name[off + i])) return -2;
      layer = std::stoi(std::string(name[off + i]));
    } else if (pat[i] != name[off + i]) {
      return -2;
    }
  }
  return layer;
}

std::string expand(const char* label, int layer) {
  std::string s(label);
  if (s.rfind("L.", 0) == 0) return "layers." + std::to_string(layer) + "." + s.substr(2);
  return s;
}

struct Hit {
  std::string labels[2];
  int rank = 0;
  int out_axis = 0;
  std::array<int8_t, 2> roles{1, -1};
};

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

/// torchvision ResNet naming, any prefix: a stem (conv1, bn1), blocks layerS.B.{convK, bnK,
/// downsample.0, downsample.1} (basic or bottleneck), fc. Convolutions are [out, in, kh, kw];
/// their axis 1 is a dimension of channels. A stage's residual stream is one dimension through
/// every block's last convolution, its downsample and the next blocks' first convolutions; a
/// stage whose first block has no downsample shares the previous stage's stream. A block's
/// inner channels are its own ("layers.N.c1", N counting blocks from the input).
///
/// Every role is 0: a batch norm after each convolution absorbs a per-channel scale or sign
/// of that convolution's rows alone (running statistics and the affine weights follow), so
/// no scale or sign is shared by a dimension's tensors.
void resnet_hits(const std::vector<TensorShape>& tensors, std::vector<Hit>& hits, std::map<std::string, int>& votes) {
  struct Name {
    int stage = -1, block = -1;  // -1: stem or head
    std::string module;          // conv1, bn2, downsample.0, fc, ...
    std::string param;           // weight, bias, running_mean, ...
  };
  std::vector<std::optional<Name>> names(tensors.size());
  std::map<std::pair<int, int>, std::pair<bool, bool>> blocks;  // (stage, block) -> (conv3, downsample)
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const auto tok = split_dots(tensors[t].name);
    const std::size_t n = tok.size();
    if (n < 2) continue;
    Name nm;
    nm.param = std::string(tok[n - 1]);
    std::size_t m = n - 2;  // the module token
    if (m >= 1 && all_digits(tok[m]) && tok[m - 1] == "downsample") {
      nm.module = "downsample." + std::string(tok[m]);
      --m;
    } else {
      nm.module = std::string(tok[m]);
    }
    const bool block = m >= 2 && all_digits(tok[m - 1]) && starts_with(tok[m - 2], "layer") &&
                       all_digits(tok[m - 2].substr(5));
    if (block) {
      nm.stage = std::stoi(std::string(tok[m - 2].substr(5)));
      nm.block = std::stoi(std::string(tok[m - 1]));
      auto& b = blocks[{nm.stage, nm.block}];
      b.first = b.first || nm.module == "conv3";
      b.second = b.second || starts_with(nm.module, "downsample");
    } else if (!(nm.module == "conv1" || nm.module == "bn1" || nm.module == "fc") || (m >= 1 && all_digits(tok[m - 1]))) {
      continue;
    }
    names[t] = nm;
  }
  if (blocks.empty()) return;
  int stages = 0;
  for (const auto& [sb, b] : blocks) stages = std::max(stages, sb.first);
  std::vector<std::string> res(static_cast<std::size_t>(stages) + 1, "res0");
  for (int s = 1; s <= stages; ++s) {
    auto it = blocks.find({s, 0});
    res[static_cast<std::size_t>(s)] = it != blocks.end() && it->second.second ? "res" + std::to_string(s)
                                                                                 : res[static_cast<std::size_t>(s - 1)];
  }
  std::map<std::pair<int, int>, int> index;
  for (const auto& [sb, b] : blocks) index.emplace(sb, static_cast<int>(index.size()));
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    if (!names[t] || hits[t].rank > 0) continue;
    const Name& nm = *names[t];
    const auto& shape = tensors[t].shape;
    std::string rows, cols;
    if (nm.stage < 0) {
      if (nm.module == "fc") {
        rows = "@classes";
        cols = res[static_cast<std::size_t>(stages)];
      } else {
        rows = "res0";
        cols = "@image";
      }
    } else {
      const auto [conv3, down] = blocks[{nm.stage, nm.block}];
      const std::string in = nm.block == 0 ? res[static_cast<std::size_t>(nm.stage - 1)] : res[static_cast<std::size_t>(nm.stage)];
      const std::string out = res[static_cast<std::size_t>(nm.stage)];
      const std::string inner = "layers." + std::to_string(index[{nm.stage, nm.block}]) + ".c";
      const char k = nm.module.size() == 5 || nm.module.size() == 3 ? nm.module.back() : '0';
      if (starts_with(nm.module, "downsample")) {
        rows = out;
        cols = in;
      } else if (k == '1') {
        rows = inner + "1";
        cols = in;
      } else if (k == '2') {
        rows = conv3 ? inner + "2" : out;
        cols = inner + "1";
      } else if (k == '3') {
        rows = out;
        cols = inner + "2";
      } else {
        continue;
      }
    }
    const bool conv = starts_with(nm.module, "conv") || nm.module == "downsample.0" || nm.module == "fc";
    Hit h;
    if (conv && nm.param == "weight" && shape.size() == (nm.module == "fc" ? 2u : 4u)) {
      h.rank = 2;
      h.labels[0] = rows;
      h.labels[1] = cols;
    } else if (shape.size() == 1 && nm.param != "num_batches_tracked") {
      h.rank = 1;
      h.labels[0] = rows;
    } else {
      continue;
    }
    h.roles = {0, 0};
    hits[t] = std::move(h);
    votes["resnet"] += 1;
  }
}

}  // namespace

std::string batch_norm_of(const std::string& conv_weight) {
  const auto tok = split_dots(conv_weight);
  const std::size_t n = tok.size();
  if (n < 2 || tok[n - 1] != "weight") return "";
  const std::string prefix = conv_weight.substr(0, conv_weight.size() - tok[n - 1].size() - tok[n - 2].size() - 1);
  if (starts_with(tok[n - 2], "conv") && tok[n - 2].size() == 5 && all_digits(tok[n - 2].substr(4)))
    return prefix + "bn" + std::string(tok[n - 2].substr(4));
  if (tok[n - 2] == "0" && n >= 3 && tok[n - 3] == "downsample") return prefix + "1";
  return "";
}

int layer_of(const std::string& label) {
  if (label.rfind("layers.", 0) != 0) return -1;
  const auto dot = label.find('.', 7);
  const std::string num = label.substr(7, dot == std::string::npos ? std::string::npos : dot - 7);
  return all_digits(num) ? std::stoi(num) : -1;
}

ArchMap infer_architecture(const std::vector<TensorShape>& tensors) {
  std::vector<Hit> hits(tensors.size());
  std::map<std::string, int> arch_votes;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const auto tokens = split_dots(tensors[t].name);
    for (const Rule& r : kRules) {
      const int layer = match_rule(tokens, r.pattern);
      if (layer == -2) continue;
      const int rank = r.dim1 ? 2 : 1;
      if (static_cast<int>(tensors[t].shape.size()) != rank) break;  // a name we know with a shape we do not
      hits[t].rank = rank;
      hits[t].labels[0] = expand(r.dim0, layer);
      if (r.dim1) hits[t].labels[1] = expand(r.dim1, layer);
      hits[t].out_axis = r.out_axis;
      hits[t].roles = r.out_axis == 0 ? std::array<int8_t, 2>{1, -1} : std::array<int8_t, 2>{-1, 1};
      if (rank == 1) hits[t].roles = {1, 0};
      for (int a = 0; r.roles && a < rank && r.roles[a]; ++a)
        hits[t].roles[static_cast<std::size_t>(a)] = static_cast<int8_t>(r.roles[a] == '+' ? 1 : r.roles[a] == '-' ? -1 : 0);
      arch_votes[r.arch] += 1;
      break;
    }
  }
  resnet_hits(tensors, hits, arch_votes);

  // Sizes per label; a tensor that contradicts an earlier size keeps no dimension.
  std::map<std::string, int64_t> size_of;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    Hit& h = hits[t];
    for (int a = 0; a < h.rank; ++a) {
      const int64_t n = tensors[t].shape[static_cast<std::size_t>(a)];
      auto [it, fresh] = size_of.emplace(h.labels[a], n);
      if (!fresh && it->second != n) h.rank = 0;
    }
  }

  // Tie Llama's per-layer q/k rows and v rows/o columns when sizes agree (multi-head, not
  // grouped-query attention): a head permutation must move them together.
  std::map<std::string, std::string> rename;
  for (const auto& [label, n] : size_of) {
    const auto cut = label.size() >= 2 ? label.substr(label.size() - 2) : "";
    if (cut == ".q" || cut == ".v") {
      const std::string base = label.substr(0, label.size() - 1);
      const std::string other = base + (cut == ".q" ? "k" : "o");
      auto it = size_of.find(other);
      if (it != size_of.end() && it->second == n) {
        const std::string tied = base + (cut == ".q" ? "qk" : "vo");
        rename[label] = tied;
        rename[other] = tied;
      }
    }
  }

  ArchMap m;
  m.name = "generic";
  int best = 0;
  for (const auto& [arch, votes] : arch_votes)
    if (votes > best) {
      best = votes;
      m.name = arch;
    }
  std::map<std::string, int> index;
  m.tensors.resize(tensors.size());
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    const Hit& h = hits[t];
    m.tensors[t].out_axis = h.out_axis;
    m.tensors[t].roles = h.roles;
    for (int a = 0; a < h.rank; ++a) {
      std::string label = h.labels[a];
      if (auto r = rename.find(label); r != rename.end()) label = r->second;
      const bool anchored = !label.empty() && label[0] == '@';
      if (anchored) label = label.substr(1);
      auto [it, fresh] = index.emplace(label, static_cast<int>(m.dims.size()));
      if (fresh) m.dims.push_back({label, tensors[t].shape[static_cast<std::size_t>(a)], anchored});
      m.tensors[t].dims[static_cast<std::size_t>(a)] = it->second;
    }
  }
  return m;
}

}  // namespace didmark::alignment
