// Tensor selection by client-chosen patterns (issue 20): linear time whatever the pattern and
// the names (RE2), same semantics as before for the patterns people write.
#include <gtest/gtest.h>

#include <chrono>

#include "didmark/error.hpp"
#include "didmark/limits.hpp"
#include "io/io_test_util.hpp"
#include "test_util.hpp"
#include "watermark/eligibility.hpp"

namespace didmark {
namespace {

using Clock = std::chrono::steady_clock;

struct Set {
  std::vector<float> data = std::vector<float>(64 * 64, 1.0f);
  std::vector<NamedTensor> tensors;
  void add(std::string name) { tensors.push_back({std::move(name), TensorView::contiguous(data.data(), DType::f32, {64, 64})}); }
};

std::vector<bool> eligible(const Set& s, const EligibilityPolicy& p) {
  std::vector<bool> out;
  for (const auto& sel : detail::select_tensors(s.tensors, p)) out.push_back(sel.eligible);
  return out;
}

TEST(TensorSelection, SameSemanticsAsBefore) {
  Set s;
  for (const char* n : {"model.layers.0.mlp.up_proj.weight", "model.layers.0.input_LayerNorm.weight", "lm_head.bias",
                        "transformer.ln_f.weight", "transformer.wpe.weight", "encoder.MLP.fc.weight"})
    s.add(n);
  EligibilityPolicy p;
  EXPECT_EQ(eligible(s, p), (std::vector<bool>{true, false, false, false, false, true}));  // skips: case-insensitive
  p.include_regex = "mlp";  // searched anywhere, case-sensitive
  EXPECT_EQ(eligible(s, p), (std::vector<bool>{true, false, false, false, false, false}));
  p.include_regex = "^encoder\\.";
  EXPECT_EQ(eligible(s, p), (std::vector<bool>{false, false, false, false, false, true}));
  p.include_regex = "(up|fc)_?(proj)?\\.weight$";
  EXPECT_EQ(eligible(s, p), (std::vector<bool>{true, false, false, false, false, true}));
}

TEST(TensorSelection, CatastrophicPatternsAndLongNamesRunInLinearTime) {
  // ^(([a-z._0-9]*)*)*X$ pinned a core for minutes under std::regex; (a|b)*c over a 100k
  // name overflowed its stack.
  Set s;
  std::string ab;
  for (int i = 0; i < 30000; ++i) ab += "ab";  // 60k characters, under kMaxTensorNameBytes
  s.add(ab);
  s.add(ab + "c");
  s.add(std::string(60000, 'a') + ".y");
  s.add(std::string(100000, 'a') + "c");  // over the name limit: never eligible
  EligibilityPolicy p;
  p.skip_patterns.clear();
  for (const char* pattern : {"^(([a-z._0-9]*)*)*X$", "(a|b)*c", "(a*)*b", "^(a|aa)+$", "(.*a){20}"}) {
    p.include_regex = pattern;
    const auto t0 = Clock::now();
    const auto sel = detail::select_tensors(s.tensors, p);
    const double ms = 1e3 * std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_LT(ms, 200 * test::kSlowdown) << pattern;
    EXPECT_FALSE(sel[3].eligible);
    EXPECT_NE(sel[3].reason.find("kMaxTensorNameBytes"), std::string::npos) << sel[3].reason;
  }
  p.include_regex = "(a|b)*c";
  EXPECT_EQ(eligible(s, p), (std::vector<bool>{false, true, false, false}));
  // The same patterns as skip patterns (case-insensitive).
  p.include_regex.clear();
  p.skip_patterns = {"^(([a-z._0-9]*)*)*X$", "(A|B)*C"};
  const auto t0 = Clock::now();
  EXPECT_EQ(eligible(s, p), (std::vector<bool>{true, false, true, false}));
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 0.2 * test::kSlowdown);
}

TEST(TensorSelection, PatternsAreBoundedAndErrorsEscaped) {
  Set s;
  s.add("w");
  EligibilityPolicy p;
  p.include_regex = std::string(kMaxTensorPatternBytes + 1, 'a');
  EXPECT_NE(test::error_of([&] { detail::select_tensors(s.tensors, p); }).find("kMaxTensorPatternBytes"),
            std::string::npos);
  p.include_regex = "(\x1b[31m";
  const std::string m = test::error_of([&] { detail::select_tensors(s.tensors, p); });
  EXPECT_NE(m.find("not a valid regular expression"), std::string::npos) << m;
  EXPECT_EQ(m.find('\x1b'), std::string::npos) << m;
  p.include_regex = "(a)\\1";  // a backreference: not in RE2, said so
  EXPECT_NE(test::error_of([&] { detail::select_tensors(s.tensors, p); }).find("no backreferences"),
            std::string::npos);
  p.include_regex.clear();
  p.names = {"missing\x07"};
  EXPECT_EQ(test::error_of([&] { detail::select_tensors(s.tensors, p); }).find('\x07'), std::string::npos);
}

}  // namespace
}  // namespace didmark
