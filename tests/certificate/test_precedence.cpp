// Precedence of several owners' marks in one file.
#include <gtest/gtest.h>

#include "cert_test_util.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

using test::claim_for;
using test::identity_of;

CertificateCheck cert(const Identity& owner, const std::string& model, const std::string& marked,
                      const std::string& countersigned = {}, const Identity* authority = nullptr,
                      std::span<const std::string> trusted = {}) {
  std::string text = make_mark_certificate(claim_for(owner, model, marked), owner);
  if (!countersigned.empty()) text = countersign_certificate(text, *authority, countersigned);
  CertificateCheck c = verify_certificate(text, trusted);
  EXPECT_TRUE(c.valid) << c.reason;
  return c;
}

std::vector<std::string> dids(const std::vector<PrecedenceEntry>& ps) {
  std::vector<std::string> out;
  for (const auto& p : ps) out.push_back(p.did);
  return out;
}
bool has(const PrecedenceEntry& e, const std::string& flag) {
  return std::find(e.flags.begin(), e.flags.end(), flag) != e.flags.end();
}

struct Owners {
  Identity alice = identity_of(1), bob = identity_of(2), carol = identity_of(3), registrar = identity_of(9);
};

// Alice marks and registers first; Bob marks Alice's published file and registers later.
TEST(Precedence, TheThiefComesSecond) {
  Owners o;
  const auto a = cert(o.alice, "alice-model", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar);
  const auto b = cert(o.bob, "bob-model", "2026-02-01T00:00:00Z", "2026-02-01T00:05:00Z", &o.registrar);
  // The file is Bob's certified model: it carries both marks, Bob's scoring higher.
  const std::vector<std::string> both{o.alice.did(), o.bob.did()};
  const std::vector<PrecedenceInput> in{{&b, true, 25.1, true, both}, {&a, true, 23.6, false, std::nullopt}};
  const auto ps = mark_precedence(in);
  ASSERT_EQ(dids(ps), (std::vector<std::string>{o.alice.did(), o.bob.did()}));
  EXPECT_TRUE(ps[0].countersigned);
  EXPECT_EQ(ps[0].time, "2026-01-01T00:05:00Z");
  EXPECT_EQ(ps[0].authority, o.registrar.did());
  EXPECT_TRUE(ps[0].flags.empty());
  EXPECT_TRUE(ps[1].flags.empty());  // his model carries alice's mark: consistent with coming later
  EXPECT_TRUE(ps[1].this_file);
  EXPECT_EQ(ps[1].z, 25.1);
}

// Bob backdates his own certificate before Alice's registration: a self-asserted time never
// outranks an authority's, whatever it says.
TEST(Precedence, BackdatedSelfAssertedTimeRanksAfterCountersigned) {
  Owners o;
  const auto a = cert(o.alice, "a", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar);
  const auto b = cert(o.bob, "b", "2020-01-01T00:00:00Z");
  const std::vector<PrecedenceInput> in{{&b, true, 30, false, std::nullopt}, {&a, true, 20, false, std::nullopt}};
  const auto ps = mark_precedence(in);
  ASSERT_EQ(dids(ps), (std::vector<std::string>{o.alice.did(), o.bob.did()}));
  EXPECT_FALSE(has(ps[0], "self-asserted"));
  EXPECT_TRUE(has(ps[1], "self-asserted"));
  EXPECT_FALSE(ps[1].countersigned);
  EXPECT_EQ(ps[1].time, "2020-01-01T00:00:00Z");
  EXPECT_TRUE(has(ps[1], "unchecked"));

  // Both self-asserted: ordered by their own times, both flagged.
  const auto a2 = cert(o.alice, "a", "2026-01-01T00:00:00Z");
  const std::vector<PrecedenceInput> in2{{&a2, true, 20, false, std::nullopt}, {&b, true, 30, false, std::nullopt}};
  const auto ps2 = mark_precedence(in2);
  ASSERT_EQ(dids(ps2), (std::vector<std::string>{o.bob.did(), o.alice.did()}));
  EXPECT_TRUE(has(ps2[0], "self-asserted") && has(ps2[1], "self-asserted"));
}

TEST(Precedence, AnUntrustedAuthorityGivesNoCountersignedTime) {
  Owners o;
  const Identity mallory = identity_of(7);
  const std::vector<std::string> trust{o.registrar.did()};
  const auto a = cert(o.alice, "a", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar, trust);
  // Bob's friend "countersigns" with a clock set a year back.
  const auto b = cert(o.bob, "b", "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z", &mallory, trust);
  EXPECT_FALSE(b.countersigned);
  const std::vector<PrecedenceInput> in{{&b, true, 30, false, std::nullopt}, {&a, true, 20, false, std::nullopt}};
  const auto ps = mark_precedence(in);
  ASSERT_EQ(dids(ps), (std::vector<std::string>{o.alice.did(), o.bob.did()}));
  EXPECT_TRUE(has(ps[1], "self-asserted"));
  // Without a trust list every valid countersignature counts (and is named).
  const auto b2 = cert(o.bob, "b", "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z", &mallory);
  const auto a2 = cert(o.alice, "a", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar);
  const std::vector<PrecedenceInput> in2{{&b2, true, 30, false, std::nullopt}, {&a2, true, 20, false, std::nullopt}};
  const auto ps2 = mark_precedence(in2);
  EXPECT_EQ(ps2[0].did, o.bob.did());
  EXPECT_EQ(ps2[0].authority, mallory.did());
}

// Bob's certified model does not carry Alice's mark, yet the file carries both: Bob's
// certificate does not explain this file as "Bob on top of Alice".
TEST(Precedence, LaterOwnerWithoutEarlierMarkIsInconsistent) {
  Owners o;
  const auto a = cert(o.alice, "a", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar);
  const auto b = cert(o.bob, "b", "2026-02-01T00:00:00Z", "2026-02-01T00:05:00Z", &o.registrar);
  const auto c = cert(o.carol, "c", "2026-03-01T00:00:00Z", "2026-03-01T00:05:00Z", &o.registrar);
  const std::vector<PrecedenceInput> in{{&a, true, 20, false, std::nullopt},
                                        {&b, true, 20, false, std::vector<std::string>{o.bob.did()}},
                                        {&c, true, 20, false, std::vector<std::string>{o.alice.did(), o.carol.did()}}};
  const auto ps = mark_precedence(in);
  ASSERT_EQ(dids(ps), (std::vector<std::string>{o.alice.did(), o.bob.did(), o.carol.did()}));
  EXPECT_TRUE(has(ps[1], "inconsistent"));
  EXPECT_EQ(ps[1].missing, std::vector<std::string>{o.alice.did()});
  EXPECT_TRUE(has(ps[2], "inconsistent"));  // carries alice's but not bob's
  EXPECT_EQ(ps[2].missing, std::vector<std::string>{o.bob.did()});
  EXPECT_FALSE(has(ps[0], "inconsistent"));
}

TEST(Precedence, UndetectedOwnersTiesAndRepeatedOwners) {
  Owners o;
  const auto a = cert(o.alice, "a", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar);
  const auto a_later = cert(o.alice, "a2", "2026-05-01T00:00:00Z", "2026-05-01T00:05:00Z", &o.registrar);
  const auto b = cert(o.bob, "b", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z", &o.registrar);
  const auto c = cert(o.carol, "c", "2025-01-01T00:00:00Z", "2025-01-01T00:05:00Z", &o.registrar);
  const std::vector<PrecedenceInput> in{{&a_later, true, 20, true, std::vector<std::string>{o.alice.did()}},
                                        {&b, true, 20, false, std::nullopt},
                                        {&a, true, 20, false, std::nullopt},
                                        {&c, false, 1.0, false, std::nullopt}};
  const auto ps = mark_precedence(in);
  // Carol is not detected: left out. Alice and Bob registered at the same instant: by DID.
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_TRUE(has(ps[0], "tie") && has(ps[1], "tie"));
  EXPECT_LT(ps[0].did, ps[1].did);
  const auto& al = ps[0].did == o.alice.did() ? ps[0] : ps[1];
  EXPECT_EQ(al.certificate, a.certificate.id);  // her earlier certificate stands
  EXPECT_TRUE(al.this_file);                     // ... with the later one's model check

  CertificateCheck invalid = a;
  invalid.valid = false;
  const std::vector<PrecedenceInput> bad{{&invalid, true, 1, false, std::nullopt}};
  EXPECT_THROW(mark_precedence(bad), Error);
  const std::vector<PrecedenceInput> null{{nullptr, true, 1, false, std::nullopt}};
  EXPECT_THROW(mark_precedence(null), Error);
  EXPECT_TRUE(mark_precedence({}).empty());
}

}  // namespace
}  // namespace didmark
