// Identity files: mode 0600, atomic, refused when others can read them; secrets never in errors.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "identity/crypto.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

class IdentityFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("didmark-idtest-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;

  static void write(const fs::path& p, const std::string& text, mode_t mode = 0600) {
    {
      std::ofstream o(p, std::ios::binary | std::ios::trunc);
      o << text;
    }
    ::chmod(p.c_str(), mode);
  }
  static Error load_error(const fs::path& p) {
    try {
      load_identity(p);
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "load_identity(" << p << ") succeeded";
    return Error(Errc::internal, "");
  }
};

TEST_F(IdentityFile, RoundTripWithMode0600) {
  const Identity id = Identity::generate();
  const fs::path p = dir_ / "alice.id.json";
  save_identity(id, p);
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const Identity back = load_identity(p);
  EXPECT_EQ(back.did(), id.did());
  EXPECT_EQ(back.seed(), id.seed());
  EXPECT_EQ(back.watermark_key(), id.watermark_key());
  // No temporary files left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1);
}

TEST_F(IdentityFile, RefusesToOverwriteUnlessAsked) {
  const fs::path p = dir_ / "id.json";
  const Identity a = Identity::generate(), b = Identity::generate();
  save_identity(a, p);
  try {
    save_identity(b, p);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  EXPECT_EQ(load_identity(p).did(), a.did());
  save_identity(b, p, /*overwrite=*/true);
  EXPECT_EQ(load_identity(p).did(), b.did());
}

TEST_F(IdentityFile, RefusesFilesOthersCanRead) {
  const Identity id = Identity::generate();
  const std::string seed_hex = detail::to_hex(id.seed());
  const fs::path p = dir_ / "id.json";
  save_identity(id, p);
  for (mode_t mode : {0644, 0640, 0604, 0660, 0620}) {
    ::chmod(p.c_str(), mode);
    const Error e = load_error(p);
    EXPECT_EQ(e.code(), Errc::permission);
    const std::string msg = e.what();
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_NE(msg.find(std::string("has mode ") + octal), std::string::npos) << msg;
    EXPECT_NE(msg.find("chmod 600"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(seed_hex), std::string::npos);
  }
  ::chmod(p.c_str(), 0400);
  EXPECT_EQ(load_identity(p).did(), id.did());
}

TEST_F(IdentityFile, MissingAndMalformedFiles) {
  EXPECT_EQ(load_error(dir_ / "nope.json").code(), Errc::not_found);

  const Identity id = Identity::generate();
  const std::string seed_hex = detail::to_hex(id.seed());
  const fs::path p = dir_ / "bad.json";
  auto expect_corrupt = [&](const std::string& text, std::string_view why) {
    write(p, text);
    const Error e = load_error(p);
    EXPECT_EQ(e.code(), Errc::corrupt_input) << text;
    const std::string msg = e.what();
    EXPECT_NE(msg.find(why), std::string::npos) << msg;
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(seed_hex), std::string::npos) << "secret leaked: " << msg;
    EXPECT_EQ(msg.find(seed_hex.substr(0, 10)), std::string::npos) << "secret leaked: " << msg;
  };
  const std::string good_head = "{\"format\": \"didmark-identity\", \"version\": 1, \"did\": \"" + id.did() + "\", ";
  // A syntax error right after the secret: the parser's message would quote it.
  expect_corrupt(good_head + "\"ed25519_seed\": \"" + seed_hex + "\" oops}", "is not a JSON object");
  expect_corrupt("[1,2]", "is not a JSON object");
  expect_corrupt(good_head + "\"ed25519_seed\": \"" + seed_hex.substr(0, 62) + "zz\"}", "is not 64 hex digits");
  expect_corrupt(good_head + "\"ed25519_seed\": \"" + seed_hex + "00\"}", "is not 64 hex digits");
  expect_corrupt(good_head + "\"ed25519_seed\": 5}", "field 'ed25519_seed' is not a string");
  expect_corrupt("{\"format\": \"didmark-identity\", \"version\": 1, \"ed25519_seed\": \"" + seed_hex + "\"}",
                 "field 'did' is missing");
  expect_corrupt("{\"format\": \"other\", \"version\": 1}", "field 'format' is 'other'");
  expect_corrupt("{\"format\": \"didmark-identity\", \"version\": 2}", "field 'version' must be 1");
  const Identity other = Identity::generate();
  expect_corrupt("{\"format\": \"didmark-identity\", \"version\": 1, \"did\": \"" + other.did() +
                     "\", \"ed25519_seed\": \"" + seed_hex + "\"}",
                 "does not belong to the stored secret");
}

}  // namespace
}  // namespace didmark
