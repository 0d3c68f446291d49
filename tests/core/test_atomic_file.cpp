#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/atomic_file.hpp"
#include "didmark/error.hpp"

namespace fs = std::filesystem;
using didmark::detail::AtomicFile;

namespace {
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("didmark-atomic-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.push_back(e.path().filename().string());
    return out;
  }
};
std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST(AtomicFile, CommitCreatesTheTargetWithItsMode) {
  TempDir d;
  {
    AtomicFile f(d.path / "out.txt", false, 0600);
    f.write("hello");
    EXPECT_TRUE(d.entries().empty() || d.entries()[0].rfind(".out.txt.didmark-tmp-", 0) == 0);
    f.commit();
  }
  EXPECT_EQ(read(d.path / "out.txt"), "hello");
  struct stat st {};
  ASSERT_EQ(::stat((d.path / "out.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(d.entries(), std::vector<std::string>{"out.txt"});
}

TEST(AtomicFile, AbandonedWriteLeavesNothing) {
  TempDir d;
  {
    AtomicFile f(d.path / "out.txt");
    f.write("partial");
  }
  EXPECT_TRUE(d.entries().empty());
}

TEST(AtomicFile, NeverClobbersWithoutOverwrite) {
  TempDir d;
  didmark::detail::write_file_atomically(d.path / "keep.txt", "original", false);
  EXPECT_THROW(AtomicFile(d.path / "keep.txt", false), didmark::Error);
  // The target appears between creation and commit: the commit refuses, the file survives.
  AtomicFile late(d.path / "late.txt", false);
  late.write("mine");
  didmark::detail::write_file_atomically(d.path / "late.txt", "theirs", false);
  try {
    late.commit();
    FAIL() << "commit replaced a file that appeared meanwhile";
  } catch (const didmark::Error& e) {
    EXPECT_EQ(e.code(), didmark::Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  EXPECT_EQ(read(d.path / "late.txt"), "theirs");
  EXPECT_EQ(read(d.path / "keep.txt"), "original");
}

TEST(AtomicFile, OverwriteReplacesInOneStep) {
  TempDir d;
  didmark::detail::write_file_atomically(d.path / "f.txt", "old", true);
  didmark::detail::write_file_atomically(d.path / "f.txt", "new contents", true);
  EXPECT_EQ(read(d.path / "f.txt"), "new contents");
  EXPECT_EQ(d.entries(), std::vector<std::string>{"f.txt"});
}
