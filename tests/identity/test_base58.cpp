// base58btc against the IETF draft (draft-msporny-base58) and Bitcoin Core's test vectors.
#include <gtest/gtest.h>

#include <random>

#include "didmark/error.hpp"
#include "identity/base58.hpp"
#include "identity/crypto.hpp"

namespace didmark {
namespace {

std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }
std::vector<uint8_t> hex(std::string_view h) { return detail::from_hex(h).value(); }

TEST(Base58, IetfDraftVectors) {
  EXPECT_EQ(detail::base58btc_encode(bytes_of("Hello World!")), "2NEpo7TZRRrLZSi2U");
  EXPECT_EQ(detail::base58btc_encode(bytes_of("The quick brown fox jumps over the lazy dog.")),
            "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z");
  EXPECT_EQ(detail::base58btc_encode(hex("0000287fb4cd")), "11233QC4");
  EXPECT_EQ(detail::base58btc_decode("2NEpo7TZRRrLZSi2U"), bytes_of("Hello World!"));
  EXPECT_EQ(detail::base58btc_decode("11233QC4"), hex("0000287fb4cd"));
}

TEST(Base58, BitcoinVectors) {
  const std::pair<const char*, const char*> v[] = {
      {"", ""},
      {"61", "2g"},
      {"626262", "a3gV"},
      {"636363", "aPEr"},
      {"73696d706c792061206c6f6e6720737472696e67", "2cFupjhnEsSn59qHXstmK2ffpLv2"},
      {"00eb15231dfceb60925886b67d065299925915aeb172c06647", "1NS17iag9jJgTHD1VXjvLCEnZuQ3rJDE9L"},
      {"516b6fcd0f", "ABnLTmg"},
      {"bf4f89001e670274dd", "3SEo3LWLoPntC"},
      {"572e4794", "3EFU7m"},
      {"ecac89cad93923c02321", "EJDM8drfXA6uyA"},
      {"10c8511e", "Rt5zm"},
      {"00000000000000000000", "1111111111"},
  };
  for (auto [h, b58] : v) {
    EXPECT_EQ(detail::base58btc_encode(hex(h)), b58) << h;
    EXPECT_EQ(detail::base58btc_decode(b58), hex(h)) << b58;
  }
}

TEST(Base58, RoundTripRandom) {
  std::mt19937 rng(7);
  for (int n = 0; n < 300; ++n) {
    std::vector<uint8_t> v(rng() % 70);
    for (auto& b : v) b = static_cast<uint8_t>(rng() % 3 == 0 ? 0 : rng());
    EXPECT_EQ(detail::base58btc_decode(detail::base58btc_encode(v)), v);
  }
}

TEST(Base58, RejectsCharactersOutsideTheAlphabet) {
  for (std::string_view bad : {"0abc", "abOc", "abIc", "ablc", "ab c", "ab+c"}) {
    try {
      detail::base58btc_decode(bad);
      ADD_FAILURE() << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("not in the base58btc alphabet"), std::string::npos) << e.what();
    }
  }
  try {
    detail::base58btc_decode("ab0c");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("character '0' at position 2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace didmark
