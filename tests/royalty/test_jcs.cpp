// RFC 8785 canonical JSON (the RFC's own examples) and the eddsa-jcs-2022 test vector of
// W3C vc-di-eddsa (TestVectors/eddsa-jcs-2022, signedJCS.json and keyPair.json).
#include <gtest/gtest.h>

#include <cstring>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"
#include "identity/base58.hpp"
#include "identity/crypto.hpp"
#include "royalty/data_integrity.hpp"
#include "royalty/jcs.hpp"

namespace didmark {
namespace {

double from_bits(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::string number(double v) {
  std::string s;
  detail::jcs_append_number(s, v);
  return s;
}

TEST(Jcs, Rfc8785NumberSerialization) {
  // RFC 8785 Appendix B (IEEE 754 bits -> ECMAScript text).
  const std::pair<uint64_t, const char*> v[] = {
      {0x0000000000000000, "0"},
      {0x8000000000000000, "0"},
      {0x0000000000000001, "5e-324"},
      {0x8000000000000001, "-5e-324"},
      {0x7fefffffffffffff, "1.7976931348623157e+308"},
      {0xffefffffffffffff, "-1.7976931348623157e+308"},
      {0x4340000000000000, "9007199254740992"},
      {0xc340000000000000, "-9007199254740992"},
      {0x4430000000000000, "295147905179352830000"},
      {0x44b52d02c7e14af5, "9.999999999999997e+22"},
      {0x44b52d02c7e14af6, "1e+23"},
      {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      {0x444b1ae4d6e2ef4e, "999999999999999700000"},
      {0x444b1ae4d6e2ef4f, "999999999999999900000"},
      {0x444b1ae4d6e2ef50, "1e+21"},
      {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
      {0x3eb0c6f7a0b5ed8d, "0.000001"},
      {0x41b3de4355555553, "333333333.3333332"},
      {0x41b3de4355555554, "333333333.33333325"},
      {0x41b3de4355555555, "333333333.3333333"},
      {0x41b3de4355555556, "333333333.3333334"},
      {0x41b3de4355555557, "333333333.33333343"},
      {0xbecbf647612f3696, "-0.0000033333333333333333"},
      {0x43143ff3c1cb0959, "1424953923781206.2"},
  };
  for (auto [bits, text] : v) EXPECT_EQ(number(from_bits(bits)), text) << std::hex << bits;
  EXPECT_THROW(number(from_bits(0x7fffffffffffffff)), Error);  // NaN
  EXPECT_THROW(number(from_bits(0x7ff0000000000000)), Error);  // Infinity
  EXPECT_EQ(number(0.1), "0.1");
  EXPECT_EQ(number(1e21), "1e+21");
  EXPECT_EQ(number(123e-20), "1.23e-18");
}

TEST(Jcs, Rfc8785MainExample) {
  // RFC 8785 3.2.2 input and 3.2.3 output.
  const std::string input = R"({
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })";
  EXPECT_EQ(canonicalize_json(input),
            "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
            "\"string\":\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

TEST(Jcs, Rfc8785SortsByUtf16CodeUnits) {
  // RFC 8785 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
  const std::string input =
      R"({"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",)"
      R"( "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",)"
      R"( "\u00f6": "Latin Small Letter O With Diaeresis"})";
  EXPECT_EQ(canonicalize_json(input),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xC2\x80\":\"Control\","
            "\"\xC3\xB6\":\"Latin Small Letter O With Diaeresis\",\"\xE2\x82\xAC\":\"Euro Sign\","
            "\"\xF0\x9F\x98\x80\":\"Emoji: Grinning Face\",\"\xEF\xAC\xB3\":\"Hebrew Letter Dalet With Dagesh\"}");
  EXPECT_TRUE(detail::utf16_less("\xF0\x9F\x98\x80", "\xEF\xAC\xB3"));
  EXPECT_FALSE(detail::utf16_less("\xEF\xAC\xB3", "\xF0\x9F\x98\x80"));
  EXPECT_TRUE(detail::utf16_less("a", "ab"));
  EXPECT_FALSE(detail::utf16_less("ab", "ab"));
}

TEST(Jcs, StringEscapes) {
  std::string s;
  detail::jcs_append_string(s, std::string("a\"b\\c\b\f\n\r\t\x01\x1f\x7f/\xC3\xA9", 16));
  EXPECT_EQ(s, "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f\x7f/\xC3\xA9\"");
  EXPECT_THROW(canonicalize_json("{\"a\": }"), Error);
}

// W3C vc-di-eddsa test vectors, eddsa-jcs-2022 (the Alumni credential).
const char* kUnsigned = R"({
  "@context": ["https://www.w3.org/ns/credentials/v2", "https://www.w3.org/ns/credentials/examples/v2"],
  "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
  "type": ["VerifiableCredential", "AlumniCredential"],
  "name": "Alumni Credential",
  "description": "A minimum viable example of an Alumni Credential.",
  "issuer": "https://vc.example/issuers/5678",
  "validFrom": "2023-01-01T00:00:00Z",
  "credentialSubject": {"id": "did:example:abcdefgh", "alumniOf": "The School of Examples"}
})";
const char* kCanonDoc =
    R"({"@context":["https://www.w3.org/ns/credentials/v2","https://www.w3.org/ns/credentials/examples/v2"],)"
    R"("credentialSubject":{"alumniOf":"The School of Examples","id":"did:example:abcdefgh"},)"
    R"("description":"A minimum viable example of an Alumni Credential.",)"
    R"("id":"urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33","issuer":"https://vc.example/issuers/5678",)"
    R"("name":"Alumni Credential","type":["VerifiableCredential","AlumniCredential"],)"
    R"("validFrom":"2023-01-01T00:00:00Z"})";

TEST(DataIntegrity, W3cEddsaJcs2022Vector) {
  // keyPair.json: privateKeyMultibase z3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq
  // (multicodec 0x8026 ed25519-priv + seed), publicKeyMultibase z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2.
  const auto priv = detail::base58btc_decode("3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq");
  ASSERT_EQ(priv.size(), 34u);
  ASSERT_EQ(priv[0], 0x80);
  ASSERT_EQ(priv[1], 0x26);
  std::array<uint8_t, 32> seed{};
  std::copy(priv.begin() + 2, priv.end(), seed.begin());
  const Identity signer = Identity::from_seed(seed);
  EXPECT_EQ(signer.did(), "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2");

  const nlohmann::json doc = nlohmann::json::parse(kUnsigned);
  EXPECT_EQ(detail::jcs(doc), kCanonDoc);
  EXPECT_EQ(detail::to_hex(detail::sha256(std::string(kCanonDoc))),
            "59b7cb6251b8991add1ce0bc83107e3db9dbbab5bd2c28f687db1a03abc92f19");  // docHashJCS.txt
  const nlohmann::json options = {
      {"type", "DataIntegrityProof"},
      {"cryptosuite", "eddsa-jcs-2022"},
      {"created", "2023-02-24T23:36:38Z"},
      {"verificationMethod", "https://vc.example/issuers/5678#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"},
      {"proofPurpose", "assertionMethod"}};
  const nlohmann::json secured = detail::eddsa_jcs_2022_sign(doc, options, signer);
  EXPECT_EQ(secured["proof"]["proofValue"],
            "z63t83Y53KfzJ5ZosfKTnqfMcKB2dmTrfjSaQjeNNjAD5srBowQfmWqeRb8rRjmeEuCBEsddF9LsVogtuTsijJKh4");
  EXPECT_EQ(secured["proof"]["@context"], doc["@context"]);
  // Verifies (the key is given: the verification method is not a did:key URL) ...
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(secured, &signer.public_key()), "");
  EXPECT_NE(detail::eddsa_jcs_2022_verify(secured), "");  // an https method needs the key
  // ... and not once anything changes.
  nlohmann::json t = secured;
  t["credentialSubject"]["alumniOf"] = "The School of Examples.";
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(t, &signer.public_key()), "the signature does not verify");
  t = secured;
  t["proof"]["created"] = "2023-02-24T23:36:39Z";
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(t, &signer.public_key()), "the signature does not verify");
  t = secured;
  t["proof"]["@context"] = nlohmann::json::array({"https://example.org/other"});
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(t, &signer.public_key()), "the proof's @context does not match the document's");
}

TEST(DataIntegrity, DidKeyVerificationMethod) {
  const Identity id = Identity::generate();
  const nlohmann::json doc = {{"@context", {"https://www.w3.org/ns/credentials/v2"}}, {"x", 1}};
  const nlohmann::json options = {{"type", "DataIntegrityProof"},
                                  {"cryptosuite", "eddsa-jcs-2022"},
                                  {"created", "2026-11-25T00:00:00Z"},
                                  {"verificationMethod", detail::did_key_verification_method(id.did())},
                                  {"proofPurpose", "assertionMethod"}};
  const nlohmann::json secured = detail::eddsa_jcs_2022_sign(doc, options, id);
  EXPECT_EQ(secured["proof"]["verificationMethod"], id.did() + "#" + id.did().substr(8));
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(secured), "");
  nlohmann::json t = secured;
  t["x"] = 2;
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(t), "the signature does not verify");
  t = secured;
  t["proof"]["proofValue"] = "u" + t["proof"]["proofValue"].get<std::string>().substr(1);
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(t), "proofValue is not multibase base58btc ('z...')");
  t = secured;
  t["proof"]["cryptosuite"] = "eddsa-rdfc-2022";
  EXPECT_EQ(detail::eddsa_jcs_2022_verify(t), "proof cryptosuite is not eddsa-jcs-2022");
  EXPECT_THROW(detail::did_key_verification_method("did:web:example.com"), Error);
}

}  // namespace
}  // namespace didmark
