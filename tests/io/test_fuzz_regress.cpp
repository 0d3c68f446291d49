// Every input the fuzzers ever found (and every reproduction of issue 20) replayed through
// the same target bodies as the fuzzers (tests/fuzz/fuzz_targets.hpp), so that the normal
// suite, built without clang, catches a regression. New crash inputs go to
// tests/data/<kind>/regress/ (scripts/fuzz.sh says so when it finds one).
#include <gtest/gtest.h>

#include <chrono>

#include "fuzz/fuzz_targets.hpp"
#include "io/io_test_util.hpp"

namespace didmark {
namespace {

struct Kind {
  const char* folder;
  bool (*target)(std::span<const uint8_t>);
};

const Kind kKinds[] = {
    {"safetensors", fuzz::safetensors_header}, {"pickle", fuzz::torch_pickle}, {"torch", fuzz::torch_archive},
    {"csv", fuzz::csv},                       {"npy", fuzz::npy_header},      {"identity", fuzz::identity_file},
    {"registry", fuzz::registry},   {"image", fuzz::image},
};

TEST(FuzzRegress, EveryKeptInputRunsCleanly) {
  std::size_t replayed = 0;
  for (const auto& k : kKinds) {
    for (const char* sub : {"regress", ""}) {
      const auto dir = test::test_data(std::string(k.folder) + (*sub ? "/" : "") + sub);
      std::error_code ec;
      if (!std::filesystem::is_directory(dir, ec)) continue;
      for (const auto& e : std::filesystem::directory_iterator(dir)) {
        if (!e.is_regular_file() || e.path().extension() == ".py" || e.path().extension() == ".md") continue;
        const std::string bytes = test::slurp(e.path());
        const auto t0 = std::chrono::steady_clock::now();
        EXPECT_TRUE(k.target(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())))
            << k.folder << ": " << e.path();
        EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 2.0 * test::kSlowdown)
            << e.path();
        ++replayed;
      }
    }
  }
  EXPECT_GE(replayed, 40u);
}

}  // namespace
}  // namespace didmark
