#pragma once
// Scratch folders and file helpers for the io tests.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <cstdio>
#include <string>

namespace didmark::test {

/// How much slower a sanitizer build runs: time limits in tests are multiplied by it. The
/// limits stay far below what the quadratic or backtracking code they guard against took.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr double kSlowdown = 8;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr double kSlowdown = 8;
#else
inline constexpr double kSlowdown = 1;
#endif
#else
inline constexpr double kSlowdown = 1;
#endif

/// A fresh folder under the test temp dir, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "didmark-io-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// stdio rather than streams: GCC 12 warns (-Wnull-dereference) inside istreambuf_iterator.
inline std::string slurp(const std::filesystem::path& p) {
  std::string out;
  if (FILE* f = std::fopen(p.c_str(), "rb")) {
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    std::fclose(f);
  }
  return out;
}

inline void spit(const std::filesystem::path& p, const std::string& bytes) {
  FILE* f = std::fopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr) << p;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
}

inline std::filesystem::path test_data(const std::string& rel) {
  const char* d = std::getenv("DIDMARK_TEST_DATA");
  return std::filesystem::path(d ? d : "tests/data") / rel;
}

}  // namespace didmark::test
