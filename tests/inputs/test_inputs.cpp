// The one classifier, verifier, embedder and scan driver that the CLI, the server and Python
// share (include/didmark/inputs.hpp): what a file is, by content before name; every kind of
// input embedded and verified through one entry point; scans in path order.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <numeric>

#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "didmark/io.hpp"
#include "io/io_test_util.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

Owner owner(uint64_t seed, const std::string& did) { return Owner{did, test::random_key(seed), test::random_payload(seed + 1)}; }

void small_checkpoint(const fs::path& p, uint64_t seed = 1) {
  const test::Buffer w = test::gaussian("layer.0.weight", DType::f32, {512, 512}, seed);
  const test::Buffer b = test::gaussian("layer.0.bias", DType::f32, {512}, seed + 1);
  const std::vector<NamedTensor> t{w.named(), b.named()};
  write_safetensors(p, t);
}

TEST(Inputs, FormatsAreKnownByContentBeforeName) {
  ScratchDir d;
  small_checkpoint(d / "model.safetensors");
  fs::copy_file(d / "model.safetensors", d / "model.bin");  // a safetensors file under a torch name
  auto x = synthetic_embeddings(10, 4, 1);
  write_npy(d / "emb.npy", TensorView::contiguous(x.data(), DType::f32, {10, 4}));
  fs::copy_file(d / "emb.npy", d / "emb.dat");
  test::spit(d / "t.csv", "id,v\n1,2\n");
  test::spit(d / "notes.txt", "hello");
  test::spit(d / "fake.safetensors", "not really");
  EXPECT_EQ(classify_input(d / "model.safetensors").name, "safetensors");
  EXPECT_EQ(classify_input(d / "model.bin").name, "safetensors");
  EXPECT_EQ(classify_input(d / "emb.npy").name, "npy");
  EXPECT_EQ(classify_input(d / "emb.npy").kind, InputKind::array);
  EXPECT_EQ(classify_input(d / "emb.dat").name, "npy");
  EXPECT_EQ(classify_input(d / "t.csv").kind, InputKind::table);
  // Names decide only when the content says nothing; the reader then says what is wrong.
  EXPECT_EQ(classify_input(d / "fake.safetensors").name, "safetensors");
  EXPECT_NE(test::error_of([&] { classify_input(d / "notes.txt"); }).find("--format"), std::string::npos);
  EXPECT_NE(test::error_of([&] { classify_input(d / "missing.npy"); }).find("does not exist"), std::string::npos);
  // Forced formats.
  EXPECT_EQ(classify_input(d / "emb.npy", "npy-tensor").kind, InputKind::checkpoint);
  EXPECT_EQ(classify_input(d / "notes.txt", "csv").kind, InputKind::table);
  EXPECT_NE(test::error_of([&] { classify_input(d / "t.csv", "parquet"); }).find("not one of"), std::string::npos);
}

TEST(Inputs, AFifoIsRefusedWithoutBlocking) {
  ScratchDir d;
  const fs::path fifo = d / "upload.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_NE(test::error_of([&] { classify_input(fifo); }).find("not a regular file"), std::string::npos);
}

TEST(Inputs, ShardedCheckpointsAreOneInputWithParts) {
  ScratchDir d;
  SyntheticCheckpointOptions o;
  o.params = 200'000;
  o.hidden = 64;
  o.shards = 2;
  write_synthetic_checkpoint(d / "m", o);
  const InputFormat f = classify_input(d / "m");
  EXPECT_EQ(f.name, "safetensors");
  EXPECT_EQ(f.checkpoint, CheckpointFormat::safetensors_sharded);
  EXPECT_EQ(input_parts(d / "m", f).size(), 2u);
  EXPECT_TRUE(input_parts(d / "m" / "model-00001-of-00002.safetensors",
                          classify_input(d / "m" / "model-00001-of-00002.safetensors"))
                  .empty());
}

TEST(Inputs, OwnersOfARegistry) {
  const std::vector<RegistryEntry> reg{{"did:example:a", test::random_key(1)}, {"did:example:b", test::random_key(2)}};
  EXPECT_EQ(owners_of(reg).size(), 2u);
  const auto b = owners_of(reg, "did:example:b");
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].payload.bits, did_codeword("did:example:b").bits);
  EXPECT_NE(test::error_of([&] { owners_of(reg, "did:example:c", "registry 'r.jsonl'"); }).find("registry 'r.jsonl'"),
            std::string::npos);
  EXPECT_THROW(owners_of({}), Error);
}

TEST(Inputs, CheckpointEmbedVerifyAndInMemoryBytesAgree) {
  ScratchDir d;
  small_checkpoint(d / "m.safetensors");
  const Owner alice = owner(1, "did:example:alice"), bob = owner(3, "did:example:bob");
  InputOptions o;
  o.watermark.set_strength(0.02);
  const InputEmbedReport r = embed_input(d / "m.safetensors", d / "m.marked.safetensors", alice, o);
  ASSERT_TRUE(r.checkpoint);
  EXPECT_EQ(r.checkpoint->report.tensors_marked, 1);  // the bias is skipped by the policy
  EXPECT_THROW(embed_input(d / "m.safetensors", d / "m.marked.safetensors", alice, o), Error);  // exists
  EXPECT_THROW(embed_input(d / "m.safetensors", d / "m.safetensors", alice, o, {true}), Error);  // the input

  const std::vector<Owner> owners{bob, alice};
  const FileVerdicts fv = verify_input(d / "m.marked.safetensors", owners, o);
  ASSERT_EQ(fv.verdicts.size(), 2u);
  EXPECT_EQ(fv.verdicts[0].status, VerdictStatus::not_detected);
  EXPECT_EQ(fv.verdicts[1].status, VerdictStatus::detected);
  EXPECT_TRUE(fv.verdicts[1].weights.has_value());
  EXPECT_EQ(fv.verdicts[1].elements, 512 * 512);

  const FileVerdicts mem =
      verify_safetensors_bytes(test::slurp(d / "m.marked.safetensors"), "<inline>", owners, o);
  EXPECT_EQ(mem.path, "<inline>");
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(mem.verdicts[i].z, fv.verdicts[i].z);
    EXPECT_EQ(mem.verdicts[i].detected, fv.verdicts[i].detected);
  }
  const std::string bad = test::error_of([&] { verify_safetensors_bytes("\x10\0\0\0\0\0\0\0{}", "<inline>", owners, o); });
  EXPECT_NE(bad.find("<inline>"), std::string::npos) << bad;
}

TEST(Inputs, NothingEligibleIsItsOwnStatus) {
  ScratchDir d;
  const test::Buffer b = test::gaussian("only.bias", DType::f32, {64}, 1);
  const std::vector<NamedTensor> t{b.named()};
  write_safetensors(d / "tiny.safetensors", t);
  const Owner alice = owner(1, "did:example:alice");
  const FileVerdicts fv = verify_input(d / "tiny.safetensors", std::span(&alice, 1), InputOptions());
  EXPECT_EQ(fv.verdicts[0].status, VerdictStatus::no_eligible_data);
  EXPECT_FALSE(fv.verdicts[0].detected);
  EXPECT_EQ(verdict_status_name(fv.verdicts[0].status), "no_eligible_data");
}

TEST(Inputs, CsvEmbedVerifyWithTableOptions) {
  ScratchDir d;
  const auto in = d / "t.csv", out = d / "t.marked.csv";
  CsvTable::parse(synthetic_table_csv(5000, 2)).write(in, {});
  const Owner alice = owner(1, "did:example:alice"), bob = owner(7, "did:example:bob");
  InputOptions o;
  o.table.gamma = 5;
  o.table.columns = {"income", "score"};
  const InputEmbedReport r = embed_input(in, out, alice, o);
  ASSERT_TRUE(r.table);
  EXPECT_EQ(r.table->gamma, 5u);
  EXPECT_EQ(r.table->columns, (std::vector<std::string>{"income", "score"}));
  EXPECT_GT(r.table->cells_changed, 300);
  EXPECT_THROW(embed_input(in, out, alice, o), Error);  // no overwrite without force
  EXPECT_NO_THROW(embed_input(in, out, alice, o, {true}));

  const std::vector<Owner> owners{bob, alice};
  auto v = verify_input(out, owners, o).verdicts;
  EXPECT_FALSE(v[0].detected);
  EXPECT_TRUE(v[1].detected);
  EXPECT_EQ(v[1].tensors, 2);
  EXPECT_GT(v[1].elements, 700);
  ASSERT_TRUE(v[1].table);
  EXPECT_EQ(v[1].table->marked_rows, v[1].elements);
  // A larger gamma or more columns still find the rows the mark used (selection is nested)...
  InputOptions wider;
  wider.table.gamma = 10;
  EXPECT_TRUE(verify_input(out, owners, wider).verdicts[1].detected);
  // ...another row identity does not: the parameters are stored nowhere.
  InputOptions other = o;
  other.table.key_columns = {"name"};
  EXPECT_FALSE(verify_input(out, owners, other).verdicts[1].detected);
  InputOptions strong = o;
  strong.watermark.strength = 0.01;
  EXPECT_NE(test::error_of([&] { embed_input(in, d / "x.csv", alice, strong); }).find("--strength does not apply"),
            std::string::npos);
}

TEST(Inputs, ArraysTakeIdsFromFlagSidecarOrRowIndex) {
  ScratchDir d;
  const auto in = d / "x.npy", out = d / "x.marked.npy", ids = d / "ids.npy";
  auto x = synthetic_embeddings(4000, 64, 3);
  write_npy(in, TensorView::contiguous(x.data(), DType::f32, {4000, 64}));
  std::vector<int64_t> id(4000);
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<int64_t>(i * 31 + 5);
  write_npy(ids, TensorView::contiguous(id.data(), DType::i64, {4000}));
  const Owner carol = owner(3, "did:example:carol"), dave = owner(9, "did:example:dave");
  EXPECT_NE(test::error_of([&] { embed_input(in, out, carol, InputOptions()); }).find("--fixed-order"), std::string::npos);
  InputOptions o;
  o.ids = ids;
  const InputEmbedReport r = embed_input(in, out, carol, o);
  ASSERT_TRUE(r.array);
  EXPECT_GE(r.array->min_cosine, 0.999);
  EXPECT_EQ(r.array->rows_marked, 4000);
  EXPECT_EQ(r.row_identity, "ids from " + ids.string());

  const std::vector<Owner> owners{carol, dave};
  auto v = verify_input(out, owners, o).verdicts;
  EXPECT_TRUE(v[0].detected);
  EXPECT_FALSE(v[1].detected);
  EXPECT_EQ(v[0].elements, 4000 * 64);
  // The sidecar beside the array is found without --ids.
  fs::copy_file(ids, d / "x.marked.ids.npy");
  EXPECT_TRUE(verify_input(out, owners, InputOptions()).verdicts[0].detected);
  // With the wrong identities the mark is gone.
  InputOptions fixed;
  fixed.fixed_order = true;
  EXPECT_FALSE(verify_input(out, owners, fixed).verdicts[0].detected);
  InputOptions both = o;
  both.fixed_order = true;
  EXPECT_THROW(verify_input(out, owners, both), Error);
  InputOptions stdm = o;
  stdm.watermark.scheme = Scheme::stdm;
  EXPECT_THROW(embed_input(in, d / "y.npy", carol, stdm), Error);
}

TEST(Inputs, ScanReportsInPathOrderWithErrorsAndHonoursStop) {
  ScratchDir d;
  const Owner alice = owner(1, "did:example:alice");
  InputOptions o;
  o.watermark.set_strength(0.02);
  for (int i = 0; i < 6; ++i) small_checkpoint(d / ("m" + std::to_string(i) + ".safetensors"), 10 + static_cast<uint64_t>(i));
  embed_input(d / "m2.safetensors", d / "m2x.safetensors", alice, o);
  test::spit(d / "broken.safetensors", std::string("\x40\0\0\0\0\0\0\0{", 9));
  test::spit(d / "README.txt", "not an input");
  for (int jobs : {1, 3}) {
    std::vector<std::string> seen;
    std::size_t detected = 0, errors = 0;
    ScanOptions so;
    so.jobs = jobs;
    const std::vector<std::string> paths{d.path().string()};
    const std::size_t n = scan_inputs(paths, std::span(&alice, 1), o, so, default_backend(), [&](ScanItem&& it) {
      EXPECT_EQ(it.index, seen.size());
      seen.push_back(it.path.filename().string());
      if (it.verdicts && it.verdicts->verdicts[0].detected) ++detected;
      if (!it.error_code.empty()) ++errors;
      return true;
    });
    EXPECT_EQ(n, 8u);  // README.txt is not an input
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
    EXPECT_EQ(detected, 1u);
    EXPECT_EQ(errors, 1u);  // broken.safetensors, reported and passed
  }
  std::size_t calls = 0;
  const std::vector<std::string> paths{d.path().string()};
  scan_inputs(paths, std::span(&alice, 1), o, {}, default_backend(), [&](ScanItem&&) { return ++calls < 2; });
  EXPECT_EQ(calls, 2u);
}

}  // namespace
}  // namespace didmark
