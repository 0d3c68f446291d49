#pragma once
// Transformer-shaped test models (BERT and Llama naming), a plain forward pass, and the
// structural attacks of the threat model, each of which the tests prove function-preserving
// by running the forward pass before and after.
//
// Weights are not i.i.d.: rows and columns get log-normal scales (as trained matrices have),
// norm weights and biases are spread around their usual values, so that descriptors and
// signatures see what they see in real checkpoints.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "didmark/detail/half.hpp"
#include "didmark/watermark.hpp"
#include "test_util.hpp"

namespace didmark::test::tf {

enum class Arch { bert, llama };
enum class Act { gelu, relu, tanh, swiglu };

struct Config {
  Arch arch = Arch::bert;
  Act act = Act::gelu;
  int64_t vocab = 512, hidden = 64, heads = 4, ffn = 256, layers = 2, positions = 32;
  bool lm_head = false;  // Llama: an output projection to the vocabulary
  uint64_t seed = 1;
};

/// A model: named f32 tensors in checkpoint order.
struct Model {
  Config cfg;
  std::vector<Buffer> tensors;
  std::string prefix;  // prepended to every name (renaming attack)

  Buffer& at(const std::string& name) {
    for (auto& b : tensors)
      if (b.name == prefix + name) return b;
    throw std::runtime_error("no tensor " + prefix + name);
  }
  const Buffer& at(const std::string& name) const { return const_cast<Model*>(this)->at(name); }
  bool has(const std::string& name) const {
    for (const auto& b : tensors)
      if (b.name == prefix + name) return true;
    return false;
  }
  std::vector<NamedTensor> named() const { return test::named(tensors); }
  int64_t params() const {
    int64_t n = 0;
    for (const auto& b : tensors) n += b.numel();
    return n;
  }
};

inline float* f32(Buffer& b) { return static_cast<float*>(b.view.data); }
inline const float* f32(const Buffer& b) { return static_cast<const float*>(b.view.data); }

/// Fast deterministic Gaussians (splitmix64 + Box-Muller): models of 20M+ parameters in well
/// under a second.
class Gauss {
 public:
  explicit Gauss(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  double next() {
    if (have_) {
      have_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(bits() >> 11) + 0.5) * 0x1p-53, u2 = static_cast<double>(bits() >> 11) * 0x1p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2 * M_PI * u2);
    have_ = true;
    return r * std::cos(2 * M_PI * u2);
  }
  uint64_t bits() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(bits() >> 11) * 0x1p-53; }

 private:
  uint64_t s_;
  double spare_ = 0;
  bool have_ = false;
};

/// rows x cols with row and column scales exp(0.3 N) times sigma N(0, 1).
inline Buffer matrix(const std::string& name, int64_t rows, int64_t cols, double sigma, Gauss& g) {
  Buffer b(name, DType::f32, {rows, cols});
  std::vector<double> rs(static_cast<std::size_t>(rows)), cs(static_cast<std::size_t>(cols));
  for (auto& r : rs) r = std::exp(0.3 * g.next());
  for (auto& c : cs) c = std::exp(0.3 * g.next());
  float* p = f32(b);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      p[i * cols + j] = static_cast<float>(sigma * rs[static_cast<std::size_t>(i)] * cs[static_cast<std::size_t>(j)] * g.next());
  return b;
}

inline Buffer vec(const std::string& name, int64_t n, double mean, double sigma, Gauss& g) {
  Buffer b(name, DType::f32, {n});
  for (int64_t i = 0; i < n; ++i) f32(b)[i] = static_cast<float>(mean + sigma * g.next());
  return b;
}

inline Model make_model(const Config& c) {
  Model m;
  m.cfg = c;
  Gauss g(c.seed);
  const int64_t H = c.hidden, F = c.ffn, V = c.vocab;
  auto& T = m.tensors;
  if (c.arch == Arch::bert) {
    T.push_back(matrix("embeddings.word_embeddings.weight", V, H, 0.05, g));
    T.push_back(matrix("embeddings.position_embeddings.weight", c.positions, H, 0.02, g));
    T.push_back(matrix("embeddings.token_type_embeddings.weight", 2, H, 0.02, g));
    T.push_back(vec("embeddings.LayerNorm.weight", H, 1.0, 0.1, g));
    T.push_back(vec("embeddings.LayerNorm.bias", H, 0.0, 0.05, g));
    for (int64_t l = 0; l < c.layers; ++l) {
      const std::string p = "encoder.layer." + std::to_string(l) + ".";
      const double s = 1.0 / std::sqrt(static_cast<double>(H));
      for (const char* n : {"query", "key", "value"}) {
        T.push_back(matrix(p + "attention.self." + n + ".weight", H, H, s, g));
        T.push_back(vec(p + "attention.self." + n + ".bias", H, 0.0, 0.05, g));
      }
      T.push_back(matrix(p + "attention.output.dense.weight", H, H, s, g));
      T.push_back(vec(p + "attention.output.dense.bias", H, 0.0, 0.05, g));
      T.push_back(vec(p + "attention.output.LayerNorm.weight", H, 1.0, 0.1, g));
      T.push_back(vec(p + "attention.output.LayerNorm.bias", H, 0.0, 0.05, g));
      T.push_back(matrix(p + "intermediate.dense.weight", F, H, s, g));
      T.push_back(vec(p + "intermediate.dense.bias", F, 0.0, 0.05, g));
      T.push_back(matrix(p + "output.dense.weight", H, F, 1.0 / std::sqrt(static_cast<double>(F)), g));
      T.push_back(vec(p + "output.dense.bias", H, 0.0, 0.05, g));
      T.push_back(vec(p + "output.LayerNorm.weight", H, 1.0, 0.1, g));
      T.push_back(vec(p + "output.LayerNorm.bias", H, 0.0, 0.05, g));
    }
  } else {
    T.push_back(matrix("model.embed_tokens.weight", V, H, 0.05, g));
    for (int64_t l = 0; l < c.layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      const double s = 1.0 / std::sqrt(static_cast<double>(H));
      T.push_back(vec(p + "input_layernorm.weight", H, 1.0, 0.1, g));
      for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) T.push_back(matrix(p + "self_attn." + n + ".weight", H, H, s, g));
      T.push_back(vec(p + "post_attention_layernorm.weight", H, 1.0, 0.1, g));
      T.push_back(matrix(p + "mlp.gate_proj.weight", F, H, s, g));
      T.push_back(matrix(p + "mlp.up_proj.weight", F, H, s, g));
      T.push_back(matrix(p + "mlp.down_proj.weight", H, F, 1.0 / std::sqrt(static_cast<double>(F)), g));
    }
    T.push_back(vec("model.norm.weight", H, 1.0, 0.1, g));
    if (c.lm_head) T.push_back(matrix("lm_head.weight", V, H, 0.05, g));
  }
  return m;
}

/// BERT-style (GELU) or Llama-style (SwiGLU) model of about `params` parameters.
inline Config big_config(Arch arch, uint64_t seed) {
  Config c;
  c.arch = arch;
  c.act = arch == Arch::bert ? Act::gelu : Act::swiglu;
  c.vocab = 8192;
  c.hidden = 512;
  c.heads = 8;
  c.ffn = arch == Arch::bert ? 2048 : 1408;
  c.layers = 6;
  c.positions = 128;
  c.lm_head = arch == Arch::llama;
  c.seed = seed;
  return c;
}

// ---- forward pass ---------------------------------------------------------------------------

using Mat = std::vector<double>;  // row-major, T x n

/// y = x W^T (+ b): x T x in, W out x in.
inline Mat linear(const Mat& x, int64_t T, const Buffer& W, const Buffer* b) {
  const int64_t out = W.view.shape[0], in = W.view.shape[1];
  Mat y(static_cast<std::size_t>(T * out), 0.0);
  const float* w = f32(W);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? static_cast<double>(f32(*b)[o]) : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[static_cast<std::size_t>(t * in + i)] * static_cast<double>(w[o * in + i]);
      y[static_cast<std::size_t>(t * out + o)] = s;
    }
  return y;
}

inline void layer_norm(Mat& x, int64_t T, const Buffer& g, const Buffer& b) {
  const int64_t H = g.view.shape[0];
  for (int64_t t = 0; t < T; ++t) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < H; ++i) mu += x[static_cast<std::size_t>(t * H + i)];
    mu /= static_cast<double>(H);
    for (int64_t i = 0; i < H; ++i) var += std::pow(x[static_cast<std::size_t>(t * H + i)] - mu, 2);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(H) + 1e-12);
    for (int64_t i = 0; i < H; ++i) {
      double& v = x[static_cast<std::size_t>(t * H + i)];
      v = (v - mu) * inv * static_cast<double>(f32(g)[i]) + static_cast<double>(f32(b)[i]);
    }
  }
}

inline void rms_norm(Mat& x, int64_t T, const Buffer& g) {
  const int64_t H = g.view.shape[0];
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += std::pow(x[static_cast<std::size_t>(t * H + i)], 2);
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(H) + 1e-12);
    for (int64_t i = 0; i < H; ++i) x[static_cast<std::size_t>(t * H + i)] *= inv * static_cast<double>(f32(g)[i]);
  }
}

inline double activate(double v, Act a) {
  switch (a) {
    case Act::relu: return v > 0 ? v : 0;
    case Act::tanh: return std::tanh(v);
    case Act::gelu: return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    case Act::swiglu: return v / (1 + std::exp(-v));  // SiLU of the gate
  }
  return v;
}

/// Multi-head attention (no mask, no rotary embedding).
inline Mat attention(const Mat& q, const Mat& k, const Mat& v, int64_t T, int64_t heads, int64_t dqk, int64_t dv) {
  Mat ctx(static_cast<std::size_t>(T * heads * dv), 0.0);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> s(static_cast<std::size_t>(T));
      double mx = -1e300;
      for (int64_t u = 0; u < T; ++u) {
        double d = 0;
        for (int64_t e = 0; e < dqk; ++e)
          d += q[static_cast<std::size_t>(t * heads * dqk + h * dqk + e)] * k[static_cast<std::size_t>(u * heads * dqk + h * dqk + e)];
        s[static_cast<std::size_t>(u)] = d / std::sqrt(static_cast<double>(dqk));
        mx = std::max(mx, s[static_cast<std::size_t>(u)]);
      }
      double z = 0;
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (int64_t u = 0; u < T; ++u)
        for (int64_t e = 0; e < dv; ++e)
          ctx[static_cast<std::size_t>(t * heads * dv + h * dv + e)] +=
              s[static_cast<std::size_t>(u)] / z * v[static_cast<std::size_t>(u * heads * dv + h * dv + e)];
    }
  return ctx;
}

/// The model's output for `tokens`: final hidden states (T x H) for BERT and for Llama
/// without an LM head, logits (T x V) with one.
inline Mat forward(const Model& m, const std::vector<int64_t>& tokens) {
  const Config& c = m.cfg;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const bool bert = c.arch == Arch::bert;
  const Buffer& E = m.at(bert ? "embeddings.word_embeddings.weight" : "model.embed_tokens.weight");
  const int64_t H = E.view.shape[1];
  Mat x(static_cast<std::size_t>(T * H));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H; ++i) {
      double v = static_cast<double>(f32(E)[tokens[static_cast<std::size_t>(t)] * H + i]);
      if (bert)
        v += static_cast<double>(f32(m.at("embeddings.position_embeddings.weight"))[t * H + i]) +
             static_cast<double>(f32(m.at("embeddings.token_type_embeddings.weight"))[i]);
      x[static_cast<std::size_t>(t * H + i)] = v;
    }
  if (bert) layer_norm(x, T, m.at("embeddings.LayerNorm.weight"), m.at("embeddings.LayerNorm.bias"));
  for (int64_t l = 0; l < c.layers; ++l) {
    if (bert) {
      const std::string p = "encoder.layer." + std::to_string(l) + ".";
      auto lin = [&](const Mat& in, const std::string& n) { return linear(in, T, m.at(p + n + ".weight"), &m.at(p + n + ".bias")); };
      const Mat q = lin(x, "attention.self.query"), k = lin(x, "attention.self.key"), v = lin(x, "attention.self.value");
      const int64_t dqk = m.at(p + "attention.self.query.weight").view.shape[0] / c.heads;
      const int64_t dv = m.at(p + "attention.self.value.weight").view.shape[0] / c.heads;
      const Mat o = lin(attention(q, k, v, T, c.heads, dqk, dv), "attention.output.dense");
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      layer_norm(x, T, m.at(p + "attention.output.LayerNorm.weight"), m.at(p + "attention.output.LayerNorm.bias"));
      Mat h = lin(x, "intermediate.dense");
      for (auto& v2 : h) v2 = activate(v2, c.act);
      const Mat f = lin(h, "output.dense");
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += f[i];
      layer_norm(x, T, m.at(p + "output.LayerNorm.weight"), m.at(p + "output.LayerNorm.bias"));
    } else {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      Mat h = x;
      rms_norm(h, T, m.at(p + "input_layernorm.weight"));
      const Mat q = linear(h, T, m.at(p + "self_attn.q_proj.weight"), nullptr);
      const Mat k = linear(h, T, m.at(p + "self_attn.k_proj.weight"), nullptr);
      const Mat v = linear(h, T, m.at(p + "self_attn.v_proj.weight"), nullptr);
      const int64_t dqk = m.at(p + "self_attn.q_proj.weight").view.shape[0] / c.heads;
      const int64_t dv = m.at(p + "self_attn.v_proj.weight").view.shape[0] / c.heads;
      const Mat o = linear(attention(q, k, v, T, c.heads, dqk, dv), T, m.at(p + "self_attn.o_proj.weight"), nullptr);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];
      h = x;
      rms_norm(h, T, m.at(p + "post_attention_layernorm.weight"));
      Mat gt = linear(h, T, m.at(p + "mlp.gate_proj.weight"), nullptr);
      const Mat up = linear(h, T, m.at(p + "mlp.up_proj.weight"), nullptr);
      for (std::size_t i = 0; i < gt.size(); ++i) gt[i] = activate(gt[i], Act::swiglu) * up[i];
      const Mat f = linear(gt, T, m.at(p + "mlp.down_proj.weight"), nullptr);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += f[i];
    }
  }
  if (!bert) {
    rms_norm(x, T, m.at("model.norm.weight"));
    if (c.lm_head) return linear(x, T, m.at("lm_head.weight"), nullptr);
  }
  return x;
}

// ---- structural attacks ---------------------------------------------------------------------

inline std::vector<int64_t> random_perm(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

/// New rows: out row i = old row perm[i] times mul[i] (mul empty: 1). `extra` appended rows.
inline void permute_rows(Buffer& b, const std::vector<int64_t>& perm, const std::vector<double>& mul = {}) {
  const int64_t R = b.view.shape[0], C = b.view.rank() == 1 ? 1 : b.view.shape[1];
  Buffer out(b.name, DType::f32, b.view.shape);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j)
      f32(out)[i * C + j] = static_cast<float>(static_cast<double>(f32(b)[perm[static_cast<std::size_t>(i)] * C + j]) *
                                               (mul.empty() ? 1.0 : mul[static_cast<std::size_t>(i)]));
  b = out;
}

inline void permute_cols(Buffer& b, const std::vector<int64_t>& perm, const std::vector<double>& mul = {}) {
  const int64_t R = b.view.shape[0], C = b.view.shape[1];
  Buffer out(b.name, DType::f32, b.view.shape);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j)
      f32(out)[i * C + j] = static_cast<float>(static_cast<double>(f32(b)[i * C + perm[static_cast<std::size_t>(j)]]) *
                                               (mul.empty() ? 1.0 : mul[static_cast<std::size_t>(j)]));
  b = out;
}

/// Apply `perm` to every tensor axis that lies in the hidden dimension. The output of the
/// model is permuted the same way (BERT, Llama without LM head) or unchanged (LM head).
inline void permute_hidden(Model& m, const std::vector<int64_t>& perm) {
  const int64_t H = static_cast<int64_t>(perm.size());
  for (auto& b : m.tensors) {
    const std::string n = b.name.substr(m.prefix.size());
    const auto& s = b.view.shape;
    const bool out_hidden = n.find("attention.output.dense") != std::string::npos ||
                            n.find("output.dense") != std::string::npos || n.find("o_proj") != std::string::npos ||
                            n.find("down_proj") != std::string::npos;
    if (s.size() == 1) {
      if (s[0] == H && (n.find("LayerNorm") != std::string::npos || n.find("norm") != std::string::npos ||
                        (out_hidden && n.find("intermediate") == std::string::npos)))
        permute_rows(b, perm);
    } else if (out_hidden && n.find("intermediate") == std::string::npos) {
      permute_rows(b, perm);
    } else {
      permute_cols(b, perm);  // embeddings, q/k/v, up/gate, intermediate, lm_head: hidden is the input
    }
  }
}

inline std::string layer_prefix(const Model& m, int64_t l) {
  return m.cfg.arch == Arch::bert ? "encoder.layer." + std::to_string(l) + "." : "model.layers." + std::to_string(l) + ".";
}

/// FFN neurons of layer l: new neuron i = old neuron perm[i], its producing slices times
/// scale[i] and its consuming slice divided by it (ReLU-family rescaling; a negative scale is
/// a sign flip, function-preserving for odd activations and for Llama's linear up branch).
inline void transform_ffn(Model& m, int64_t l, const std::vector<int64_t>& perm, const std::vector<double>& scale = {}) {
  const std::string p = layer_prefix(m, l);
  std::vector<double> inv;
  for (double s : scale) inv.push_back(1.0 / s);
  if (m.cfg.arch == Arch::bert) {
    permute_rows(m.at(p + "intermediate.dense.weight"), perm, scale);
    permute_rows(m.at(p + "intermediate.dense.bias"), perm, scale);
    permute_cols(m.at(p + "output.dense.weight"), perm, inv);
  } else {
    permute_rows(m.at(p + "mlp.gate_proj.weight"), perm);
    permute_rows(m.at(p + "mlp.up_proj.weight"), perm, scale);
    permute_cols(m.at(p + "mlp.down_proj.weight"), perm, inv);
  }
}

/// Attention of layer l: heads permuted by head_perm, and inside each head the query/key
/// coordinates by qk_perm and the value/output coordinates by vo_perm (both head-local);
/// query rows times a, key rows divided by a (scores unchanged) when `qk_scale`.
inline void transform_heads(Model& m, int64_t l, const std::vector<int64_t>& head_perm,
                            const std::vector<int64_t>& qk_perm, const std::vector<int64_t>& vo_perm,
                            const std::vector<double>& qk_scale = {}) {
  const std::string p = layer_prefix(m, l);
  const int64_t heads = m.cfg.heads;
  const int64_t dqk = static_cast<int64_t>(qk_perm.size()), dv = static_cast<int64_t>(vo_perm.size());
  std::vector<int64_t> qk(static_cast<std::size_t>(heads * dqk)), vo(static_cast<std::size_t>(heads * dv));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t e = 0; e < dqk; ++e)
      qk[static_cast<std::size_t>(h * dqk + e)] = head_perm[static_cast<std::size_t>(h)] * dqk + qk_perm[static_cast<std::size_t>(e)];
    for (int64_t e = 0; e < dv; ++e)
      vo[static_cast<std::size_t>(h * dv + e)] = head_perm[static_cast<std::size_t>(h)] * dv + vo_perm[static_cast<std::size_t>(e)];
  }
  std::vector<double> inv;
  for (double s : qk_scale) inv.push_back(1.0 / s);
  if (m.cfg.arch == Arch::bert) {
    const std::string a = p + "attention.self.";
    permute_rows(m.at(a + "query.weight"), qk, qk_scale);
    permute_rows(m.at(a + "query.bias"), qk, qk_scale);
    permute_rows(m.at(a + "key.weight"), qk, inv);
    permute_rows(m.at(a + "key.bias"), qk, inv);
    permute_rows(m.at(a + "value.weight"), vo);
    permute_rows(m.at(a + "value.bias"), vo);
    permute_cols(m.at(p + "attention.output.dense.weight"), vo);
  } else {
    const std::string a = p + "self_attn.";
    permute_rows(m.at(a + "q_proj.weight"), qk, qk_scale);
    permute_rows(m.at(a + "k_proj.weight"), qk, inv);
    permute_rows(m.at(a + "v_proj.weight"), vo);
    permute_cols(m.at(a + "o_proj.weight"), vo);
  }
}

/// Add `k` FFN neurons to layer l with random input weights and zero output weights (Yan et
/// al.'s dummy neurons), at random positions.
inline void add_dummy_neurons(Model& m, int64_t l, int64_t k, uint64_t seed) {
  const std::string p = layer_prefix(m, l);
  Gauss g(seed);
  auto grow_rows = [&](Buffer& b, double sigma) {
    const int64_t R = b.view.shape[0], C = b.view.rank() == 1 ? 1 : b.view.shape[1];
    auto shape = b.view.shape;
    shape[0] = R + k;
    Buffer out(b.name, DType::f32, shape);
    std::copy(f32(b), f32(b) + R * C, f32(out));
    for (int64_t i = R * C; i < (R + k) * C; ++i) f32(out)[i] = static_cast<float>(sigma * g.next());
    b = out;
  };
  auto grow_cols = [&](Buffer& b) {
    const int64_t R = b.view.shape[0], C = b.view.shape[1];
    Buffer out(b.name, DType::f32, {R, C + k});
    for (int64_t i = 0; i < R; ++i) std::copy(f32(b) + i * C, f32(b) + (i + 1) * C, f32(out) + i * (C + k));
    b = out;
  };
  const int64_t F = m.cfg.arch == Arch::bert ? m.at(p + "intermediate.dense.weight").view.shape[0]
                                             : m.at(p + "mlp.up_proj.weight").view.shape[0];
  const double s = 1.0 / std::sqrt(static_cast<double>(m.cfg.hidden));
  if (m.cfg.arch == Arch::bert) {
    grow_rows(m.at(p + "intermediate.dense.weight"), s);
    grow_rows(m.at(p + "intermediate.dense.bias"), 0.05);
    grow_cols(m.at(p + "output.dense.weight"));
  } else {
    grow_rows(m.at(p + "mlp.gate_proj.weight"), s);
    grow_rows(m.at(p + "mlp.up_proj.weight"), s);
    grow_cols(m.at(p + "mlp.down_proj.weight"));
  }
  transform_ffn(m, l, random_perm(F + k, seed + 1));  // hide them among the others
}

/// Remove FFN neurons of layer l (lossy: a pruning of whole neurons).
inline void remove_neurons(Model& m, int64_t l, const std::vector<int64_t>& drop) {
  const std::string p = layer_prefix(m, l);
  auto keep_rows = [&](Buffer& b) {
    const int64_t R = b.view.shape[0], C = b.view.rank() == 1 ? 1 : b.view.shape[1];
    std::vector<int64_t> keep;
    for (int64_t i = 0; i < R; ++i)
      if (std::find(drop.begin(), drop.end(), i) == drop.end()) keep.push_back(i);
    auto shape = b.view.shape;
    shape[0] = static_cast<int64_t>(keep.size());
    Buffer out(b.name, DType::f32, shape);
    for (std::size_t i = 0; i < keep.size(); ++i) std::copy(f32(b) + keep[i] * C, f32(b) + (keep[i] + 1) * C, f32(out) + static_cast<int64_t>(i) * C);
    b = out;
  };
  auto keep_cols = [&](Buffer& b) {
    const int64_t R = b.view.shape[0], C = b.view.shape[1];
    std::vector<int64_t> keep;
    for (int64_t j = 0; j < C; ++j)
      if (std::find(drop.begin(), drop.end(), j) == drop.end()) keep.push_back(j);
    const auto K = static_cast<int64_t>(keep.size());
    Buffer out(b.name, DType::f32, {R, K});
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < K; ++j) f32(out)[i * K + j] = f32(b)[i * C + keep[static_cast<std::size_t>(j)]];
    b = out;
  };
  if (m.cfg.arch == Arch::bert) {
    keep_rows(m.at(p + "intermediate.dense.weight"));
    keep_rows(m.at(p + "intermediate.dense.bias"));
    keep_cols(m.at(p + "output.dense.weight"));
  } else {
    keep_rows(m.at(p + "mlp.gate_proj.weight"));
    keep_rows(m.at(p + "mlp.up_proj.weight"));
    keep_cols(m.at(p + "mlp.down_proj.weight"));
  }
}

inline void rename(Model& m, const std::string& prefix) {
  for (auto& b : m.tensors) b.name = prefix + b.name.substr(m.prefix.size());
  m.prefix = prefix;
}

/// Store every 2-D tensor transposed (as GPT-2's Conv1D does).
inline void transpose_all(Model& m) {
  for (auto& b : m.tensors) {
    if (b.view.rank() != 2) continue;
    const int64_t R = b.view.shape[0], C = b.view.shape[1];
    Buffer out(b.name, DType::f32, {C, R});
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < C; ++j) f32(out)[j * R + i] = f32(b)[i * C + j];
    b = out;
  }
}

// ---- noise-like attacks ---------------------------------------------------------------------

/// Symmetric per-tensor int8 round trip of every 2-D tensor.
inline void quantize_int8(Model& m) {
  for (auto& b : m.tensors) {
    if (b.view.rank() < 2) continue;
    float mx = 0;
    for (int64_t i = 0; i < b.numel(); ++i) mx = std::max(mx, std::fabs(f32(b)[i]));
    const float step = mx / 127.0f;
    if (step > 0)
      for (int64_t i = 0; i < b.numel(); ++i) f32(b)[i] = std::round(f32(b)[i] / step) * step;
  }
}

/// Zero the `frac` smallest-magnitude elements of every 2-D tensor.
inline void prune(Model& m, double frac) {
  for (auto& b : m.tensors) {
    if (b.view.rank() < 2) continue;
    std::vector<float> mag(static_cast<std::size_t>(b.numel()));
    for (int64_t i = 0; i < b.numel(); ++i) mag[static_cast<std::size_t>(i)] = std::fabs(f32(b)[i]);
    const auto k = static_cast<std::size_t>(frac * static_cast<double>(mag.size()));
    if (k == 0) continue;
    std::nth_element(mag.begin(), mag.begin() + static_cast<std::ptrdiff_t>(k), mag.end());
    const float cut = mag[k];
    for (int64_t i = 0; i < b.numel(); ++i)
      if (std::fabs(f32(b)[i]) < cut) f32(b)[i] = 0.0f;
  }
}

/// Every tensor cast to `t` (a new model whose buffers hold that dtype).
inline Model cast(const Model& m, DType t) {
  Model out = m;
  for (auto& b : out.tensors) {
    Buffer c(b.name, t, b.view.shape);
    for (int64_t i = 0; i < b.numel(); ++i) set(c.view, i, static_cast<double>(f32(b)[i]));
    b = c;
  }
  return out;
}

/// Largest |a - b| relative to max |a|.
inline double max_rel_diff(const Mat& a, const Mat& b) {
  double mx = 0, d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    mx = std::max(mx, std::fabs(a[i]));
    d = std::max(d, std::fabs(a[i] - b[i]));
  }
  return d / std::max(mx, 1e-300);
}

/// Columns of a T x H output permuted back: out[:, i] = y[:, inv(perm)[i]].
inline Mat unpermute_cols(const Mat& y, int64_t T, const std::vector<int64_t>& perm) {
  const int64_t H = static_cast<int64_t>(perm.size());
  Mat out(y.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H; ++i)
      out[static_cast<std::size_t>(t * H + perm[static_cast<std::size_t>(i)])] = y[static_cast<std::size_t>(t * H + i)];
  return out;
}

}  // namespace didmark::test::tf
