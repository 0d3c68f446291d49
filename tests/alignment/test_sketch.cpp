// Sketches: what goes in (dimensions from BERT/GPT-2/Llama names, recovery order, the default
// subset and --sketch-all, the size budget), the file round trip, and malformed files: every
// corruption is refused with an error naming the file, before anything is allocated from it.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "alignment/architecture.hpp"
#include "alignment_test_util.hpp"
#include "cnn.hpp"
#include "identity/crypto.hpp"

using namespace didmark;
using namespace didmark::test;
namespace fs = std::filesystem;

namespace {

fs::path tmp_dir() {
  const fs::path d = fs::temp_directory_path() / ("didmark_sketch_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

tf::Model small_bert() {
  tf::Config c;
  c.vocab = 1024;
  c.hidden = 64;
  c.heads = 4;
  c.ffn = 256;
  c.layers = 4;
  c.seed = 5;
  return tf::make_model(c);
}

std::string expect_error(const std::function<void()>& f, Errc code) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return {};
}

/// The bytes of a sketch file whose JSON header is replaced (a new, valid checksum).
std::string with_header(const std::string& file, const std::function<void(nlohmann::ordered_json&)>& edit) {
  auto u64 = [&](std::size_t off) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(file[off + static_cast<std::size_t>(i)]);
    return v;
  };
  const uint64_t jn = u64(16), bn = u64(24);
  auto j = nlohmann::ordered_json::parse(file.substr(32, jn));
  edit(j);
  const std::string text = j.dump();
  std::string out = file.substr(0, 16);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xFF));
  out += file.substr(24, 8);
  out += text;
  out += file.substr(32 + jn, bn);
  const auto d = detail::sha256(out);
  out.append(reinterpret_cast<const char*>(d.data()), d.size());
  return out;
}

AlignmentSketch parse(const std::string& bytes) {
  return AlignmentSketch::parse(std::span(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()),
                                "bad.sketch");
}

}  // namespace

TEST(Architecture, BertNamesWithAnyPrefix) {
  using alignment::TensorShape;
  const std::vector<TensorShape> t = {
      {"bert.embeddings.word_embeddings.weight", {100, 8}},
      {"bert.embeddings.LayerNorm.weight", {8}},
      {"bert.encoder.layer.0.attention.self.query.weight", {8, 8}},
      {"bert.encoder.layer.0.attention.self.key.weight", {8, 8}},
      {"bert.encoder.layer.0.attention.output.dense.weight", {8, 8}},
      {"bert.encoder.layer.0.intermediate.dense.weight", {32, 8}},
      {"bert.encoder.layer.0.output.dense.weight", {8, 32}},
      {"bert.encoder.layer.1.intermediate.dense.weight", {32, 8}},
      {"something.else", {8, 8}},
  };
  const auto m = alignment::infer_architecture(t);
  EXPECT_EQ(m.name, "bert");
  auto label = [&](int i, int a) { return m.dims[static_cast<std::size_t>(m.tensors[static_cast<std::size_t>(i)].dims[static_cast<std::size_t>(a)])].label; };
  EXPECT_EQ(label(0, 0), "vocab");
  EXPECT_TRUE(m.dims[static_cast<std::size_t>(m.tensors[0].dims[0])].anchored);
  EXPECT_EQ(label(0, 1), "hidden");
  EXPECT_EQ(label(1, 0), "hidden");
  EXPECT_EQ(label(2, 0), "layers.0.qk");
  EXPECT_EQ(label(3, 0), "layers.0.qk");  // queries and keys move together
  EXPECT_EQ(m.tensors[3].roles[0], -1);  // keys take the inverse of a query rescale
  EXPECT_EQ(label(4, 0), "hidden");
  EXPECT_EQ(label(5, 0), "layers.0.ffn");
  EXPECT_EQ(label(6, 1), "layers.0.ffn");
  EXPECT_EQ(label(7, 0), "layers.1.ffn");
  EXPECT_EQ(m.tensors[8].dims[0], -1);  // unknown names get no dimension
}

TEST(Architecture, LlamaTiesAndGroupedQueryAttention) {
  using alignment::TensorShape;
  std::vector<TensorShape> mha = {{"model.embed_tokens.weight", {50, 16}},
                                  {"model.layers.0.self_attn.q_proj.weight", {16, 16}},
                                  {"model.layers.0.self_attn.k_proj.weight", {16, 16}},
                                  {"model.layers.0.self_attn.v_proj.weight", {16, 16}},
                                  {"model.layers.0.self_attn.o_proj.weight", {16, 16}},
                                  {"model.layers.0.mlp.gate_proj.weight", {40, 16}},
                                  {"model.layers.0.mlp.up_proj.weight", {40, 16}},
                                  {"model.layers.0.mlp.down_proj.weight", {16, 40}},
                                  {"lm_head.weight", {50, 16}}};
  auto m = alignment::infer_architecture(mha);
  EXPECT_EQ(m.name, "llama");
  auto label = [&](const alignment::ArchMap& a, int i, int ax) {
    return a.dims[static_cast<std::size_t>(a.tensors[static_cast<std::size_t>(i)].dims[static_cast<std::size_t>(ax)])].label;
  };
  EXPECT_EQ(label(m, 1, 0), "layers.0.qk");
  EXPECT_EQ(label(m, 2, 0), "layers.0.qk");
  EXPECT_EQ(label(m, 3, 0), "layers.0.vo");
  EXPECT_EQ(label(m, 4, 1), "layers.0.vo");
  EXPECT_EQ(m.tensors[5].roles[0], 0);  // the gate is never rescaled or flipped
  EXPECT_EQ(label(m, 8, 0), "vocab");
  // Grouped-query attention: keys and values have fewer rows; nothing is tied.
  mha[2].shape = {8, 16};
  mha[3].shape = {8, 16};
  m = alignment::infer_architecture(mha);
  EXPECT_EQ(label(m, 1, 0), "layers.0.q");
  EXPECT_EQ(label(m, 2, 0), "layers.0.k");
  EXPECT_EQ(label(m, 3, 0), "layers.0.v");
  EXPECT_EQ(label(m, 4, 1), "layers.0.o");
}

TEST(Architecture, Gpt2ConvOneDLayout) {
  using alignment::TensorShape;
  const auto m = alignment::infer_architecture({{"transformer.wte.weight", {50, 16}},
                                                {"transformer.h.0.attn.c_attn.weight", {16, 48}},
                                                {"transformer.h.0.mlp.c_fc.weight", {16, 64}},
                                                {"transformer.h.0.mlp.c_proj.weight", {64, 16}}});
  EXPECT_EQ(m.name, "gpt2");
  EXPECT_EQ(m.dims[static_cast<std::size_t>(m.tensors[1].dims[0])].label, "hidden");
  EXPECT_EQ(m.tensors[2].out_axis, 1);
  EXPECT_EQ(m.dims[static_cast<std::size_t>(m.tensors[3].dims[0])].label, "layers.0.ffn");
}

TEST(Sketch, DefaultSubsetReachesTheTargetAndAllCoversEverything) {
  tf::Model m = tf::make_model(tf::big_config(tf::Arch::bert, 3));
  const auto o = test_owner(3);
  mark(m, o);
  const auto def = sketch_of(m, o, false);
  const auto all = sketch_of(m, o, true);
  EXPECT_EQ(def.architecture, "bert");
  EXPECT_EQ(def.did, o.did);
  int def_dims = 0, all_dims = 0, dims = 0;
  for (const auto& d : def.dims) def_dims += !d.anchored && d.width() > 0 ? 1 : 0;
  for (const auto& d : all.dims) {
    all_dims += !d.anchored && d.width() > 0 ? 1 : 0;
    dims += d.anchored ? 0 : 1;
  }
  EXPECT_EQ(all_dims, dims);  // hidden + 3 per layer
  EXPECT_EQ(dims, 1 + 3 * 6);
  EXPECT_LT(def_dims, all_dims);
  EXPECT_GE(def_dims, 1);
  EXPECT_LT(def.bytes(), all.bytes());
  EXPECT_LE(all.fraction(), 0.01);
  // Recovery order: a dimension's source has its other axis in an earlier dimension.
  for (std::size_t d = 0; d < all.dims.size(); ++d) {
    const auto& sd = all.dims[d];
    if (sd.source < 0) continue;
    const int other = all.tensors[static_cast<std::size_t>(sd.source)].dims[static_cast<std::size_t>(1 - sd.source_axis)];
    EXPECT_LT(other, static_cast<int>(d)) << sd.label;
  }
  // The hidden size comes from an unmarked tensor when one can give it (nothing held out).
  for (const auto& sd : all.dims) {
    if (sd.label == "hidden") {
      EXPECT_FALSE(all.tensors[static_cast<std::size_t>(sd.source)].marked);
    }
  }
}

TEST(Sketch, BudgetLowersTheSignatureWidth) {
  tf::Model m = small_bert();
  const auto o = test_owner(4);
  mark(m, o);
  SketchOptions so;
  so.all = true;
  so.max_fraction = 0.02;
  const auto tight = make_sketch(m.named(), o.did, so, cpu());
  so.max_fraction = 0.5;
  const auto loose = make_sketch(m.named(), o.did, so, cpu());
  EXPECT_EQ(loose.samples, kDefaultSketchSamples);
  EXPECT_LT(tight.samples, loose.samples);
  EXPECT_GE(tight.samples, 8);
  so.samples = 48;  // asked for: kept
  EXPECT_EQ(make_sketch(m.named(), o.did, so, cpu()).samples, 48);
}

TEST(Sketch, NothingMarkedIsAnError) {
  tf::Model m = small_bert();
  SketchOptions so;
  so.watermark.policy.include_regex = "no-such-tensor";
  EXPECT_NE(expect_error([&] { make_sketch(m.named(), "did:example:x", so, cpu()); }, Errc::invalid_argument).find("no tensor is marked"),
            std::string::npos);
  expect_error([&] { make_sketch(m.named(), "", {}, cpu()); }, Errc::invalid_argument);
}

TEST(SketchFile, RoundTripIsExact) {
  tf::Model m = small_bert();
  const auto o = test_owner(5);
  mark(m, o);
  const auto sk = sketch_of(m, o, true);
  const std::string bytes = sk.serialize();
  const auto back = parse(bytes);
  EXPECT_EQ(back.serialize(), bytes);
  EXPECT_EQ(back.did, sk.did);
  ASSERT_EQ(back.dims.size(), sk.dims.size());
  for (std::size_t d = 0; d < sk.dims.size(); ++d) {
    EXPECT_EQ(back.dims[d].signature, sk.dims[d].signature);
    EXPECT_EQ(back.dims[d].samples, sk.dims[d].samples);
    EXPECT_EQ(back.dims[d].vector_values, sk.dims[d].vector_values);
  }
  const fs::path p = tmp_dir() / "m.sketch";
  fs::remove(p);
  sk.write(p);
  EXPECT_EQ(AlignmentSketch::read(p).serialize(), bytes);
  EXPECT_NE(expect_error([&] { sk.write(p); }, Errc::invalid_argument).find("exists"), std::string::npos);
  sk.write(p, true);
  // And it realigns the same after the round trip.
  tf::Model s = m;
  tf::permute_hidden(s, tf::random_perm(m.cfg.hidden, 1));
  AlignmentReport a, b;
  const auto va = realigned_verify(s, sk, o, &a), vb = realigned_verify(s, back, o, &b);
  EXPECT_EQ(va.z, vb.z);
  EXPECT_TRUE(a.realigned);
}

TEST(SketchFile, MalformedFilesAreRefusedNamingTheFile) {
  tf::Model m = small_bert();
  const auto o = test_owner(6);
  mark(m, o);
  const std::string good = sketch_of(m, o, true).serialize();
  auto refused = [&](const std::string& bytes, const char* why, Errc code = Errc::corrupt_input) {
    SCOPED_TRACE(why);
    const std::string msg = expect_error([&] { parse(bytes); }, code);
    EXPECT_NE(msg.find("bad.sketch"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(o.did), std::string::npos) << "messages never echo the file's contents";
    return msg;
  };
  refused("", "empty");
  refused(good.substr(0, 40), "truncated header");
  refused(good.substr(0, good.size() - 1), "truncated");
  refused(good + "x", "extended");
  std::string bad = good;
  bad[0] = 'X';
  refused(bad, "bad magic");
  bad = good;
  bad[good.size() / 2] ^= 0x40;
  EXPECT_NE(refused(bad, "flipped byte").find("checksum"), std::string::npos);
  bad = good;
  bad[8] = 9;  // version 9
  refused(bad, "newer version", Errc::unsupported);
  // Valid checksums around invalid contents: the reader checks every number itself.
  refused(with_header(good, [](auto& j) { j["kind"] = "model"; }), "kind");
  refused(with_header(good, [](auto& j) { j["did"] = ""; }), "empty did");
  refused(with_header(good, [](auto& j) { j["strength"] = -1; }), "strength");
  refused(with_header(good, [](auto& j) { j["tensors"][0]["dims"][1] = 100000; }), "dimension index");
  refused(with_header(good, [](auto& j) { j["tensors"][0]["shape"][0] = 3; }), "shape against dimension size");
  refused(with_header(good, [](auto& j) { j["tensors"][0]["dtype"] = "q4"; }), "dtype");
  refused(with_header(good, [](auto& j) { j["tensors"][0]["roles"][0] = 7; }), "roles");
  refused(with_header(good, [](auto& j) { j["samples"] = 1 << 30; }), "samples");
  for (std::size_t d = 0; d < 3; ++d) {
    refused(with_header(good, [d](auto& j) { j["dims"][d]["signature"][1] = uint64_t{1} << 40; }), "huge count");
    refused(with_header(good, [d](auto& j) { j["dims"][d]["signature"][0] = uint64_t{1} << 40; }), "offset out of range");
    refused(with_header(good, [d](auto& j) { j["dims"][d]["size"] = int64_t{1} << 40; }), "dimension size");
    refused(with_header(good, [d](auto& j) { j["dims"][d]["source"] = 100000; }), "source index");
  }
  // A sample index outside its source: find a dimension with a source.
  refused(with_header(good, [](auto& j) {
            for (auto& d : j["dims"])
              if (d["source"].template get<int>() >= 0) {
                d["source_axis"] = 1 - d["source_axis"].template get<int>();
                break;
              }
          }),
          "source axis not in the dimension");
  refused(with_header(good, [](auto& j) { j.erase("tensors"); }), "missing field");
  refused(with_header(good, [](auto& j) { j["tensors"] = "x"; }), "wrong type");
  // Not JSON at all.
  {
    std::string b = good;
    b[32] = '#';
    const auto d = detail::sha256(std::string_view(b.data(), b.size() - 32));
    std::memcpy(b.data() + b.size() - 32, d.data(), 32);
    refused(b, "not JSON");
  }
  expect_error([&] { AlignmentSketch::read(tmp_dir() / "missing.sketch"); }, Errc::not_found);
}

TEST(SketchFile, AnotherArchitectureIsAClearError) {
  tf::Model bert = small_bert();
  const auto o = test_owner(7);
  mark(bert, o);
  const auto sk = sketch_of(bert, o, true);
  tf::Config lc;
  lc.arch = tf::Arch::llama;
  lc.act = tf::Act::swiglu;
  lc.hidden = 48;
  lc.ffn = 96;
  lc.vocab = 300;
  tf::Model llama = tf::make_model(lc);
  const Claim c = o.claim();
  const std::string msg = expect_error([&] { verify_realigned(llama.named(), sk, std::span(&c, 1), {}, cpu()); },
                                       Errc::invalid_argument);
  EXPECT_NE(msg.find("another architecture"), std::string::npos) << msg;
  // An array sketch for a checkpoint, and a checkpoint sketch for an array.
  std::vector<float> x(64 * 8, 0.5f);
  const auto av = TensorView::contiguous(x.data(), DType::f32, {64, 8});
  const auto ask = make_array_sketch(av, {}, o.did, {}, cpu());
  expect_error([&] { realign_for_owner(bert.named(), ask, {}, cpu()); }, Errc::invalid_argument);
  expect_error([&] { realign_array_for_owner(av, {}, sk, cpu()); }, Errc::invalid_argument);
}

TEST(SketchFile, ScrambledNamesArePairedByContent) {
  tf::Config cfg;
  cfg.vocab = 4096;
  cfg.hidden = 256;
  cfg.ffn = 1024;
  cfg.layers = 3;
  cfg.seed = 12;
  tf::Model m = tf::make_model(cfg);  // 3.4M parameters: z ~ 9 at the default strength
  const auto o = test_owner(8);
  mark(m, o);
  const auto sk = sketch_of(m, o, true);
  tf::Model s = m;
  tf::permute_hidden(s, tf::random_perm(m.cfg.hidden, 2));
  for (int64_t l = 0; l < m.cfg.layers; ++l) tf::transform_ffn(s, l, tf::random_perm(m.cfg.ffn, 3 + static_cast<uint64_t>(l)));
  // Meaningless names, in a shuffled order: only shapes and contents are left.
  const auto order = tf::random_perm(static_cast<int64_t>(s.tensors.size()), 4);
  std::vector<Buffer> scrambled;
  for (std::size_t i = 0; i < order.size(); ++i) {
    scrambled.push_back(s.tensors[static_cast<std::size_t>(order[i])]);
    scrambled.back().name = "t" + std::to_string(i);
  }
  const auto named = test::named(scrambled);
  const Claim c = o.claim();
  AlignmentReport how;
  const auto v = verify_realigned(named, sk, std::span(&c, 1), {}, cpu(), &how)[0];
  EXPECT_TRUE(how.realigned);
  EXPECT_GT(how.tensors_renamed, 10);
  EXPECT_TRUE(v.detected) << v.z;
  AlignmentReport named_how;
  const auto w = verify_realigned(s.named(), sk, std::span(&c, 1), {}, cpu(), &named_how)[0];
  EXPECT_EQ(how.tensors_matched, named_how.tensors_matched);
  EXPECT_NEAR(v.z, w.z, 0.5);
}

TEST(SketchFile, ConvolutionEntriesAreCheckedToo) {
  tf::Model m = cnn::make_resnet(cnn::small_config(false, 2));
  const auto o = test_owner(8);
  WatermarkOptions opt;
  opt.policy.min_elements = 256;  // the small convolutions are marked too
  mark(m, o, opt);
  SketchOptions so;
  so.watermark = opt;
  so.all = true;
  const std::string good = make_sketch(m.named(), o.did, so, cpu()).serialize();
  const auto back = parse(good);
  EXPECT_EQ(back.architecture, "resnet");
  int gains = 0;
  for (const auto& t : back.tensors) gains += t.bn_gain.empty() ? 0 : 1;
  EXPECT_GE(gains, 10);  // every convolution followed by a batch norm
  auto refused = [&](const std::string& bytes, const char* why) {
    SCOPED_TRACE(why);
    const std::string msg = expect_error([&] { parse(bytes); }, Errc::corrupt_input);
    EXPECT_NE(msg.find("bad.sketch"), std::string::npos) << msg;
  };
  auto first = [](auto& j, const char* key) -> auto& {
    for (auto& t : j["tensors"])
      if (t.contains(key)) return t;
    throw std::runtime_error("no tensor with the key");
  };
  refused(with_header(good, [&](auto& j) { first(j, "bn_gain")["bn_gain"][1] = 3; }), "gain count");
  refused(with_header(good, [&](auto& j) { first(j, "bn_gain")["shape"] = {8, 8}; }), "gain on a matrix");
  // A 3x3 convolution's input channels are 9 columns each: never a source along them.
  refused(with_header(good, [](auto& j) {
            for (auto& d : j["dims"]) {
              const int s = d["source"].template get<int>();
              if (s >= 0 && j["tensors"][static_cast<std::size_t>(s)]["shape"].size() == 4 &&
                  j["tensors"][static_cast<std::size_t>(s)]["shape"][2].template get<int>() == 3) {
                d["source_axis"] = 1;
                return;
              }
            }
            throw std::runtime_error("no 3x3 source");
          }),
          "grouped source axis");
}
