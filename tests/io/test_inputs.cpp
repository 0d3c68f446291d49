// collect_inputs: the file list shared by `didmark scan` and the server.
#include <gtest/gtest.h>

#include <cstdio>

#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/io_test_util.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

void touch(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::FILE* f = std::fopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr) << p;
  std::fclose(f);
}

// A toy classifier: *.st files are ours, "*.index" stands for the two shards named after it,
// anything else is of no known format.
std::vector<fs::path> classify(const fs::path& p) {
  if (p.extension() == ".st") return {};
  if (p.extension() == ".index") return {p.parent_path() / "shard-1.st", p.parent_path() / "shard-2.st"};
  throw Error(Errc::unsupported, "no known format: " + p.string());
}

std::vector<std::string> names(const std::vector<InputFile>& items, const fs::path& root) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(fs::relative(i.path, root).string() + (i.error_code.empty() ? "" : "!" + i.error_code));
  return out;
}

TEST(CollectInputs, WalksFoldersSortedSkipsHiddenAndForeignFilesAndFoldsShards) {
  ScratchDir d;
  for (const char* f : {"b.st", "a.st", "notes.txt", ".hidden.st", ".cache/x.st", "sub/c.st", "model/m.index",
                        "model/shard-1.st", "model/shard-2.st"})
    touch(d / f);
  const std::vector<std::string> paths{d.path().string()};
  EXPECT_EQ(names(collect_inputs(paths, classify), d.path()),
            (std::vector<std::string>{"a.st", "b.st", "model/m.index", "sub/c.st"}));
}

TEST(CollectInputs, ExplicitPathsKeepTheirOrderAndReportWhatCannotBeUsed) {
  ScratchDir d;
  touch(d / "z.st");
  touch(d / "notes.txt");
  const std::vector<std::string> paths{(d / "z.st").string(), (d / "missing.st").string(), (d / "notes.txt").string()};
  const auto items = collect_inputs(paths, classify);
  EXPECT_EQ(names(items, d.path()), (std::vector<std::string>{"z.st", "missing.st!not_found", "notes.txt!unsupported"}));
  EXPECT_NE(items[1].error_message.find("does not exist"), std::string::npos) << items[1].error_message;
  EXPECT_NE(items[2].error_message.find("no known format"), std::string::npos) << items[2].error_message;
}

TEST(CollectInputs, ShardsNamedExplicitlyNextToTheirIndexAreScannedOnce) {
  ScratchDir d;
  for (const char* f : {"m.index", "shard-1.st", "shard-2.st"}) touch(d / f);
  const std::vector<std::string> paths{(d / "shard-1.st").string(), (d / "m.index").string()};
  EXPECT_EQ(names(collect_inputs(paths, classify), d.path()), (std::vector<std::string>{"m.index"}));
}

}  // namespace
}  // namespace didmark
