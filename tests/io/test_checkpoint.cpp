// Checkpoint embed / verify round trips per format.
#include <gtest/gtest.h>

#include <cstring>

#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/io_test_util.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using test::ScratchDir;
namespace fs = std::filesystem;

// Small tensors need a strong mark to reach p <= 1e-9: z = strength * sqrt(elements).
WatermarkOptions strong() {
  WatermarkOptions o;
  o.strength = 0.02;
  o.max_relative_change = 0.05;
  return o;
}

std::vector<test::Buffer> mixed_tensors() {
  std::vector<test::Buffer> b;
  b.push_back(test::gaussian("layers.0.attn.q_proj.weight", DType::f32, {256, 512}, 1));
  b.push_back(test::gaussian("layers.0.mlp.up_proj.weight", DType::bf16, {512, 256}, 2));
  b.push_back(test::gaussian("layers.0.mlp.down_proj.weight", DType::f16, {128, 256}, 3));
  b.push_back(test::gaussian("layers.0.input_layernorm.weight", DType::f32, {4096, 2}, 4));  // skipped by name
  b.push_back(test::gaussian("layers.0.mlp.up_proj.bias", DType::f32, {512}, 5));
  test::Buffer ids("position_ids", DType::i64, {1, 4096});
  for (int64_t i = 0; i < 4096; ++i) static_cast<int64_t*>(ids.view.data)[i] = i;
  b.push_back(ids);
  for (DType t : {DType::u8, DType::boolean, DType::f8_e4m3, DType::f8_e5m2, DType::i8, DType::i16, DType::i32}) {
    test::Buffer r(std::string("raw_") + std::string(dtype_name(t)), t, {64, 128});
    for (std::size_t i = 0; i < r.view.nbytes(); ++i) r.bytes[i] = static_cast<unsigned char>((i * 131) >> 3);
    if (t == DType::boolean)
      for (std::size_t i = 0; i < r.view.nbytes(); ++i) r.bytes[i] &= 1;
    b.push_back(r);
  }
  return b;
}

Claim claim(uint64_t seed) { return {test::random_key(seed), test::random_payload(seed + 100)}; }

TEST(Checkpoint, GuessesFormats) {
  ScratchDir dir;
  EXPECT_EQ(guess_checkpoint_format("a/model.safetensors"), CheckpointFormat::safetensors);
  EXPECT_EQ(guess_checkpoint_format("model.SafeTensors"), CheckpointFormat::safetensors);
  EXPECT_EQ(guess_checkpoint_format("model.safetensors.index.json"), CheckpointFormat::safetensors_sharded);
  EXPECT_EQ(guess_checkpoint_format("pytorch_model.bin"), CheckpointFormat::torch);
  EXPECT_EQ(guess_checkpoint_format("x.pt"), CheckpointFormat::torch);
  EXPECT_EQ(guess_checkpoint_format("x.npy"), CheckpointFormat::npy);
  EXPECT_FALSE(guess_checkpoint_format("config.json"));
  EXPECT_FALSE(guess_checkpoint_format(dir.path()));
  test::spit(dir / "model.safetensors.index.json", "{}");
  EXPECT_EQ(guess_checkpoint_format(dir.path()), CheckpointFormat::safetensors_sharded);
  EXPECT_EQ(resolve_checkpoint_path(dir.path(), CheckpointFormat::safetensors_sharded),
            dir / "model.safetensors.index.json");
}

TEST(Checkpoint, SafetensorsEmbedKeepsEverythingElseByteIdentical) {
  ScratchDir dir;
  const auto bufs = mixed_tensors();
  const std::vector<std::pair<std::string, std::string>> meta{{"format", "pt"}, {"owner", "test"}};
  write_safetensors(dir / "in.safetensors", test::named(bufs), meta);
  const std::string before = test::slurp(dir / "in.safetensors");
  const Claim c = claim(1);

  const auto r = embed_checkpoint(dir / "in.safetensors", dir / "out.safetensors", CheckpointFormat::safetensors,
                                  c.key, c.payload, strong(), {});
  EXPECT_EQ(r.report.tensors_marked, 3);
  EXPECT_TRUE(r.report.within_budget);
  EXPECT_EQ(r.outputs, (std::vector<fs::path>{dir / "out.safetensors"}));
  EXPECT_EQ(test::slurp(dir / "in.safetensors"), before) << "input changed";

  SafetensorsFile in(dir / "in.safetensors"), out(dir / "out.safetensors");
  ASSERT_EQ(in.size(), out.size());
  EXPECT_EQ(std::memcmp(in.header_bytes().data(), out.header_bytes().data(), in.header_bytes().size()), 0);
  EXPECT_EQ(out.header().metadata, meta);
  int identical = 0, changed = 0;
  for (const auto& t : in.header().tensors) {
    const bool same = std::memcmp(in.view(t).data, out.view(t).data, t.nbytes()) == 0;
    const bool marked = std::any_of(r.report.tensors.begin(), r.report.tensors.end(),
                                    [&](const TensorReport& tr) { return tr.name == t.name && tr.used; });
    EXPECT_EQ(same, !marked) << t.name;
    (same ? identical : changed) += 1;
  }
  EXPECT_EQ(changed, 3);
  EXPECT_EQ(identical, static_cast<int>(bufs.size()) - 3);

  const Claim other = claim(2);
  const std::vector<Claim> claims{c, other};
  const auto v = verify_checkpoint(dir / "out.safetensors", CheckpointFormat::safetensors, claims, strong());
  ASSERT_EQ(v.size(), 2u);
  EXPECT_TRUE(v[0].detected) << v[0].z;
  EXPECT_GT(v[0].z, 8);
  EXPECT_EQ(v[0].tensors, 3);
  EXPECT_FALSE(v[1].detected) << v[1].z;
  const auto v0 = verify_checkpoint(dir / "in.safetensors", CheckpointFormat::safetensors, claims, strong());
  EXPECT_FALSE(v0[0].detected) << v0[0].z;
}

TEST(Checkpoint, RefusesToOverwriteInputOrExistingOutput) {
  ScratchDir dir;
  const auto bufs = mixed_tensors();
  write_safetensors(dir / "in.safetensors", test::named(bufs));
  const std::string before = test::slurp(dir / "in.safetensors");
  const Claim c = claim(1);
  const auto fmt = CheckpointFormat::safetensors;
  for (bool force : {false, true}) {
    try {
      embed_checkpoint(dir / "in.safetensors", dir / "in.safetensors", fmt, c.key, c.payload, strong(), {force});
      ADD_FAILURE() << "overwrote its input";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("is the input"), std::string::npos) << e.what();
    }
  }
  fs::create_directory(dir / "sub");
  EXPECT_THROW(embed_checkpoint(dir / "in.safetensors", dir / "sub/../in.safetensors", fmt, c.key, c.payload,
                                strong(), {true}),
               Error);
  EXPECT_EQ(test::slurp(dir / "in.safetensors"), before);

  test::spit(dir / "out.safetensors", "keep me");
  EXPECT_THROW(embed_checkpoint(dir / "in.safetensors", dir / "out.safetensors", fmt, c.key, c.payload, strong(), {}),
               Error);
  EXPECT_EQ(test::slurp(dir / "out.safetensors"), "keep me");
  embed_checkpoint(dir / "in.safetensors", dir / "out.safetensors", fmt, c.key, c.payload, strong(), {true});
  EXPECT_EQ(fs::file_size(dir / "out.safetensors"), before.size());
}

TEST(Checkpoint, NothingWrittenWhenNothingEligibleOrOverBudget) {
  ScratchDir dir;
  test::Buffer small = test::gaussian("tiny.weight", DType::f32, {16, 16}, 1);
  write_safetensors(dir / "small.safetensors", std::vector<NamedTensor>{small.named()});
  const Claim c = claim(1);
  try {
    embed_checkpoint(dir / "small.safetensors", dir / "out.safetensors", CheckpointFormat::safetensors, c.key,
                     c.payload, {}, {});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no tensor can carry a mark"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out.safetensors"));

  // bf16 rounding pushes the stored change past a budget equal to the strength.
  test::Buffer b = test::gaussian("w", DType::bf16, {256, 256}, 2);
  write_safetensors(dir / "bf16.safetensors", std::vector<NamedTensor>{b.named()});
  WatermarkOptions o;
  o.strength = 0.002;
  o.max_relative_change = 0.002;
  try {
    embed_checkpoint(dir / "bf16.safetensors", dir / "out.safetensors", CheckpointFormat::safetensors, c.key,
                     c.payload, o, {});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("over the budget"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out.safetensors"));
  EXPECT_TRUE(std::all_of(fs::directory_iterator(dir.path()), fs::directory_iterator(),
                          [](const auto& e) { return e.path().extension() == ".safetensors"; }))
      << "temporary files left behind";
}

// A hand-made file whose f32 and bf16 tensors sit at odd offsets (the format allows it).
TEST(Checkpoint, UnalignedTensorsAreStagedAndStillExact) {
  ScratchDir dir;
  const test::Buffer w = test::gaussian("w", DType::f32, {300, 300}, 3);
  const test::Buffer h = test::gaussian("h", DType::bf16, {300, 301}, 4);
  const std::string json = R"({"pad":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                           R"("w":{"dtype":"F32","shape":[300,300],"data_offsets":[4,360004]},)"
                           R"("h":{"dtype":"BF16","shape":[300,301],"data_offsets":[360004,540604]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[static_cast<std::size_t>(i)] = static_cast<char>((json.size() >> (8 * i)) & 0xFF);
  ASSERT_NE((8 + json.size() + 4) % 4, 0u) << "test file happens to be aligned";
  ASSERT_NE((8 + json.size() + 4) % 2, 0u);
  file += json + "abcd";
  file.append(reinterpret_cast<const char*>(w.view.data), w.view.nbytes());
  file.append(reinterpret_cast<const char*>(h.view.data), h.view.nbytes());
  test::spit(dir / "odd.safetensors", file);

  const CheckpointReader reader = CheckpointReader::open(dir / "odd.safetensors", CheckpointFormat::safetensors);
  for (const auto& t : reader.tensors())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.view.data) % dtype_size(t.view.dtype), 0u) << t.name;

  const Claim c = claim(5);
  const auto r = embed_checkpoint(dir / "odd.safetensors", dir / "out.safetensors", CheckpointFormat::safetensors,
                                  c.key, c.payload, strong(), {});
  EXPECT_EQ(r.report.tensors_marked, 2);
  const std::string out = test::slurp(dir / "out.safetensors");
  ASSERT_EQ(out.size(), file.size());
  EXPECT_EQ(out.substr(0, 8 + json.size() + 4), file.substr(0, 8 + json.size() + 4));
  EXPECT_NE(out.substr(8 + json.size() + 4, 1000), file.substr(8 + json.size() + 4, 1000));
  const auto v = verify_checkpoint(dir / "out.safetensors", CheckpointFormat::safetensors, std::vector{c}, strong());
  EXPECT_TRUE(v[0].detected) << v[0].z;
  // Marked values as embed() wrote them: a direct embed of the same tensors agrees bit for bit.
  test::Buffer w2 = w;
  test::Buffer h2 = h;
  std::vector<NamedTensor> direct{{"pad", TensorView::contiguous(file.data() + 8 + json.size(), DType::u8, {4})},
                                  w2.named(), h2.named()};
  embed_in_place(direct, c.key, c.payload, strong());
  EXPECT_EQ(std::memcmp(out.data() + 8 + json.size() + 4, w2.view.data, w2.view.nbytes()), 0);
  EXPECT_EQ(std::memcmp(out.data() + 8 + json.size() + 4 + w2.view.nbytes(), h2.view.data, h2.view.nbytes()), 0);
}

TEST(Checkpoint, ShardedRoundTrip) {
  ScratchDir dir;
  SyntheticCheckpointOptions so;
  so.params = 400'000;
  so.shards = 3;
  const auto made = write_synthetic_checkpoint(dir / "in", so);
  ASSERT_EQ(made.files.size(), 4u);
  EXPECT_EQ(made.files.back(), dir / "in/model.safetensors.index.json");
  const Claim c = claim(7), d = claim(8);

  // Input as the folder, output as a new folder.
  const auto r = embed_checkpoint(dir / "in", dir / "out", CheckpointFormat::safetensors_sharded, c.key, c.payload,
                                  strong(), {});
  ASSERT_EQ(r.outputs.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(r.outputs[i].filename(), made.files[i].filename());
  EXPECT_EQ(test::slurp(dir / "out/model.safetensors.index.json"), test::slurp(made.files.back()));
  for (std::size_t i = 0; i < 3; ++i) {
    SafetensorsFile a(made.files[i]), b(r.outputs[i]);
    EXPECT_EQ(std::memcmp(a.header_bytes().data(), b.header_bytes().data(), a.header_bytes().size()), 0);
  }
  const std::vector<Claim> claims{c, d};
  const auto v = verify_checkpoint(dir / "out/model.safetensors.index.json", CheckpointFormat::safetensors_sharded,
                                   claims, strong());
  EXPECT_TRUE(v[0].detected) << v[0].z;
  EXPECT_FALSE(v[1].detected) << v[1].z;
  EXPECT_EQ(v[0].tensors, r.report.tensors_marked);
  const auto v0 = verify_checkpoint(dir / "in", CheckpointFormat::safetensors_sharded, claims, strong());
  EXPECT_FALSE(v0[0].detected);

  // The output may not be the input's folder.
  EXPECT_THROW(embed_checkpoint(dir / "in", dir / "in", CheckpointFormat::safetensors_sharded, c.key, c.payload,
                                strong(), {true}),
               Error);
  // Output named by its index path.
  embed_checkpoint(made.files.back(), dir / "out2/renamed.safetensors.index.json",
                   CheckpointFormat::safetensors_sharded, c.key, c.payload, strong(), {});
  EXPECT_TRUE(fs::exists(dir / "out2/renamed.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir / "out2" / made.files[0].filename()));
}

TEST(Checkpoint, InconsistentShardsAreRefused) {
  ScratchDir dir;
  SyntheticCheckpointOptions so;
  so.params = 200'000;
  so.shards = 2;
  const auto made = write_synthetic_checkpoint(dir / "m", so);
  const auto s1 = made.files[0].filename().string(), s2 = made.files[1].filename().string();
  const SafetensorsFile f1(made.files[0]);
  const std::string t1 = f1.header().tensors[0].name;
  auto expect_refused = [&](const std::string& index, const char* says) {
    test::spit(dir / "m/bad.safetensors.index.json", index);
    try {
      CheckpointReader::open(dir / "m/bad.safetensors.index.json", CheckpointFormat::safetensors_sharded);
      ADD_FAILURE() << index;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::corrupt_input) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  expect_refused(R"({"weight_map":{")" + t1 + R"(":")" + s1 + R"("}})", "is not in the index's weight_map");
  expect_refused(R"({"weight_map":{"ghost":")" + s1 + R"("}})", "is not in the index's weight_map");
  std::string wm;
  for (const auto& t : f1.header().tensors) wm += "\"" + t.name + "\":\"" + s2 + "\",";
  const SafetensorsFile f2(made.files[1]);
  for (const auto& t : f2.header().tensors) wm += "\"" + t.name + "\":\"" + s2 + "\",";
  wm.pop_back();
  expect_refused(R"({"weight_map":{)" + wm + "}}", "does not hold it");
  std::string wm2;
  for (const auto& t : f1.header().tensors) wm2 += "\"" + t.name + "\":\"" + s1 + "\",";
  for (const auto& t : f2.header().tensors) wm2 += "\"" + t.name + "\":\"" + s2 + "\",";
  wm2 += "\"ghost\":\"" + s2 + "\"";
  expect_refused(R"({"weight_map":{)" + wm2 + "}}", "does not hold it");
  // Same tensors twice: a shard listed under two names.
  fs::copy_file(made.files[0], dir / "m/copy.safetensors");
  std::string wm3;
  for (const auto& t : f1.header().tensors) wm3 += "\"" + t.name + "\":\"copy.safetensors\",";
  for (const auto& t : f2.header().tensors) wm3 += "\"" + t.name + "\":\"" + s2 + "\",";
  wm3 += "\"" + t1 + "\":\"" + s1 + "\"";
  test::spit(dir / "m/dup.safetensors.index.json", R"({"weight_map":{)" + wm3 + "}}");
  EXPECT_THROW(CheckpointReader::open(dir / "m/dup.safetensors.index.json", CheckpointFormat::safetensors_sharded),
               Error);
  try {
    CheckpointReader::open(dir / "m/missing.safetensors.index.json", CheckpointFormat::safetensors_sharded);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
  }
}

TEST(Checkpoint, NpyArrayRoundTrip) {
  ScratchDir dir;
  const test::Buffer a = test::gaussian("x", DType::f32, {400000}, 9);
  write_npy(dir / "a.npy", a.view);
  const Claim c = claim(3);
  const auto r = embed_checkpoint(dir / "a.npy", dir / "b.npy", CheckpointFormat::npy, c.key, c.payload, strong(), {});
  EXPECT_EQ(r.report.tensors_marked, 1);  // rank 1 is eligible for a single array
  const NpyArray in = read_npy(dir / "a.npy"), out = read_npy(dir / "b.npy");
  EXPECT_EQ(in.data_offset, out.data_offset);
  EXPECT_EQ(std::memcmp(in.file->data(), out.file->data(), in.data_offset), 0);
  const auto v = verify_checkpoint(dir / "b.npy", CheckpointFormat::npy, std::vector{c}, strong());
  EXPECT_TRUE(v[0].detected) << v[0].z;
  EXPECT_FALSE(verify_checkpoint(dir / "a.npy", CheckpointFormat::npy, std::vector{c}, strong())[0].detected);
}

TEST(Checkpoint, SyntheticIsDeterministicAndSized) {
  ScratchDir dir;
  SyntheticCheckpointOptions so;
  so.params = 300'000;
  so.dtype = DType::bf16;
  const auto a = write_synthetic_checkpoint(dir / "a.safetensors", so);
  const auto b = write_synthetic_checkpoint(dir / "b.safetensors", so);
  EXPECT_GE(a.params, so.params);
  EXPECT_LT(a.params, 2 * so.params);
  EXPECT_EQ(test::slurp(dir / "a.safetensors"), test::slurp(dir / "b.safetensors"));
  EXPECT_THROW(write_synthetic_checkpoint(dir / "a.safetensors", so), Error);
  so.seed = 2;
  so.overwrite = true;
  write_synthetic_checkpoint(dir / "a.safetensors", so);
  EXPECT_NE(test::slurp(dir / "a.safetensors"), test::slurp(dir / "b.safetensors"));
  const SafetensorsFile f(dir / "b.safetensors");
  bool has_i64 = false;
  for (const auto& t : f.header().tensors) has_i64 = has_i64 || t.dtype == DType::i64;
  EXPECT_TRUE(has_i64);
  EXPECT_EQ(f.header().metadata.front().first, "format");
}

}  // namespace
}  // namespace didmark
