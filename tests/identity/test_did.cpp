// DID parsing, did:key, Ed25519 (RFC 8032) and the watermark-key KDF (RFC 5869).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "identity/base58.hpp"
#include "identity/crypto.hpp"

namespace didmark {
namespace {

std::vector<uint8_t> hex(std::string_view h) { return detail::from_hex(h).value(); }
std::array<uint8_t, 32> hex32(std::string_view h) {
  auto v = hex(h);
  std::array<uint8_t, 32> a{};
  std::copy(v.begin(), v.end(), a.begin());
  return a;
}
std::string error_of(std::string_view did) {
  try {
    parse_did(did);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument) << did;
    return e.what();
  }
  return "(accepted)";
}
int hamming(const WatermarkKey& a, const WatermarkKey& b) {
  int d = 0;
  for (int i = 0; i < 32; ++i) d += __builtin_popcount(a.bytes[i] ^ b.bytes[i]);
  return d;
}

constexpr const char* kZeroSeedDid = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";

TEST(DidKey, AllZeroSeedKnownVector) {
  const std::array<uint8_t, 32> zero{};
  const Identity id = Identity::from_seed(zero);
  EXPECT_EQ(id.did(), kZeroSeedDid);
  const DidInfo info = parse_did(kZeroSeedDid);
  EXPECT_EQ(info.method, "key");
  ASSERT_TRUE(info.ed25519_public.has_value());
  EXPECT_EQ(*info.ed25519_public, id.public_key());
  EXPECT_EQ(did_key_from_ed25519(id.public_key()), kZeroSeedDid);
}

TEST(DidKey, Rfc8032TestVector1SignVerify) {
  const Identity id = Identity::from_seed(hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  EXPECT_EQ(detail::to_hex(id.public_key()), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  const auto sig = id.sign({});
  EXPECT_EQ(detail::to_hex(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0"
            "595bbe24655141438e7a100b");
  EXPECT_TRUE(verify_signature(id.did(), {}, sig));
}

TEST(DidKey, SignVerifyRoundTripAndTamper) {
  const Identity a = Identity::generate(), b = Identity::generate();
  EXPECT_NE(a.did(), b.did());
  EXPECT_EQ(a.did().rfind("did:key:z6Mk", 0), 0u);
  const std::string msg = "pay 5 units";
  const auto m = detail::as_bytes(msg);
  auto sig = a.sign(m);
  EXPECT_TRUE(verify_signature(a.did(), m, sig));
  EXPECT_FALSE(verify_signature(b.did(), m, sig));
  EXPECT_FALSE(verify_signature(a.did(), detail::as_bytes("pay 6 units"), sig));
  EXPECT_FALSE(verify_signature(a.did(), m, std::span<const uint8_t>(sig.data(), 63)));
  sig[10] ^= 4;
  EXPECT_FALSE(verify_signature(a.did(), m, sig));
  EXPECT_THROW(verify_signature("did:web:example.com", m, sig), Error);
}

TEST(Did, OtherMethodsAreOwnerNames) {
  for (std::string_view d : {"did:web:example.com", "did:web:example.com%3A8443:users:alice",
                             "did:ethr:0xb9c5714089478a327f09197987f16f9e5d936e8a",
                             "did:pkh:eip155:1:0xb9c5714089478a327f09197987f16f9e5d936e8a",
                             "did:example:123456789abcdefghi"}) {
    const DidInfo info = parse_did(d);
    EXPECT_EQ(info.did, d);
    EXPECT_FALSE(info.ed25519_public.has_value());
  }
  EXPECT_EQ(parse_did("did:pkh:eip155:1:0xab").method, "pkh");
  // A secp256k1 did:key is a valid owner name, but it cannot sign here.
  const DidInfo k1 = parse_did("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme");
  EXPECT_EQ(k1.method, "key");
  EXPECT_FALSE(k1.ed25519_public.has_value());
}

TEST(Did, MalformedDidsAreRefusedWithTheReason) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", "empty"},
      {"didkey:z6Mk", "starts with 'did:'"},
      {"did:key", "did:<method>:<method-specific-id>"},
      {"did::abc", "method name is empty"},
      {"did:Web:example.com", "character 'W' at position 4 is not allowed in a method name"},
      {"did:web:", "method-specific id is empty"},
      {"did:web:example.com:", "ends with ':'"},
      {"did:web:exa mple.com", "byte 0x20 at position 11"},
      {"did:web:example.com#key-1", "DID URL"},
      {"did:web:example.com/path", "DID URL"},
      {"did:web:a%2", "does not start a %XX escape"},
      {"did:web:a%zz", "does not start a %XX escape"},
      {"did:key:6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", "starting with 'z'"},
      {"did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooW0", "character '0' at position"},
  };
  for (auto [did, why] : cases) {
    const std::string e = error_of(did);
    EXPECT_NE(e.find(why), std::string::npos) << did << " -> " << e;
  }
  EXPECT_NE(error_of(std::string(3000, 'a')).find("longer than"), std::string::npos);
  std::vector<uint8_t> raw(34, 7);
  raw[0] = 0x99;  // multicodec 0x99 is not a public-key type
  raw[1] = 0x01;
  EXPECT_NE(error_of("did:key:z" + detail::base58btc_encode(raw)).find("unknown public-key multicodec 0x99"),
            std::string::npos);
  raw[0] = 0xed;  // Ed25519 with 31 and 33 key bytes
  raw[1] = 0x01;
  EXPECT_NE(error_of("did:key:z" + detail::base58btc_encode(std::span(raw).first(33))).find(
                "ed25519-pub key is 31 bytes, expected 32"),
            std::string::npos);
  raw.push_back(1);
  EXPECT_NE(error_of("did:key:z" + detail::base58btc_encode(raw)).find("ed25519-pub key is 33 bytes"),
            std::string::npos);
  raw[1] = 0x81;  // varint that never ends within 3 bytes
  raw[2] = 0x81;
  EXPECT_NE(error_of("did:key:z" + detail::base58btc_encode(raw)).find("no valid multicodec prefix"),
            std::string::npos);
}

TEST(Kdf, HkdfSha256Rfc5869Vectors) {
  // Test case 1.
  auto okm = detail::hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), hex("000102030405060708090a0b0c"),
                                 hex("f0f1f2f3f4f5f6f7f8f9"), 42);
  EXPECT_EQ(detail::to_hex(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  // Test case 3: empty salt and info.
  okm = detail::hkdf_sha256(hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"), {}, {}, 42);
  EXPECT_EQ(detail::to_hex(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(Kdf, WatermarkKeyKnownVectorAndDeterminism) {
  const std::array<uint8_t, 32> zero{};
  const Identity id = Identity::from_seed(zero);
  // HKDF-SHA256(ikm = 32 zero bytes, salt = "didmark/watermark-key/v1", info = DID), computed
  // independently with Python's hmac/hashlib.
  EXPECT_EQ(id.watermark_key().to_hex(), "6ac412634542c7fe33102da31bc8299430c35760598e12cb8f1c4777e667de47");
  EXPECT_EQ(id.watermark_key(), derive_watermark_key(zero, id.did()));
  EXPECT_EQ(Identity::from_seed(zero).watermark_key(), id.watermark_key());
}

TEST(Kdf, DifferentDidsAndSecretsGiveUnrelatedKeys) {
  std::mt19937_64 rng(11);
  std::set<std::string> seen;
  double sum = 0;
  int n = 0;
  for (int i = 0; i < 500; ++i) {
    std::array<uint8_t, 32> s1{}, s2{};
    for (auto& b : s1) b = static_cast<uint8_t>(rng());
    s2 = s1;
    s2[i % 32] ^= static_cast<uint8_t>(1u << (i % 8));  // one bit apart
    const std::string did = "did:web:example.com:user" + std::to_string(i);
    const WatermarkKey k1 = derive_watermark_key(s1, did);
    const WatermarkKey k2 = derive_watermark_key(s2, did);                    // other secret
    const WatermarkKey k3 = derive_watermark_key(s1, did + "x");              // other DID
    for (const auto* k : {&k1, &k2, &k3}) EXPECT_TRUE(seen.insert(k->to_hex()).second);
    for (int d : {hamming(k1, k2), hamming(k1, k3), hamming(k2, k3)}) {
      EXPECT_GT(d, 80);   // mean 128, sd 8: 6 sd
      EXPECT_LT(d, 176);
      sum += d;
      ++n;
    }
  }
  EXPECT_NEAR(sum / n, 128.0, 1.0);
}

}  // namespace
}  // namespace didmark
