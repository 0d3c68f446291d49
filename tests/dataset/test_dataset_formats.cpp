// The CSV and .npy format handlers of `didmark embed` / `didmark verify`, called directly.
#include <gtest/gtest.h>

#include <filesystem>

#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "formats.hpp"
#include "test_util.hpp"

using namespace didmark;
using namespace didmark::cli;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    path = std::filesystem::temp_directory_path() /
           ("didmark_formats_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

Owner owner(uint64_t seed, const std::string& did) { return Owner{did, test::random_key(seed), test::random_payload(seed + 1)}; }

/// Parse dataset flags the way `didmark embed` would after add_options.
void parse_flags(const FormatHandler& h, std::vector<std::string> args) {
  CLI::App embed("embed"), verify("verify");
  h.add_options(embed, verify);
  std::reverse(args.begin(), args.end());
  embed.parse(args);
}

}  // namespace

TEST(DatasetFormats, Registered) {
  EXPECT_EQ(format_for("a/b.csv", "").name, "csv");
  EXPECT_EQ(format_for("B.CSV", "").name, "csv");
  EXPECT_EQ(format_for("x.npy", "").name, "npy");
  EXPECT_EQ(format_for("x.dat", "csv").name, "csv");
}

TEST(DatasetFormats, CsvEmbedVerify) {
  TempDir d;
  const auto in = d.path / "t.csv", out = d.path / "t.marked.csv";
  CsvTable::parse(synthetic_table_csv(5000, 2)).write(in, {});
  const FormatHandler& h = format_for(in, "");
  parse_flags(h, {"--gamma", "5", "--columns", "income,score"});
  EmbedJob job;
  job.input = in;
  job.output = out;
  job.owner = owner(1, "did:example:alice");
  const EmbedResult r = h.embed(job);
  EXPECT_EQ(r.json["format"], "csv");
  EXPECT_EQ(r.json["gamma"], 5);
  EXPECT_EQ(r.json["columns"], nlohmann::json({"income", "score"}));
  EXPECT_GT(r.json["cells_changed"].get<int64_t>(), 300);
  EXPECT_FALSE(r.text.empty());
  EXPECT_THROW(h.embed(job), Error);  // no overwrite without force
  job.force = true;
  EXPECT_NO_THROW(h.embed(job));

  VerifyJob vj;
  vj.input = out;
  vj.owners = {owner(7, "did:example:bob"), job.owner};
  const auto v = h.verify(vj);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].did, "did:example:bob");
  EXPECT_FALSE(v[0].detected);
  EXPECT_TRUE(v[1].detected);
  EXPECT_EQ(v[1].tensors, 2);
  EXPECT_GT(v[1].elements, 700);
  const auto j = to_json(v[1]);
  for (const char* k : {"did", "detected", "z", "p_value", "bit_errors", "bits", "elements", "tensors", "matches"})
    EXPECT_TRUE(j.contains(k)) << k;
  // A larger gamma or more columns still find the rows the mark used (selection is nested)...
  parse_flags(h, {"--gamma", "10"});
  EXPECT_TRUE(h.verify(vj)[1].detected);
  // ...another row identity does not: the parameters are stored nowhere.
  parse_flags(h, {"--gamma", "5", "--columns", "income,score", "--key-column", "name"});
  EXPECT_FALSE(h.verify(vj)[1].detected);

  job.options.strength = 0.01;
  EXPECT_THROW(h.embed(job), Error);
}

TEST(DatasetFormats, NpyEmbedVerifyWithIds) {
  TempDir d;
  const auto in = d.path / "x.npy", out = d.path / "x.marked.npy", ids = d.path / "ids.npy";
  auto x = synthetic_embeddings(4000, 64, 3);
  write_npy(in, TensorView::contiguous(x.data(), DType::f32, {4000, 64}));
  std::vector<int64_t> id(4000);
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<int64_t>(i * 31 + 5);
  write_npy(ids, TensorView::contiguous(id.data(), DType::i64, {4000}));
  const FormatHandler& h = format_for(in, "");
  EmbedJob job;
  job.input = in;
  job.output = out;
  job.owner = owner(3, "did:example:carol");
  parse_flags(h, {});
  try {
    h.embed(job);
    FAIL() << "embed without row identities";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--fixed-order"), std::string::npos) << e.what();
  }
  parse_flags(h, {"--ids", ids.string()});
  const auto r = h.embed(job);
  EXPECT_GE(r.json["min_cosine"].get<double>(), 0.999);
  EXPECT_EQ(r.json["rows_marked"], 4000);
  VerifyJob vj;
  vj.input = out;
  vj.owners = {job.owner, owner(9, "did:example:dave")};
  auto v = h.verify(vj);
  EXPECT_TRUE(v[0].detected);
  EXPECT_FALSE(v[1].detected);
  EXPECT_EQ(v[0].elements, 4000 * 64);
  // With the wrong identities the mark is gone.
  parse_flags(h, {"--fixed-order"});
  EXPECT_FALSE(h.verify(vj)[0].detected);
  parse_flags(h, {"--fixed-order", "--ids", ids.string()});
  EXPECT_THROW(h.verify(vj), Error);
  job.options.scheme = Scheme::stdm;
  EXPECT_THROW(h.embed(job), Error);
}
