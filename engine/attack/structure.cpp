// Structural attacks: permutations, rescaling and dummy neurons that keep the function, and
// renames and truncation that keep the weights.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "alignment/architecture.hpp"
#include "attack/attacks.hpp"
#include "attack/ops.hpp"
#include "didmark/error.hpp"

namespace didmark::attack_detail {
namespace {

OwnedTensor& tensor(TensorSet& m, const std::string& name, const AttackSpec& spec) {
  OwnedTensor* t = m.find(name);
  DIDMARK_EXPECTS(t != nullptr, invalid_argument, spec.text, ": the architecture map names tensor '", name,
                  "', which is not in the checkpoint");
  return *t;
}

void permute_refs(TensorSet& m, const std::vector<AxisRef>& refs, const std::vector<int64_t>& perm,
                  const AttackSpec& spec, std::set<std::string>& changed) {
  for (const auto& r : refs) {
    permute_axis(tensor(m, r.tensor, spec), r.axis, r.offset, perm);
    changed.insert(r.tensor);
  }
}

void scale_refs(TensorSet& m, const std::vector<AxisRef>& refs, const std::vector<double>& f, const AttackSpec& spec,
                std::set<std::string>& changed) {
  for (const auto& r : refs) {
    scale_axis(tensor(m, r.tensor, spec), r.axis, r.offset, f);
    changed.insert(r.tensor);
  }
}

ArchitectureMap& map_of(TensorSet& m, AttackContext& ctx, AttackReport& rep) {
  if (!ctx.map) {
    const auto named = m.named();
    ctx.map = recognise_architecture(named, ctx.hints);
    rep.notes.push_back("architecture recognised: " + ctx.map->family + ", hidden " + std::to_string(ctx.map->hidden) +
                        ", " + std::to_string(ctx.map->layers.size()) + " layers");
    if (!ctx.map->unmapped.empty())
      rep.notes.push_back(std::to_string(ctx.map->unmapped.size()) +
                          " floating tensors are outside the map and stay as they are (first: " +
                          ctx.map->unmapped.front() + ")");
  } else {
    const auto named = m.named();
    check_architecture_map(*ctx.map, named);
  }
  return *ctx.map;
}

bool needs_heads(const ArchitectureMap& a) {
  for (const auto& L : a.layers)
    if (L.attention.q_size > 0 && L.attention.heads == 0) return true;
  return false;
}

void require_heads(const ArchitectureMap& a, const AttackSpec& spec) {
  DIDMARK_EXPECTS(!needs_heads(a), invalid_argument, spec.text,
                  ": the number of attention heads is not in the weights; put the model's config.json beside it, "
                  "pass --heads N (and --kv-heads N for grouped-query attention), or give the map as JSON");
}

void permute_hidden(TensorSet& m, ArchitectureMap& a, std::mt19937_64 rng, const AttackSpec& spec,
                    std::set<std::string>& changed) {
  const auto p = random_permutation(a.hidden, rng);
  permute_refs(m, a.hidden_axes, p, spec, changed);
}

void permute_ffn(TensorSet& m, ArchitectureMap& a, std::mt19937_64 rng, const AttackSpec& spec,
                 std::set<std::string>& changed) {
  for (const auto& L : a.layers) {
    if (L.ffn.size == 0) continue;
    const auto p = random_permutation(L.ffn.size, rng);
    permute_refs(m, L.ffn.in, p, spec, changed);
    permute_refs(m, L.ffn.gate, p, spec, changed);
    permute_refs(m, L.ffn.out, p, spec, changed);
  }
}

// Heads: key/value heads are permuted as groups, and the query heads of a group move with it
// (in any order among themselves), so every query head keeps its key/value head.
void permute_heads(TensorSet& m, ArchitectureMap& a, std::mt19937_64 rng, const AttackSpec& spec,
                   std::set<std::string>& changed) {
  require_heads(a, spec);
  for (const auto& L : a.layers) {
    const auto& at = L.attention;
    if (at.q_size == 0) continue;
    const int64_t hd = at.head_dim, kvh = at.kv_heads, g = at.heads / at.kv_heads;
    const auto pk = random_permutation(kvh, rng);
    std::vector<int64_t> qp(static_cast<std::size_t>(at.q_size)), kp(static_cast<std::size_t>(at.kv_size));
    for (int64_t j = 0; j < kvh; ++j) {
      for (int64_t d = 0; d < hd; ++d) kp[static_cast<std::size_t>(j * hd + d)] = pk[static_cast<std::size_t>(j)] * hd + d;
      const auto pr = random_permutation(g, rng);
      for (int64_t r = 0; r < g; ++r) {
        const int64_t src = pk[static_cast<std::size_t>(j)] * g + pr[static_cast<std::size_t>(r)];
        for (int64_t d = 0; d < hd; ++d) qp[static_cast<std::size_t>((j * g + r) * hd + d)] = src * hd + d;
      }
    }
    permute_refs(m, at.q, qp, spec, changed);
    permute_refs(m, at.o, qp, spec, changed);
    permute_refs(m, at.k, kp, spec, changed);
    permute_refs(m, at.v, kp, spec, changed);
  }
}

/// A factor e^u with u uniform in [-ln r, ln r].
std::vector<double> factors(int64_t n, double r, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(-std::log(r), std::log(r));
  std::vector<double> f(static_cast<std::size_t>(n));
  for (auto& x : f) x = std::exp(u(rng));
  return f;
}

std::vector<double> inverse(const std::vector<double>& f) {
  std::vector<double> g(f.size());
  for (std::size_t i = 0; i < f.size(); ++i) g[i] = 1.0 / f[i];
  return g;
}

AttackReport rescale_mlp(TensorSet& m, const AttackSpec& spec, AttackContext& ctx, AttackReport rep) {
  ArchitectureMap& a = map_of(m, ctx, rep);
  const bool force = !spec.args.empty() && spec.args[0] == "force";
  auto rng = stream(ctx.seed, ctx.applied, "rescale");
  std::set<std::string> changed;
  bool exact = true;
  for (const auto& L : a.layers) {
    if (L.ffn.size == 0) continue;
    const Activation act = L.ffn.activation;
    const bool ok = act == Activation::relu || act == Activation::gated;
    DIDMARK_EXPECTS(ok || force, invalid_argument, spec.text, ": layer ", L.index, "'s MLP uses ",
                    activation_name(act),
                    ", where scaling a neuron's input by a and its output by 1/a does not preserve the function "
                    "(only ReLU-family and gated MLPs allow it); 'rescale:force' does it anyway");
    exact = exact && ok;
    const auto f = factors(L.ffn.size, 2.0, rng);
    scale_refs(m, L.ffn.in, f, spec, changed);
    scale_refs(m, L.ffn.out, inverse(f), spec, changed);
  }
  rep.function_preserving = exact;
  rep.tensors_changed = static_cast<int>(changed.size());
  rep.notes.push_back(exact ? "MLP neurons rescaled by factors in [1/2, 2] (function preserved)"
                            : "MLP neurons rescaled although the activation is not homogeneous (forced)");
  return rep;
}

// Exact for any model: values (v row d times a, o columns of every query head reading it
// times 1/a) and query/key pairs (q dim times b, k dim times 1/b; RoPE pairs share b).
AttackReport rescale_attention(TensorSet& m, const AttackSpec& spec, AttackContext& ctx, AttackReport rep) {
  ArchitectureMap& a = map_of(m, ctx, rep);
  auto rng = stream(ctx.seed, ctx.applied, "rescale-attn");
  std::set<std::string> changed;
  for (const auto& L : a.layers) {
    const auto& at = L.attention;
    if (at.q_size == 0) continue;
    DIDMARK_EXPECTS(at.q_size == at.kv_size || at.heads > 0, invalid_argument, spec.text,
                    ": grouped-query attention needs the number of heads (config.json, --heads)");
    DIDMARK_EXPECTS(!at.rope || at.head_dim > 0, invalid_argument, spec.text,
                    ": rotary attention needs the head size (config.json, --heads)");
    const int64_t hd = at.head_dim > 0 ? at.head_dim : at.q_size;
    const int64_t g = at.heads > 0 ? at.heads / at.kv_heads : 1;
    // Value / output.
    const auto fv = factors(at.kv_size, 2.0, rng);
    std::vector<double> fo(static_cast<std::size_t>(at.q_size));
    for (int64_t e = 0; e < at.q_size; ++e) {
      const int64_t head = e / hd, d = e % hd, kv = head / g;
      fo[static_cast<std::size_t>(e)] = 1.0 / fv[static_cast<std::size_t>(kv * hd + d)];
    }
    scale_refs(m, at.v, fv, spec, changed);
    scale_refs(m, at.o, fo, spec, changed);
    // Query / key.
    auto fk = factors(at.kv_size, 2.0, rng);
    if (at.rope)
      for (int64_t e = 0; e < at.kv_size; ++e)
        if (e % hd >= hd / 2) fk[static_cast<std::size_t>(e)] = fk[static_cast<std::size_t>(e - hd / 2)];
    std::vector<double> fq(static_cast<std::size_t>(at.q_size));
    for (int64_t e = 0; e < at.q_size; ++e) {
      const int64_t head = e / hd, d = e % hd, kv = head / g;
      fq[static_cast<std::size_t>(e)] = fk[static_cast<std::size_t>(kv * hd + d)];
    }
    scale_refs(m, at.q, fq, spec, changed);
    scale_refs(m, at.k, inverse(fk), spec, changed);
  }
  rep.function_preserving = true;
  rep.tensors_changed = static_cast<int>(changed.size());
  rep.notes.push_back("attention value/output and query/key dimensions rescaled by factors in [1/2, 2]");
  return rep;
}

AttackReport dummy(TensorSet& m, const AttackSpec& spec, AttackContext& ctx, AttackReport rep) {
  ArchitectureMap& a = map_of(m, ctx, rep);
  const auto n = static_cast<int64_t>(spec.strength);
  std::set<std::string> changed;
  for (auto& L : a.layers) {
    if (L.ffn.size == 0) continue;
    auto rng = stream(ctx.seed, ctx.applied, "dummy/" + std::to_string(L.index));
    auto grow = [&](const std::vector<AxisRef>& refs, bool zero) {
      for (const auto& r : refs) {
        OwnedTensor& t = tensor(m, r.tensor, spec);
        DIDMARK_EXPECTS(r.offset == 0 && t.shape[static_cast<std::size_t>(r.axis)] == L.ffn.size, invalid_argument,
                        spec.text, ": tensor '", r.tensor, "' holds more than the FFN along axis ", r.axis,
                        " (fused); dummy neurons need a tensor of their own");
        // New input rows look like the old ones (same RMS), so they do not stand out.
        const double s = zero ? 0.0 : rms(t.values());
        std::normal_distribution<double> nd(0.0, s > 0 ? s : 1e-3);
        append_axis(t, r.axis, n, [&](int64_t, int64_t) { return zero ? 0.0 : nd(rng); });
        changed.insert(r.tensor);
      }
    };
    grow(L.ffn.in, false);
    grow(L.ffn.gate, false);
    grow(L.ffn.out, true);
    L.ffn.size += n;
    // Mix the new neurons in among the old ones.
    const auto p = random_permutation(L.ffn.size, rng);
    permute_refs(m, L.ffn.in, p, spec, changed);
    permute_refs(m, L.ffn.gate, p, spec, changed);
    permute_refs(m, L.ffn.out, p, spec, changed);
  }
  rep.function_preserving = true;
  rep.tensors_changed = static_cast<int>(changed.size());
  rep.notes.push_back(std::to_string(n) + " dummy neurons per FFN (zero outgoing weights), shuffled in");
  return rep;
}

AttackReport rename(TensorSet& m, const AttackSpec& spec, AttackContext& ctx, AttackReport rep) {
  const std::string& prefix = spec.args[0];
  std::map<std::string, std::string> to;
  for (auto& t : m.tensors) {
    to[t.name] = prefix + t.name;
    t.name = prefix + t.name;
  }
  for (auto& [t, shard] : m.shard_of) t = prefix + t;
  if (ctx.map) {
    auto fix = [&](std::vector<AxisRef>& v) {
      for (auto& r : v) r.tensor = prefix + r.tensor;
    };
    fix(ctx.map->hidden_axes);
    for (auto& L : ctx.map->layers) {
      for (auto* v : {&L.attention.q, &L.attention.k, &L.attention.v, &L.attention.o, &L.ffn.in, &L.ffn.gate,
                      &L.ffn.out})
        fix(*v);
      for (auto& t : L.tensors) t = prefix + t;
    }
    for (auto& t : ctx.map->unmapped) t = prefix + t;
  }
  rep.function_preserving = true;
  rep.tensors_changed = static_cast<int>(m.tensors.size());
  rep.notes.push_back("every tensor renamed with the prefix '" + prefix + "'");
  return rep;
}

AttackReport truncate(TensorSet& m, const AttackSpec& spec, AttackContext& ctx, AttackReport rep) {
  ArchitectureMap& a = map_of(m, ctx, rep);
  const auto keep = static_cast<int64_t>(spec.strength);
  const auto n = static_cast<int64_t>(a.layers.size());
  DIDMARK_EXPECTS(keep >= 1 && keep < n, invalid_argument, spec.text, ": keeps the first LAYERS of ", n,
                  " layers, so LAYERS must be in [1, ", n - 1, "]");
  std::sort(a.layers.begin(), a.layers.end(), [](const LayerMap& x, const LayerMap& y) { return x.index < y.index; });
  std::set<std::string> drop;
  for (int64_t i = keep; i < n; ++i)
    for (const auto& t : a.layers[static_cast<std::size_t>(i)].tensors) drop.insert(t);
  std::erase_if(m.tensors, [&](const OwnedTensor& t) { return drop.count(t.name) > 0; });
  std::erase_if(m.shard_of, [&](const auto& p) { return drop.count(p.first) > 0; });
  a.layers.resize(static_cast<std::size_t>(keep));
  rep.tensors_changed = static_cast<int>(drop.size());
  rep.notes.push_back("kept " + std::to_string(keep) + " of " + std::to_string(n) + " layers (" +
                      std::to_string(drop.size()) + " tensors dropped)");
  return rep;
}

/// The channel map of a convolutional network, from the table the verifier realigns with
/// (engine/alignment/architecture.cpp), or nullopt when the names are not a known CNN's.
std::optional<alignment::ArchMap> channel_map(const TensorSet& m) {
  std::vector<alignment::TensorShape> shapes;
  for (const auto& t : m.tensors) shapes.push_back({t.name, t.shape});
  alignment::ArchMap a = alignment::infer_architecture(shapes);
  if (a.name != "resnet") return std::nullopt;
  return a;
}

// Convolution channels: per free dimension (a stage's residual stream, a block's inner
// channels) one permutation of the rows of every convolution producing it, the input channels
// of every convolution reading it, and its batch norms' weights, biases and running statistics.
void permute_channels(TensorSet& m, const alignment::ArchMap& a, AttackContext& ctx, AttackReport& rep) {
  std::set<std::string> changed;
  int dims = 0;
  for (std::size_t d = 0; d < a.dims.size(); ++d) {
    if (a.dims[d].anchored) continue;
    auto rng = stream(ctx.seed, ctx.applied, "permute/channels/" + a.dims[d].label);
    const auto p = random_permutation(a.dims[d].size, rng);
    for (std::size_t t = 0; t < a.tensors.size(); ++t)
      for (int ax = 0; ax < 2; ++ax)
        if (a.tensors[t].dims[static_cast<std::size_t>(ax)] == static_cast<int>(d)) {
          permute_axis(m.tensors[t], ax, 0, p);
          changed.insert(m.tensors[t].name);
        }
    ++dims;
  }
  rep.function_preserving = true;
  rep.tensors_changed = static_cast<int>(changed.size());
  rep.notes.push_back("convolution channels permuted: " + std::to_string(dims) + " channel dimensions (" + a.name +
                      " naming) in " + std::to_string(changed.size()) + " tensors");
}

// Folds into batch norms: per output channel of every convolution followed by one, the rows
// times s*a (s = +-1, a in [1/2, 2]), the norm's weight times s, its running mean times s*a and
// its running variance set to a^2 (var + eps) - eps, so that (x - mean) / sqrt(var + eps) is
// the same: exact in eval mode, whatever follows the norm.
AttackReport rescale_channels(TensorSet& m, const AttackSpec& spec, AttackContext& ctx, AttackReport rep) {
  auto rng = stream(ctx.seed, ctx.applied, "rescale-channels");
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  int convs = 0;
  std::set<std::string> changed;
  for (std::size_t c = 0; c < m.tensors.size(); ++c) {
    if (m.tensors[c].shape.size() != 4 || !m.tensors[c].is_floating()) continue;
    const std::string bn = alignment::batch_norm_of(m.tensors[c].name);
    OwnedTensor *w = m.find(bn + ".weight"), *mean = m.find(bn + ".running_mean"), *var = m.find(bn + ".running_var");
    const int64_t n = m.tensors[c].shape[0];
    auto fits = [n](const OwnedTensor* t) { return t && t->shape.size() == 1 && t->shape[0] == n && t->is_floating(); };
    if (bn.empty() || !fits(w) || !fits(mean) || !fits(var)) continue;
    const auto a = factors(n, 2.0, rng);
    std::vector<double> s(static_cast<std::size_t>(n)), sa(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      s[i] = coin(rng) < 0.5 ? -1.0 : 1.0;
      sa[i] = s[i] * a[i];
    }
    scale_axis(m.tensors[c], 0, 0, sa);
    scale_axis(*w, 0, 0, s);
    scale_axis(*mean, 0, 0, sa);
    std::vector<double> v = var->values();
    for (std::size_t i = 0; i < v.size(); ++i)
      v[i] = a[i] * a[i] * (v[i] + alignment::kBatchNormEps) - alignment::kBatchNormEps;
    var->assign(v);
    for (const std::string& name : {m.tensors[c].name, w->name, mean->name, var->name}) changed.insert(name);
    ++convs;
  }
  DIDMARK_EXPECTS(convs > 0, invalid_argument, spec.text,
                  ": no convolution followed by a batch norm in these tensor names (torchvision naming: convK / bnK, "
                  "downsample.0 / downsample.1)");
  rep.function_preserving = true;
  rep.tensors_changed = static_cast<int>(changed.size());
  rep.notes.push_back(std::to_string(convs) +
                      " convolutions: every output channel's rows scaled by a in [1/2, 2] and sign-flipped at random, "
                      "folded into the batch norm (eval mode unchanged)");
  return rep;
}

}  // namespace

AttackReport structural_attack(TensorSet& m, const AttackSpec& spec, AttackContext& ctx) {
  AttackReport rep;
  rep.spec = spec.text;
  if (spec.kind == "rename") return rename(m, spec, ctx, rep);
  if (spec.kind == "rescale") return rescale_mlp(m, spec, ctx, rep);
  if (spec.kind == "rescale-attn") return rescale_attention(m, spec, ctx, rep);
  if (spec.kind == "rescale-channels") return rescale_channels(m, spec, ctx, rep);
  if (spec.kind == "dummy") return dummy(m, spec, ctx, rep);
  if (spec.kind == "truncate") return truncate(m, spec, ctx, rep);
  DIDMARK_ASSERT(spec.kind == "permute");
  const std::string& what = spec.args[0];
  if (what == "channels" || what == "all") {
    const auto cm = channel_map(m);
    DIDMARK_EXPECTS(cm || what == "all", invalid_argument, spec.text,
                    ": no convolution channels known in these tensor names (torchvision ResNet naming: conv1, bn1, "
                    "layerS.B.convK, layerS.B.bnK, layerS.B.downsample.0/1, fc)");
    if (cm) {
      permute_channels(m, *cm, ctx, rep);
      return rep;
    }
  }
  ArchitectureMap& a = map_of(m, ctx, rep);
  std::set<std::string> changed;
  if (what == "all") require_heads(a, spec);
  if (what == "hidden" || what == "all") {
    permute_hidden(m, a, stream(ctx.seed, ctx.applied, "permute/hidden"), spec, changed);
    rep.notes.push_back("hidden dimension (" + std::to_string(a.hidden) + ") permuted in " +
                        std::to_string(a.hidden_axes.size()) + " tensor axes");
  }
  if (what == "ffn" || what == "all") {
    permute_ffn(m, a, stream(ctx.seed, ctx.applied, "permute/ffn"), spec, changed);
    rep.notes.push_back("FFN neurons permuted in every layer");
  }
  if (what == "heads" || what == "all") {
    permute_heads(m, a, stream(ctx.seed, ctx.applied, "permute/heads"), spec, changed);
    rep.notes.push_back("attention heads permuted in every layer");
  }
  rep.function_preserving = true;
  rep.tensors_changed = static_cast<int>(changed.size());
  return rep;
}

}  // namespace didmark::attack_detail

namespace didmark {

std::vector<std::pair<std::string, int64_t>> convolution_channels(std::span<const NamedTensor> tensors) {
  std::vector<alignment::TensorShape> shapes;
  for (const auto& t : tensors) shapes.push_back({t.name, t.view.shape});
  const alignment::ArchMap a = alignment::infer_architecture(shapes);
  std::vector<std::pair<std::string, int64_t>> out;
  if (a.name != "resnet") return out;
  for (const auto& d : a.dims)
    if (!d.anchored) out.emplace_back(d.label, d.size);
  return out;
}

}  // namespace didmark
