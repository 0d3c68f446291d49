// Attacks as a library: the formats they round through, the maps they follow, and a small
// ReLU network given as a JSON map whose function the structural attacks must keep.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "attack/fp8.hpp"
#include "attack/ops.hpp"
#include "didmark/attack.hpp"
#include "didmark/io.hpp"
#include "test_util.hpp"

using namespace didmark;
namespace fs = std::filesystem;

namespace {

OwnedTensor gaussian(const std::string& name, std::vector<int64_t> shape, uint64_t seed, double sd = 1.0,
                     DType t = DType::f32) {
  OwnedTensor o(name, t, std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0, sd);
  std::vector<double> v(static_cast<std::size_t>(o.numel()));
  for (auto& x : v) x = nd(rng);
  o.assign(v);
  return o;
}

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("didmark-test-attack-" + std::to_string(::getpid())) / name;
  fs::create_directories(p.parent_path());
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(Fp8, DecodeKnownCodesAndRoundTrip) {
  using attack_detail::double_to_fp8;
  using attack_detail::fp8_to_double;
  EXPECT_EQ(fp8_to_double(0x7E, DType::f8_e4m3), 448.0);    // largest e4m3fn
  EXPECT_EQ(fp8_to_double(0x01, DType::f8_e4m3), 0x1p-9);   // smallest subnormal
  EXPECT_EQ(fp8_to_double(0x38, DType::f8_e4m3), 1.0);
  EXPECT_TRUE(std::isnan(fp8_to_double(0x7F, DType::f8_e4m3)));
  EXPECT_EQ(fp8_to_double(0x7B, DType::f8_e5m2), 57344.0);  // largest e5m2
  EXPECT_TRUE(std::isinf(fp8_to_double(0x7C, DType::f8_e5m2)));
  for (DType t : {DType::f8_e4m3, DType::f8_e5m2})
    for (int c = 0; c < 256; ++c) {
      const double v = fp8_to_double(static_cast<uint8_t>(c), t);
      if (!std::isfinite(v) || (v == 0 && c == 0x80)) continue;
      EXPECT_EQ(double_to_fp8(v, t), c) << c;
    }
  EXPECT_EQ(double_to_fp8(1e6, DType::f8_e4m3), 0x7E);     // saturates
  EXPECT_EQ(double_to_fp8(1.0625, DType::f8_e4m3), 0x38);  // tie between 1 and 1.125 -> even code
  EXPECT_EQ(double_to_fp8(-1.1, DType::f8_e4m3), 0x80 | 0x39);
}

TEST(Ops, PermuteScaleAppendAlongAxes) {
  OwnedTensor t("t", DType::f32, {2, 3, 2});
  std::vector<double> v(12);
  for (int i = 0; i < 12; ++i) v[static_cast<std::size_t>(i)] = i;
  t.assign(v);
  const std::vector<int64_t> p{2, 0, 1};
  attack_detail::permute_axis(t, 1, 0, p);
  EXPECT_EQ(t.values(), (std::vector<double>{4, 5, 0, 1, 2, 3, 10, 11, 6, 7, 8, 9}));
  // A block at an offset (a fused tensor's middle third).
  OwnedTensor f("f", DType::f64, {6});
  f.assign(std::vector<double>{0, 1, 2, 3, 4, 5});
  attack_detail::permute_axis(f, 0, 2, std::vector<int64_t>{1, 0});
  EXPECT_EQ(f.values(), (std::vector<double>{0, 1, 3, 2, 4, 5}));
  attack_detail::scale_axis(f, 0, 4, std::vector<double>{2, 10});
  EXPECT_EQ(f.values(), (std::vector<double>{0, 1, 3, 2, 8, 50}));
  OwnedTensor m("m", DType::f32, {2, 2});
  m.assign(std::vector<double>{1, 2, 3, 4});
  attack_detail::append_axis(m, 1, 1, [](int64_t, int64_t j) { return 100.0 + static_cast<double>(j); });
  EXPECT_EQ(m.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(m.values(), (std::vector<double>{1, 2, 100, 3, 4, 101}));
}

TEST(Specs, ParseAndRefuse) {
  EXPECT_DOUBLE_EQ(parse_attack_spec("noise:0.05").strength, 0.05);
  EXPECT_EQ(parse_attack_spec("quant:int4:g64").strength, 64);
  EXPECT_EQ(parse_attack_spec("quant:int4").args, (std::vector<std::string>{"int4", "g128"}));
  EXPECT_DOUBLE_EQ(parse_attack_spec("prune:2of4").strength, 0.5);
  const auto m = parse_attack_spec("merge:/a:b/partner.safetensors:0.3");
  EXPECT_EQ(m.args[0], "/a:b/partner.safetensors");
  EXPECT_DOUBLE_EQ(m.strength, 0.3);
  const auto t = parse_attack_spec("merge-ties:p.safetensors:0.5:0.4");
  EXPECT_EQ(t.args, (std::vector<std::string>{"p.safetensors", "0.5", "0.4"}));
  EXPECT_EQ(parse_attack_spec("remark:bob.id.json:0.01").args[0], "bob.id.json");
  for (const char* bad : {"noise", "noise:0", "noise:11", "prune:1", "prune:3of2", "quant:int2", "quant:int4:g1",
                          "cast:f64", "permute:cols", "merge:x:1.5", "dummy:2.5", "truncate:0", "remark:x:0.5",
                          "rescale:hard", "zap"}) {
    const std::string msg = test::error_of([&] { parse_attack_spec(bad); });
    EXPECT_NE(msg.find(std::string("attack '") + bad + "'"), std::string::npos) << msg;
  }
  EXPECT_EQ(parse_array_attack_spec("pca:16").strength, 16);
  EXPECT_NE(test::error_of([] { parse_array_attack_spec("permute:all"); }).find("unknown array attack"),
            std::string::npos);
}

TEST(Architecture, RecognisesPrefixedLlamaWithGroupedHeads) {
  std::vector<OwnedTensor> ts;
  const int64_t h = 32, q = 32, kv = 16, ffn = 48;
  ts.push_back(gaussian("base.model.embed_tokens.weight", {50, h}, 1));
  for (int l = 0; l < 2; ++l) {
    const std::string p = "base.model.layers." + std::to_string(l) + ".";
    ts.push_back(gaussian(p + "input_layernorm.weight", {h}, 2));
    ts.push_back(gaussian(p + "self_attn.q_proj.weight", {q, h}, 3));
    ts.push_back(gaussian(p + "self_attn.k_proj.weight", {kv, h}, 4));
    ts.push_back(gaussian(p + "self_attn.v_proj.weight", {kv, h}, 5));
    ts.push_back(gaussian(p + "self_attn.o_proj.weight", {h, q}, 6));
    ts.push_back(gaussian(p + "post_attention_layernorm.weight", {h}, 7));
    ts.push_back(gaussian(p + "mlp.gate_proj.weight", {ffn, h}, 8));
    ts.push_back(gaussian(p + "mlp.up_proj.weight", {ffn, h}, 9));
    ts.push_back(gaussian(p + "mlp.down_proj.weight", {h, ffn}, 10));
  }
  ts.push_back(gaussian("base.model.norm.weight", {h}, 11));
  ts.push_back(gaussian("base.lm_head.weight", {50, h}, 12));
  ts.push_back(gaussian("classifier.weight", {3, h}, 13));
  std::vector<NamedTensor> named;
  for (const auto& t : ts) named.push_back({t.name, t.view()});
  ArchitectureHints hints;
  hints.heads = 4;
  const ArchitectureMap m = recognise_architecture(named, hints);
  EXPECT_EQ(m.family, "llama");
  EXPECT_EQ(m.hidden, h);
  EXPECT_EQ(m.hidden_axes.size(), 1u + 2 * 9 + 2);  // embed, 9 per layer, norm, lm_head
  ASSERT_EQ(m.layers.size(), 2u);
  EXPECT_EQ(m.layers[0].attention.heads, 4);
  EXPECT_EQ(m.layers[0].attention.kv_heads, 2);
  EXPECT_EQ(m.layers[0].attention.head_dim, 8);
  EXPECT_TRUE(m.layers[0].attention.rope);
  EXPECT_EQ(m.layers[0].ffn.activation, Activation::gated);
  EXPECT_EQ(m.layers[1].tensors.size(), 9u);
  EXPECT_EQ(m.unmapped, (std::vector<std::string>{"classifier.weight"}));
  // JSON round trip.
  const ArchitectureMap back = parse_architecture_map(architecture_map_json(m), "rt");
  EXPECT_EQ(architecture_map_json(back), architecture_map_json(m));
  // Heads that do not divide are refused, naming the layer.
  hints.heads = 5;
  EXPECT_NE(test::error_of([&] { recognise_architecture(named, hints); }).find("layer 0"), std::string::npos);
}

TEST(Architecture, JsonErrorsNameTheField) {
  EXPECT_NE(test::error_of([] { parse_architecture_map("[1]", "m.json"); }).find("m.json"), std::string::npos);
  EXPECT_NE(test::error_of([] { parse_architecture_map("{}", "m.json"); }).find("\"hidden\""), std::string::npos);
  const std::string bad = R"({"hidden": {"size": 4, "axes": [{"tensor": "a"}]}})";
  EXPECT_NE(test::error_of([&] { parse_architecture_map(bad, "m.json"); }).find("hidden.axes[0]"), std::string::npos);
  const std::string act = R"({"hidden": {"size": 4}, "layers": [{"ffn": {"size": 2, "activation": "tanh"}}]})";
  EXPECT_NE(test::error_of([&] { parse_architecture_map(act, "m.json"); }).find("tanh"), std::string::npos);
}

// A two-layer ReLU MLP with a residual stream, given as a JSON map (no known naming):
// y = x + W2 relu(W1 x + b1) + c, then out = V y. permute:hidden, permute:ffn, rescale and
// dummy neurons keep out (hidden permutation: V's columns follow, so out is unchanged).
namespace {

std::vector<double> mlp(const TensorSet& s, const std::vector<double>& x) {
  auto val = [&](const char* n) { return s.find(n)->values(); };
  auto shape = [&](const char* n) { return s.find(n)->shape; };
  const auto w1 = val("w1"), b1 = val("b1"), w2 = val("w2"), c = val("c"), v = val("v");
  const int64_t hdim = shape("w1")[1], f = shape("w1")[0], o = shape("v")[0];
  std::vector<double> hid(static_cast<std::size_t>(f)), y(x), out(static_cast<std::size_t>(o));
  for (int64_t i = 0; i < f; ++i) {
    double a = b1[static_cast<std::size_t>(i)];
    for (int64_t j = 0; j < hdim; ++j) a += w1[static_cast<std::size_t>(i * hdim + j)] * x[static_cast<std::size_t>(j)];
    hid[static_cast<std::size_t>(i)] = std::max(a, 0.0);
  }
  for (int64_t j = 0; j < hdim; ++j) {
    double a = c[static_cast<std::size_t>(j)];
    for (int64_t i = 0; i < f; ++i) a += w2[static_cast<std::size_t>(j * f + i)] * hid[static_cast<std::size_t>(i)];
    y[static_cast<std::size_t>(j)] += a;
  }
  for (int64_t k = 0; k < o; ++k) {
    double a = 0;
    for (int64_t j = 0; j < hdim; ++j) a += v[static_cast<std::size_t>(k * hdim + j)] * y[static_cast<std::size_t>(j)];
    out[static_cast<std::size_t>(k)] = a;
  }
  return out;
}

const char* kMlpMap = R"({
  "family": "tiny-mlp",
  "hidden": {"size": 16, "axes": [{"tensor": "w1", "axis": 1}, {"tensor": "w2", "axis": 0},
                                   {"tensor": "c", "axis": 0}, {"tensor": "v", "axis": 1}]},
  "layers": [{"index": 0, "tensors": ["w1", "b1", "w2", "c"],
              "ffn": {"size": 24, "activation": "relu", "in": [{"tensor": "w1", "axis": 0}, {"tensor": "b1", "axis": 0}],
                      "out": [{"tensor": "w2", "axis": 1}]}}]})";

}  // namespace

TEST(Structure, JsonMappedReluNetworkKeepsItsFunction) {
  TensorSet s;
  s.tensors.push_back(gaussian("w1", {24, 16}, 1, 0.3));
  s.tensors.push_back(gaussian("b1", {24}, 2, 0.1));
  s.tensors.push_back(gaussian("w2", {16, 24}, 3, 0.3));
  s.tensors.push_back(gaussian("c", {16}, 4, 0.1));
  s.tensors.push_back(gaussian("v", {5, 16}, 5, 0.3));
  std::vector<double> x(16);
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd;
  for (auto& e : x) e = nd(rng);
  const auto before = mlp(s, x);
  for (const char* spec : {"permute:ffn", "rescale", "dummy:7", "permute:hidden"}) {
    TensorSet a = s;
    AttackContext ctx;
    ctx.map = parse_architecture_map(kMlpMap, "tiny");
    ctx.seed = 3;
    const AttackReport r = apply_attack(a, parse_attack_spec(spec), ctx);
    EXPECT_TRUE(r.function_preserving) << spec;
    // The hidden permutation permutes the input too: feed the permuted input.
    std::vector<double> xin = x;
    if (std::string(spec) == "permute:hidden") {
      // Recover the permutation from c (c[p[i]] moved to i): match values exactly.
      const auto c0 = s.find("c")->values(), c1 = a.find("c")->values();
      for (std::size_t i = 0; i < c1.size(); ++i)
        for (std::size_t j = 0; j < c0.size(); ++j)
          if (c1[i] == c0[j]) xin[i] = x[j];
    }
    const auto after = mlp(a, xin);
    for (std::size_t k = 0; k < before.size(); ++k) EXPECT_NEAR(after[k], before[k], 1e-5) << spec;
    EXPECT_GT(relative_weight_change(a, s), std::string(spec) == "dummy:7" ? -1.0 : 0.05) << spec;
  }
  // Same seed, same bytes; another seed, others.
  TensorSet a = s, b = s, c = s;
  for (auto* t : {&a, &b, &c}) {
    AttackContext ctx;
    ctx.map = parse_architecture_map(kMlpMap, "tiny");
    ctx.seed = t == &c ? 2 : 1;
    apply_attack(*t, parse_attack_spec("permute:all"), ctx);
  }
  EXPECT_EQ(a.find("w1")->bytes, b.find("w1")->bytes);
  EXPECT_NE(a.find("w1")->bytes, c.find("w1")->bytes);
}

TEST(TensorSet, SafetensorsRoundTripKeepsMetadataAndCastDtype) {
  TensorSet s;
  s.tensors.push_back(gaussian("a.weight", {64, 32}, 1, 0.02));
  s.tensors.push_back(gaussian("a.bias", {64}, 2, 0.02, DType::bf16));
  OwnedTensor ids("ids", DType::i64, {3});
  s.tensors.push_back(ids);
  s.metadata = {{"format", "pt"}};
  const fs::path p = scratch("rt.safetensors");
  save_tensor_set(s, p);
  TensorSet r = load_tensor_set(p);
  ASSERT_EQ(r.tensors.size(), 3u);
  EXPECT_EQ(r.metadata, s.metadata);
  EXPECT_EQ(r.find("a.weight")->bytes, s.find("a.weight")->bytes);
  EXPECT_EQ(r.find("a.bias")->dtype, DType::bf16);
  // The input is never the output.
  EXPECT_NE(test::error_of([&] { save_tensor_set(r, p, true); }).find("is the input"), std::string::npos);
  AttackContext ctx;
  apply_attack(r, parse_attack_spec("cast:f16"), ctx);
  EXPECT_EQ(r.find("a.weight")->dtype, DType::f16);
  EXPECT_EQ(r.find("ids")->dtype, DType::i64);
  apply_attack(r, parse_attack_spec("cast:fp8-e4m3"), ctx);
  EXPECT_EQ(r.find("a.weight")->dtype, DType::f16);  // fp8 goes back into the stored dtype
  const fs::path q = scratch("rt2.safetensors");
  save_tensor_set(r, q);
  const SafetensorsFile f(q);
  EXPECT_EQ(f.header().tensors.size(), 3u);
}

TEST(Arrays, AttacksDoWhatTheySay) {
  ArrayData a;
  a.rows = 400;
  a.dim = 24;
  a.x.resize(static_cast<std::size_t>(a.rows * a.dim));
  std::mt19937_64 rng(1);
  std::normal_distribution<double> nd;
  for (auto& v : a.x) v = nd(rng);
  for (int64_t i = 0; i < a.rows; ++i) a.ids.push_back(1000 + i);
  auto gram = [](const ArrayData& d, int64_t i, int64_t j) {
    double s = 0;
    for (int64_t k = 0; k < d.dim; ++k) s += d.x[static_cast<std::size_t>(i * d.dim + k)] * d.x[static_cast<std::size_t>(j * d.dim + k)];
    return s;
  };
  EXPECT_DOUBLE_EQ(neighbour_recall(a, a, 10, 50, 1), 1.0);
  ArrayData r = a;
  apply_array_attack(r, parse_array_attack_spec("rotate"), 3);
  EXPECT_NEAR(gram(r, 3, 7), gram(a, 3, 7), 1e-9);
  EXPECT_NEAR(gram(r, 5, 5), gram(a, 5, 5), 1e-9);
  EXPECT_GT(std::fabs(r.x[0] - a.x[0]), 1e-6);
  EXPECT_DOUBLE_EQ(neighbour_recall(a, r, 10, 100, 1), 1.0);  // similarities kept: neighbours kept
  ArrayData s = a;
  apply_array_attack(s, parse_array_attack_spec("subset:0.25"), 4);
  ASSERT_EQ(s.rows, 100);
  for (int64_t i = 0; i < s.rows; ++i) {  // every row still carries its own id
    const int64_t orig = s.ids[static_cast<std::size_t>(i)] - 1000;
    EXPECT_EQ(s.x[static_cast<std::size_t>(i * s.dim)], a.x[static_cast<std::size_t>(orig * a.dim)]);
  }
  ArrayData b = a;
  apply_array_attack(b, parse_array_attack_spec("quant:binary"), 1);
  for (int64_t k = 0; k < b.dim; ++k)
    EXPECT_DOUBLE_EQ(std::fabs(b.x[static_cast<std::size_t>(k)]), std::fabs(b.x[0]));
  ArrayData p = a;
  apply_array_attack(p, parse_array_attack_spec("pca:4"), 1);
  // Rank 4 after centring: the 5th singular value is zero.
  double mean0 = 0;
  for (int64_t i = 0; i < p.rows; ++i) mean0 += p.x[static_cast<std::size_t>(i * p.dim)];
  EXPECT_NEAR(mean0 / static_cast<double>(p.rows), [&] {
    double m = 0;
    for (int64_t i = 0; i < a.rows; ++i) m += a.x[static_cast<std::size_t>(i * a.dim)];
    return m / static_cast<double>(a.rows);
  }(), 1e-9);
  EXPECT_LT(neighbour_recall(a, p, 10, 100, 1), 0.9);
  EXPECT_NE(test::error_of([&] {
              ArrayData c = a;
              apply_array_attack(c, parse_array_attack_spec("pca:24"), 1);
            }).find("below the dimension"),
            std::string::npos);
}
