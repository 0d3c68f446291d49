// Weights files and policy files: what is accepted, and bad input refused with file and key.
#include <gtest/gtest.h>

#include <fstream>

#include "didmark/error.hpp"
#include "royalty_test_util.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

class Files : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("didmark-royalty-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  static std::string error_of(const std::function<void()>& f, Errc want = Errc::corrupt_input) {
    try {
      f();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), want) << e.what();
      return e.what();
    }
    return "(no error)";
  }
  fs::path dir_;
};

TEST_F(Files, WeightsFile) {
  const auto ps = load_weights(write("w.json", R"({"did:web:b.example": 30, "did:web:a.example": 70.5,
      "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp": "0.125", "did:web:c.example": -2})"));
  ASSERT_EQ(ps.size(), 4u);
  const auto m = test::as_map(split(1000, ps));
  EXPECT_EQ(m.at("did:web:c.example"), 0u);  // clipped
  EXPECT_EQ(ps[2].weight.is_decimal(), true);
  EXPECT_TRUE(load_weights(write("e.json", "{}")).empty());
  EXPECT_EQ(load_weights(write("big.json", R"({"did:web:a": 9007199254740992, "did:web:b": 18014398509481988})")).size(), 2u);
}

TEST_F(Files, BadWeightsFiles) {
  const std::pair<std::string, std::string> cases[] = {
      {R"({"did:web:a": 1, "did:web:a": 2})", "payee did:web:a is listed twice"},
      {R"({"alice": 1})", "invalid DID 'alice'"},
      {R"({"did:web:a": [1]})", "payee did:web:a: the weight is an array"},
      {R"({"did:web:a": true})", "payee did:web:a: the weight is a boolean"},
      {R"({"did:web:a": null})", "payee did:web:a: the weight is null"},
      {R"({"did:web:a": {"w": 1}})", "payee did:web:a: the weight is an object"},
      {R"({"did:web:a": "lots"})", "payee did:web:a: weight \"lots\" is not a decimal number"},
      {R"([1, 2])", "expected an object mapping payee DIDs to weights"},
      {R"({"did:web:a": 1,})", "not valid JSON (syntax error at byte"},
      {R"({"did:web:a": 9007199254740993})", "the integer 9007199254740993 is not exactly a JSON number"},
  };
  for (const auto& [text, why] : cases) {
    const fs::path p = write("bad.json", text);
    const std::string e = error_of([&] { load_weights(p); });
    EXPECT_NE(e.find(why), std::string::npos) << text << " -> " << e;
    EXPECT_NE(e.find("bad.json"), std::string::npos) << e;
  }
  error_of([&] { load_weights(dir_ / "missing.json"); }, Errc::not_found);
}

TEST_F(Files, PolicyFile) {
  write("lineage.json", R"({"did:web:base-a.example": 0.75, "did:web:base-b.example": 0.25})");
  const fs::path p = write("policy.json", R"({
    "version": 1,
    "negative_weights": "shift",
    "fallback": "did:web:market.example",
    "levels": [
      {"name": "platform fee", "keep_bps": 1000, "weights": {"did:web:market.example": 1}},
      {"name": "base models", "keep_bps": 3000, "weights_file": "lineage.json"},
      {"name": "data", "weights": "input", "comment": "attribution scores"}
    ]})");
  const std::vector<Payee> input = test::payees_of({{"did:web:alice.example", 2}, {"did:web:bob.example", -1}});
  const Policy pol = load_policy(p, input);
  ASSERT_EQ(pol.levels.size(), 3u);
  EXPECT_EQ(pol.negative, NegativeWeights::shift);
  EXPECT_EQ(*pol.fallback, "did:web:market.example");
  EXPECT_EQ(pol.levels[1].payees.size(), 2u);
  EXPECT_EQ(pol.levels[2].payees.size(), 2u);
  const auto r = run_cascade(10000, pol);
  EXPECT_EQ(r.levels[0].kept, 1000u);
  EXPECT_EQ(r.levels[1].kept, 2700u);
  EXPECT_EQ(test::as_map(r.levels[1].payouts).at("did:web:base-a.example"), 2025u);
  EXPECT_EQ(test::as_map(r.levels[2].payouts).at("did:web:alice.example"), 6300u);  // shift: 3 and 0
}

TEST_F(Files, BadPolicyFiles) {
  const std::pair<std::string, std::string> cases[] = {
      {R"({"levels": []})", "'levels' must be a non-empty array"},
      {R"({"levels": [{"weights": "input"}], "fee": 1})", "unknown field 'fee'"},
      {R"({"levels": [{"weights": "input", "keep_bp": 10}]})", "levels[0]: unknown field 'keep_bp'"},
      {R"({"levels": [{"weights": "input"}, {"weights": "input"}]})", "levels[0]: 'keep_bps' is required"},
      {R"({"levels": [{"weights": "input", "keep_bps": 500}]})", "levels[0] is the last level"},
      {R"({"levels": [{"weights": "input", "keep_bps": 10001}, {"weights": "input"}]})", "0..10000"},
      {R"({"levels": [{"weights": "input", "weights_file": "x.json"}]})", "exactly one of 'weights' and 'weights_file'"},
      {R"({"levels": [{"weights": "everyone"}]})", "or the string \"input\""},
      {R"({"levels": [{"weights": {"did:web:a": 1, "did:web:a": 2}}]})", "key 'did:web:a' appears twice"},
      {R"({"negative_weights": "abs", "levels": [{"weights": "input"}]})", "'negative_weights' must be"},
      {R"({"fallback": "platform", "levels": [{"weights": "input"}]})", "'fallback': invalid DID 'platform'"},
      {R"({"levels": [{"weights": {"did:web:a": "x"}}]})", "levels[0].weights: payee did:web:a"},
      {R"({"levels": [{"weights_file": "nope.json"}]})", "does not exist"},
  };
  const std::vector<Payee> input = test::payees_of({{"did:web:alice.example", 1}});
  for (const auto& [text, why] : cases) {
    const fs::path p = write("policy.json", text);
    std::string e;
    try {
      load_policy(p, input);
      e = "(no error)";
    } catch (const Error& err) {
      e = err.what();
    }
    EXPECT_NE(e.find(why), std::string::npos) << text << " -> " << e;
  }
  // A policy that never uses the input weights would silently ignore them: refused.
  const fs::path p = write("inline.json", R"({"levels": [{"weights": {"did:web:a.example": 1}}]})");
  EXPECT_NE(error_of([&] { load_policy(p, input); }, Errc::invalid_argument).find("never uses the input weights"),
            std::string::npos);
  EXPECT_EQ(load_policy(p, {}).levels.size(), 1u);
}

}  // namespace
}  // namespace didmark
