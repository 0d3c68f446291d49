// Registries: JSON Lines of {"did", "key"}; bad lines refused with their line number.
#include <gtest/gtest.h>

#include <fstream>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

class Registry : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = fs::temp_directory_path() / ("didmark-regtest-" + std::to_string(::getpid()) + "-" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".jsonl");
  }
  void TearDown() override { fs::remove(path_); }
  void write(const std::string& text) {
    std::ofstream o(path_, std::ios::binary | std::ios::trunc);
    o << text;
  }
  std::string error() {
    try {
      load_registry(path_);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::corrupt_input) << e.what();
      return e.what();
    }
    return "(accepted)";
  }
  fs::path path_;
};

const std::string kKeyA(64, 'a');
const std::string kKeyB = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";

TEST_F(Registry, ParsesEntriesSkippingBlankLines) {
  const Identity alice = Identity::generate();
  const RegistryEntry ea{alice.did(), alice.watermark_key()};
  write(registry_line(ea) + "\n\n   \n{\"did\": \"did:web:example.com\", \"key\": \"" + kKeyB +
        "\", \"note\": \"extra fields are kept out of the way\"}\r\n");
  const auto r = load_registry(path_);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].did, alice.did());
  EXPECT_EQ(r[0].key, alice.watermark_key());
  EXPECT_EQ(r[1].did, "did:web:example.com");
  EXPECT_EQ(r[1].key.to_hex(), "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
  EXPECT_EQ(registry_line(ea), "{\"did\":\"" + alice.did() + "\",\"key\":\"" + ea.key.to_hex() + "\"}");
}

TEST_F(Registry, EmptyFileIsAnEmptyRegistry) {
  write("");
  EXPECT_TRUE(load_registry(path_).empty());
}

TEST_F(Registry, BadLinesAreRefusedWithLineNumbers) {
  const std::string good = "{\"did\": \"did:web:a.example\", \"key\": \"" + kKeyA + "\"}\n";
  const std::pair<std::string, std::string> cases[] = {
      {good + "{\"did\": \"did:web:b.example\", \"key\": \"" + kKeyA + "\"\n", ":2: not valid JSON"},
      {good + "\n[1, 2]\n", ":3: expected a JSON object"},
      {good + "{\"key\": \"" + kKeyA + "\"}\n", ":2: field 'did' is missing"},
      {good + "{\"did\": \"did:web:b.example\"}\n", ":2: field 'key' is missing"},
      {good + "{\"did\": \"did:web:b.example\", \"key\": 5}\n", ":2: field 'key' is missing or not a string"},
      {good + "{\"did\": \"web:b.example\", \"key\": \"" + kKeyA + "\"}\n", ":2: invalid DID 'web:b.example'"},
      {good + "{\"did\": \"did:web:b.example\", \"key\": \"abcd\"}\n", ":2: watermark key: expected 64 hex digits"},
      {good + "{\"did\": \"did:web:b.example\", \"key\": \"" + std::string(63, 'a') + "g\"}\n",
       ":2: watermark key: non-hex character at position 63"},
      {good + "{\"did\": \"did:web:b.example\", \"key\": \"" + kKeyB + "\"}\n\n" + good,
       ":4: duplicate DID did:web:a.example (first on line 1)"},
  };
  for (const auto& [text, why] : cases) {
    write(text);
    const std::string e = error();
    EXPECT_NE(e.find(path_.string() + why), std::string::npos) << "expected '" << why << "' in: " << e;
  }
}

TEST_F(Registry, MissingFileIsNotFound) {
  try {
    load_registry(path_.string() + ".nope");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
  }
}

}  // namespace
}  // namespace didmark
