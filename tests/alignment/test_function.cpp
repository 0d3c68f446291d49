// The structural attacks of the threat model leave what the model computes unchanged: a
// forward pass before and after, on small BERT-style (GELU, ReLU, tanh) and Llama-style
// (SwiGLU, with and without an LM head) models.
#include <gtest/gtest.h>

#include "models.hpp"

using namespace didmark;
using namespace didmark::test;

namespace {

tf::Config small(tf::Arch arch, tf::Act act, bool lm_head = false) {
  tf::Config c;
  c.arch = arch;
  c.act = act;
  c.vocab = 97;
  c.hidden = 32;
  c.heads = 4;
  c.ffn = 48;
  c.layers = 2;
  c.positions = 16;
  c.lm_head = lm_head;
  c.seed = 3;
  return c;
}

const std::vector<int64_t> kTokens = {5, 17, 3, 96, 42, 0, 11};

struct Case {
  tf::Config cfg;
  const char* what;
};

std::vector<Case> cases() {
  return {{small(tf::Arch::bert, tf::Act::gelu), "bert-gelu"},
          {small(tf::Arch::bert, tf::Act::relu), "bert-relu"},
          {small(tf::Arch::bert, tf::Act::tanh), "bert-tanh"},
          {small(tf::Arch::llama, tf::Act::swiglu), "llama"},
          {small(tf::Arch::llama, tf::Act::swiglu, true), "llama-lm-head"}};
}

/// Output of `m` compared with the base output, after undoing a hidden permutation of the
/// output where the output lives in the hidden dimension.
double diff(const tf::Model& base, const tf::Model& m, const std::vector<int64_t>* hidden_perm) {
  const auto y0 = tf::forward(base, kTokens);
  auto y1 = tf::forward(m, kTokens);
  const bool output_in_hidden = !(m.cfg.arch == tf::Arch::llama && m.cfg.lm_head);
  if (hidden_perm && output_in_hidden) y1 = tf::unpermute_cols(y1, static_cast<int64_t>(kTokens.size()), *hidden_perm);
  return tf::max_rel_diff(y0, y1);
}

}  // namespace

TEST(Function, PermutationsOfEveryDimension) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.what);
    const tf::Model base = tf::make_model(c.cfg);
    const int64_t dh = c.cfg.hidden / c.cfg.heads;
    {
      tf::Model m = base;
      const auto perm = tf::random_perm(c.cfg.hidden, 1);
      tf::permute_hidden(m, perm);
      EXPECT_LT(diff(base, m, &perm), 1e-5) << "hidden";
      // A wrong inverse shows the check has teeth.
      const auto other = tf::random_perm(c.cfg.hidden, 2);
      if (!(c.cfg.arch == tf::Arch::llama && c.cfg.lm_head)) {
        EXPECT_GT(diff(base, m, &other), 0.1);
      }
    }
    {
      tf::Model m = base;
      for (int64_t l = 0; l < c.cfg.layers; ++l) tf::transform_ffn(m, l, tf::random_perm(c.cfg.ffn, 10 + static_cast<uint64_t>(l)));
      EXPECT_LT(diff(base, m, nullptr), 1e-5) << "ffn";
    }
    {
      tf::Model m = base;
      for (int64_t l = 0; l < c.cfg.layers; ++l)
        tf::transform_heads(m, l, tf::random_perm(c.cfg.heads, 20), tf::random_perm(dh, 21), tf::random_perm(dh, 22));
      EXPECT_LT(diff(base, m, nullptr), 1e-5) << "heads";
    }
    {
      tf::Model m = base;
      tf::permute_hidden(m, tf::random_perm(c.cfg.hidden, 1));
      // Not a transform: permuting one FFN weight alone breaks the model.
      tf::permute_rows(m.at(tf::layer_prefix(m, 0) + (c.cfg.arch == tf::Arch::bert ? "intermediate.dense.weight" : "mlp.up_proj.weight")),
                       tf::random_perm(c.cfg.ffn, 3));
      const auto perm = tf::random_perm(c.cfg.hidden, 1);
      EXPECT_GT(diff(base, m, &perm), 1e-3) << "a broken transform is caught";
    }
  }
}

TEST(Function, RescalingSignFlipsAndDummies) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.what);
    const tf::Model base = tf::make_model(c.cfg);
    const int64_t dh = c.cfg.hidden / c.cfg.heads;
    tf::Gauss g(9);
    std::vector<double> pos(static_cast<std::size_t>(c.cfg.ffn)), sgn(static_cast<std::size_t>(c.cfg.ffn)),
        qk(static_cast<std::size_t>(c.cfg.hidden));
    for (auto& s : pos) s = std::exp(0.7 * g.next());
    for (auto& s : sgn) s = g.uniform() < 0.5 ? -1.0 : 1.0;
    for (auto& s : qk) s = std::exp(0.5 * g.next()) * (g.uniform() < 0.5 ? -1.0 : 1.0);
    std::vector<int64_t> id(static_cast<std::size_t>(c.cfg.ffn));
    std::iota(id.begin(), id.end(), int64_t{0});
    // Positive per-neuron scales: ReLU and Llama's linear up branch allow them.
    if (c.cfg.act == tf::Act::relu || c.cfg.arch == tf::Arch::llama) {
      tf::Model m = base;
      tf::transform_ffn(m, 0, tf::random_perm(c.cfg.ffn, 4), pos);
      EXPECT_LT(diff(base, m, nullptr), 1e-5) << "rescale";
    } else if (c.cfg.act == tf::Act::gelu) {
      tf::Model m = base;
      tf::transform_ffn(m, 0, id, pos);
      EXPECT_GT(diff(base, m, nullptr), 1e-4) << "GELU does not allow rescaling";
    }
    // Sign flips: odd activations (tanh) and the linear up branch.
    if (c.cfg.act == tf::Act::tanh || c.cfg.arch == tf::Arch::llama) {
      tf::Model m = base;
      tf::transform_ffn(m, 1, id, sgn);
      EXPECT_LT(diff(base, m, nullptr), 1e-5) << "sign flips";
    }
    {
      // Query rows times a, key rows divided by a (any sign): attention scores unchanged.
      tf::Model m = base;
      std::vector<int64_t> hid(static_cast<std::size_t>(c.cfg.heads)), d(static_cast<std::size_t>(dh));
      std::iota(hid.begin(), hid.end(), int64_t{0});
      std::iota(d.begin(), d.end(), int64_t{0});
      tf::transform_heads(m, 0, hid, d, d, qk);
      EXPECT_LT(diff(base, m, nullptr), 1e-5) << "query/key rescale";
    }
    {
      tf::Model m = base;
      tf::add_dummy_neurons(m, 0, c.cfg.ffn / 4, 5);
      tf::add_dummy_neurons(m, 1, 3, 6);
      EXPECT_LT(diff(base, m, nullptr), 1e-5) << "dummy neurons";
    }
  }
}
