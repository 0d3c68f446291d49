// Mark certificates: round trip, every field bound by the signature, countersignatures
// chained, model digests, times.
#include <gtest/gtest.h>

#include <fstream>

#include "cert_test_util.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "identity/crypto.hpp"
#include "royalty/data_integrity.hpp"
#include "royalty/jcs.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::claim_for;
using test::identity_of;

std::string text_of(const json& doc) { return detail::jcs(doc) + "\n"; }

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("didmark-cert-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

TEST(Certificate, RoundTrip) {
  const Identity alice = identity_of(1);
  MarkCertificate claim = claim_for(alice, "m", "2026-01-02T03:04:05.678Z");
  claim.tensors = "attn|mlp";
  claim.sketch = ModelResource{"m.sketch", "sha256", std::string(64, 'a')};
  claim.summary = ModelSummary{"safetensors", 1000, {{"f32", 990}, {"i64", 10}}};
  const std::string text = make_mark_certificate(claim, alice);
  ASSERT_EQ(text.back(), '\n');
  const CertificateCheck c = verify_certificate(text);
  ASSERT_TRUE(c.valid) << c.reason;
  EXPECT_TRUE(c.canonical);
  EXPECT_FALSE(c.countersigned);
  EXPECT_EQ(c.time, "2026-01-02T03:04:05.678Z");
  const MarkCertificate& m = c.certificate;
  EXPECT_EQ(m.owner, alice.did());
  EXPECT_EQ(m.marked_at, claim.marked_at);
  EXPECT_EQ(m.scheme, Scheme::spread_spectrum);
  EXPECT_EQ(m.carrier, "carrier-v1");
  EXPECT_EQ(m.strength, 0.005);
  EXPECT_EQ(m.tensors, "attn|mlp");
  EXPECT_EQ(m.payload_bits, 256);
  EXPECT_EQ(m.key_digest, watermark_key_digest(alice.watermark_key()));
  EXPECT_FALSE(m.verification_key.has_value());
  EXPECT_EQ(m.resources, claim.resources);
  ASSERT_TRUE(m.sketch && m.summary);
  EXPECT_EQ(*m.sketch, *claim.sketch);
  EXPECT_EQ(m.summary->dtypes, claim.summary->dtypes);
  EXPECT_TRUE(m.id.starts_with("urn:uuid:"));
  const json doc = json::parse(text);
  EXPECT_EQ(doc["type"], json::array({"VerifiableCredential", "DidmarkMarkCertificate"}));
  EXPECT_EQ(doc["issuer"], alice.did());
  EXPECT_EQ(doc["credentialSubject"]["id"], alice.did());
  // Signing is deterministic (Ed25519), and the same claim gives the same bytes.
  EXPECT_EQ(make_mark_certificate(claim, alice), text);
  // Nothing secret: neither the seed nor the watermark key.
  EXPECT_EQ(text.find(detail::to_hex(alice.seed())), std::string::npos);
  EXPECT_EQ(text.find(alice.watermark_key().to_hex()), std::string::npos);
}

TEST(Certificate, DisclosedKeyIsCheckedAgainstItsDigest) {
  const Identity alice = identity_of(1);
  MarkCertificate claim = claim_for(alice, "m", "2026-01-02T03:04:05Z");
  claim.verification_key = alice.watermark_key();
  const CertificateCheck c = verify_certificate(make_mark_certificate(claim, alice));
  ASSERT_TRUE(c.valid) << c.reason;
  ASSERT_TRUE(c.certificate.verification_key.has_value());
  EXPECT_EQ(*c.certificate.verification_key, alice.watermark_key());
  claim.verification_key = identity_of(2).watermark_key();  // not the digest's key
  EXPECT_THROW(make_mark_certificate(claim, alice), Error);
}

TEST(Certificate, BadClaimsAreRefused) {
  const Identity alice = identity_of(1);
  const MarkCertificate ok = claim_for(alice, "m", "2026-01-02T03:04:05Z");
  auto refused = [&](auto change, const char* what) {
    MarkCertificate c = ok;
    change(c);
    const std::string e = test::error_of([&] { make_mark_certificate(c, alice); });
    EXPECT_NE(e.find(what), std::string::npos) << e;
  };
  refused([](auto& c) { c.resources.clear(); }, "model's files");
  refused([](auto& c) { c.resources.push_back(c.resources[0]); }, "sorted");
  refused([](auto& c) { c.resources[0].name = "../x"; }, "relative path");
  refused([](auto& c) { c.resources[0].digest = "ABC"; }, "64 lower-case hex");
  refused([](auto& c) { c.strength = 0; }, "strength");
  refused([](auto& c) { c.marked_at = "yesterday"; }, "RFC 3339");
  refused([](auto& c) { c.key_digest.clear(); }, "key digest");
  refused([](auto& c) { c.carrier = "carrier-v2"; }, "carrier");
  EXPECT_THROW(make_mark_certificate(ok, Identity()), Error);
}

// Every leaf of a (countersigned) certificate is bound: change any one and it fails.
TEST(Certificate, EveryFieldIsBoundBySignatures) {
  const Identity alice = identity_of(1), registrar = identity_of(9);
  MarkCertificate claim = claim_for(alice, "m", "2026-01-02T03:04:05Z");
  claim.sketch = ModelResource{"m.sketch", "sha256", std::string(64, 'b')};
  claim.summary = ModelSummary{"safetensors", 1000, {{"f32", 1000}}};
  const std::string text = countersign_certificate(make_mark_certificate(claim, alice), registrar,
                                                   "2026-01-03T00:00:00Z");
  ASSERT_TRUE(verify_certificate(text).valid);
  const json doc = json::parse(text);
  int leaves = 0;
  const json flat = doc.flatten();
  for (const auto& [ptr, value] : flat.items()) {
    json bad = doc;
    json& v = bad[json::json_pointer(ptr)];
    if (v.is_string())
      v = v.get<std::string>() + "x";
    else if (v.is_number_integer())
      v = v.get<int64_t>() + 1;
    else if (v.is_number())
      v = v.get<double>() * 1.5;
    else if (v.is_boolean())
      v = !v.get<bool>();
    else
      continue;
    ++leaves;
    const CertificateCheck c = verify_certificate(text_of(bad));
    EXPECT_FALSE(c.valid) << "changing " << ptr << " went unnoticed";
  }
  EXPECT_GT(leaves, 30);
  // Removing any member fails too, except the countersignature's "@context": without it the
  // proof takes the document's, so the signed bytes are the same (vc-di-eddsa 3.3). (The
  // owner proof's is covered by the countersignature, which signed the owner proof.)
  std::function<void(const json&, const std::string&)> walk = [&](const json& node, const std::string& at) {
    if (node.is_object())
      for (auto it = node.begin(); it != node.end(); ++it) {
        const std::string p = at + "/" + it.key();
        json bad = doc;
        bad[json::json_pointer(at.empty() ? "" : at)].erase(it.key());
        const bool same = it.key() == "@context" && at == "/proof/1";
        EXPECT_EQ(verify_certificate(text_of(bad)).valid, same) << "removing " << p;
        walk(*it, p);
      }
    else if (node.is_array())
      for (std::size_t i = 0; i < node.size(); ++i) walk(node[i], at + "/" + std::to_string(i));
  };
  walk(doc, "");
}

TEST(Certificate, CountersignatureIsChainedAndTimed) {
  const Identity alice = identity_of(1), registrar = identity_of(9), other = identity_of(10);
  const std::string cert = make_mark_certificate(claim_for(alice, "m", "2026-01-02T00:00:00Z"), alice);
  const std::string cs = countersign_certificate(cert, registrar, "2026-01-05T10:00:00.5+02:00");
  const CertificateCheck c = verify_certificate(cs);
  ASSERT_TRUE(c.valid) << c.reason;
  EXPECT_TRUE(c.countersigned);
  EXPECT_EQ(c.time, "2026-01-05T10:00:00.5+02:00");
  EXPECT_EQ(c.authority, registrar.did());
  ASSERT_EQ(c.countersignatures.size(), 1u);
  const json doc = json::parse(cs);
  ASSERT_TRUE(doc["proof"].is_array());
  EXPECT_EQ(doc["proof"][1]["previousProof"], doc["proof"][0]["id"]);

  // The authority signed the credential with the owner's proof: re-verify by hand.
  json input = doc;
  input["proof"] = json::array({doc["proof"][0]});
  EXPECT_EQ(detail::eddsa_jcs_2022_verify_proof(input, doc["proof"][1]), "");
  input["proof"][0]["created"] = "2025-01-01T00:00:00Z";
  EXPECT_NE(detail::eddsa_jcs_2022_verify_proof(input, doc["proof"][1]), "");

  // A second authority; the earliest trusted time orders the certificate.
  const std::string cs2 = countersign_certificate(cs, other, "2026-01-04T00:00:00Z");
  const CertificateCheck c2 = verify_certificate(cs2);
  ASSERT_TRUE(c2.valid) << c2.reason;
  EXPECT_EQ(c2.countersignatures.size(), 2u);
  EXPECT_EQ(c2.authority, other.did());
  const std::vector<std::string> trust{registrar.did()};
  const CertificateCheck c3 = verify_certificate(cs2, trust);
  EXPECT_EQ(c3.authority, registrar.did());
  EXPECT_FALSE(c3.countersignatures[1].trusted);
  const std::vector<std::string> nobody{"did:web:nobody.example"};
  const CertificateCheck c4 = verify_certificate(cs2, nobody);
  EXPECT_TRUE(c4.valid);
  EXPECT_FALSE(c4.countersigned);
  EXPECT_EQ(c4.time, "2026-01-02T00:00:00Z");  // self-asserted

  // Refusals: the owner, the same authority twice, an invalid certificate, a bad time.
  EXPECT_NE(test::error_of([&] { countersign_certificate(cert, alice); }).find("own certificate"), std::string::npos);
  EXPECT_NE(test::error_of([&] { countersign_certificate(cs, registrar); }).find("already"), std::string::npos);
  std::string broken = cert;
  broken.replace(broken.find("0.005"), 5, "0.006");
  EXPECT_NE(test::error_of([&] { countersign_certificate(broken, registrar); }).find("does not verify"),
            std::string::npos);
  EXPECT_THROW(countersign_certificate(cert, registrar, "soon"), Error);
}

TEST(Certificate, ForgedProofSetsFail) {
  const Identity alice = identity_of(1), registrar = identity_of(9), mallory = identity_of(7);
  const std::string cert = make_mark_certificate(claim_for(alice, "m", "2026-01-02T00:00:00Z"), alice);
  const json cs = json::parse(countersign_certificate(cert, registrar, "2026-01-05T00:00:00Z"));
  // Backdating the authority's time breaks its signature.
  json bad = cs;
  bad["proof"][1]["created"] = "2025-12-01T00:00:00Z";
  EXPECT_NE(verify_certificate(text_of(bad)).reason.find("countersignature"), std::string::npos);
  // The authority's proof alone (the owner's removed).
  bad = cs;
  bad["proof"] = json::array({cs["proof"][1]});
  EXPECT_FALSE(verify_certificate(text_of(bad)).valid);
  // Mallory's proof re-labelled as the registrar's.
  json m = json::parse(countersign_certificate(cert, mallory, "2025-01-01T00:00:00Z"));
  m["proof"][1]["verificationMethod"] = cs["proof"][1]["verificationMethod"];
  EXPECT_FALSE(verify_certificate(text_of(m)).valid);
  // A second unchained proof (a proof set of two owners' claims).
  bad = cs;
  json extra = cs["proof"][1];
  extra.erase("previousProof");
  bad["proof"].push_back(extra);
  EXPECT_NE(verify_certificate(text_of(bad)).reason.find("unchained"), std::string::npos);
  // Someone else re-issuing alice's claims under their own name.
  bad = json::parse(cert);
  bad["issuer"] = mallory.did();
  bad["credentialSubject"]["id"] = mallory.did();
  EXPECT_FALSE(verify_certificate(text_of(detail::eddsa_jcs_2022_sign(bad, json::parse(cert)["proof"], alice))).valid);
  // Not JSON: an error, not a verdict.
  EXPECT_THROW(verify_certificate("{not json"), Error);
}

TEST(Certificate, ModelResourcesOfFilesAndShards) {
  TempDir d;
  write(d.path / "abc.bin", "abc");
  const auto r = model_resources(d.path / "abc.bin");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].name, "abc.bin");
  EXPECT_EQ(r[0].algorithm, "sha256");
  // FIPS 180-2 test vector.
  EXPECT_EQ(r[0].digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  SyntheticCheckpointOptions o;
  o.params = 300'000;
  o.hidden = 64;
  o.shards = 3;
  write_synthetic_checkpoint(d.path / "sharded", o);
  const auto s = model_resources(d.path / "sharded");
  ASSERT_EQ(s.size(), 4u);  // the index and three shards, sorted by name
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end(), [](auto& a, auto& b) { return a.name < b.name; }));
  EXPECT_TRUE(std::any_of(s.begin(), s.end(), [](auto& x) { return x.name.ends_with(".safetensors.index.json"); }));
  const auto via_index = model_resources(d.path / "sharded" / "model.safetensors.index.json");
  EXPECT_EQ(via_index, s);
  EXPECT_EQ(compare_resources(s, s), "");

  // A changed shard, a missing shard, an extra file: each named.
  auto changed = s;
  changed[1].digest[0] = changed[1].digest[0] == '0' ? '1' : '0';
  EXPECT_NE(compare_resources(s, changed).find(s[1].name), std::string::npos);
  auto missing = s;
  missing.erase(missing.begin() + 2);
  EXPECT_NE(compare_resources(s, missing).find("has no file"), std::string::npos);
  auto extra = s;
  extra.push_back({"zz.safetensors", "sha256", std::string(64, 'c')});
  EXPECT_NE(compare_resources(s, extra).find("not in the certificate"), std::string::npos);
  // A renamed copy of a one-file model is the same model.
  fs::copy_file(d.path / "abc.bin", d.path / "renamed.bin");
  EXPECT_EQ(compare_resources(r, model_resources(d.path / "renamed.bin")), "");

  EXPECT_THROW(model_resources(d.path / "nope"), Error);
  fs::create_directories(d.path / "plain");
  EXPECT_THROW(model_resources(d.path / "plain"), Error);

  const auto sum = summarize_checkpoint(d.path / "sharded");
  ASSERT_TRUE(sum.has_value());
  EXPECT_GE(sum->parameters, 300'000);
  EXPECT_EQ(sum->format, "safetensors-sharded");
  EXPECT_FALSE(summarize_checkpoint(d.path / "abc.bin").has_value());
}

TEST(Certificate, KeyDigestSeparatesKeys) {
  const std::string a = watermark_key_digest(identity_of(1).watermark_key());
  EXPECT_EQ(a.size(), 64u);
  EXPECT_NE(a, watermark_key_digest(identity_of(2).watermark_key()));
  EXPECT_NE(a, detail::to_hex(detail::sha256(std::string_view(
                   reinterpret_cast<const char*>(identity_of(1).watermark_key().bytes.data()), 32))));
}

TEST(Time, Rfc3339Instants) {
  const auto z = parse_rfc3339("2026-01-01T00:00:00Z");
  ASSERT_TRUE(z);
  EXPECT_EQ(z->first, 1767225600);
  EXPECT_EQ(parse_rfc3339("2026-01-01T01:30:00+01:30"), z);
  EXPECT_EQ(parse_rfc3339("2025-12-31T19:00:00-05:00"), z);
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z")->first, 0);
  EXPECT_EQ(parse_rfc3339("2026-01-01T00:00:00.25Z")->second, 250'000'000);
  EXPECT_LT(*parse_rfc3339("2026-01-01T00:00:00.1Z"), *parse_rfc3339("2026-01-01T00:00:00.25Z"));
  EXPECT_TRUE(parse_rfc3339("2024-02-29T00:00:00Z"));
  for (const char* bad : {"2025-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01 00:00:00Z",
                          "2026-01-01T24:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z",
                          "2026-01-01T00:00:00+0100", "2026-01-01T00:00:00Zjunk"})
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  const std::string now = utc_now_ms();
  ASSERT_TRUE(parse_rfc3339(now)) << now;
  EXPECT_EQ(now.size(), 24u);
}

}  // namespace
}  // namespace didmark
