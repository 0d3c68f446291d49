// Signed statements: round trip, determinism, every altered byte fails, re-signed lies fail.
#include <gtest/gtest.h>

#include <random>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "royalty/data_integrity.hpp"
#include "royalty/jcs.hpp"
#include "royalty_test_util.hpp"

namespace didmark {
namespace {

using test::payees_of;

const Identity& operator_id() {
  static const Identity id = [] {
    std::array<uint8_t, 32> seed{};
    seed[0] = 42;
    return Identity::from_seed(seed);
  }();
  return id;
}

Policy cascade_policy() {
  Policy p;
  Level fee;
  fee.name = "platform fee";
  fee.keep_bps = 1000;
  fee.payees = payees_of({{"did:web:market.example", 1}});
  Level base;
  base.name = "base models";
  base.keep_bps = 3000;
  base.payees = payees_of({{"did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp", 0.6},
                           {"did:web:lab.example", 0.4}});
  Level data;
  data.name = "data contributors";
  data.payees = {{"did:web:alice.example", Weight::from_decimal("12.5")},
                 {"did:web:bob.example", Weight::from_double(-3)},
                 {"did:web:carol.example", Weight::from_double(0.1)}};
  p.levels = {fee, base, data};
  p.negative = NegativeWeights::shift;
  p.fallback = "did:web:market.example";
  return p;
}

std::string sign(Amount revenue, const Policy& p, const std::string& ts = "2026-11-25T12:00:00Z") {
  StatementOptions so;
  so.timestamp = ts;
  so.unit = "USD cents";
  return make_statement(run_cascade(revenue, p), operator_id(), so);
}

TEST(Statement, RoundTrip) {
  const Policy p = cascade_policy();
  const std::string st = sign(1000001, p);
  ASSERT_EQ(st.back(), '\n');
  const StatementCheck c = verify_statement(st);
  EXPECT_TRUE(c.valid) << c.reason;
  EXPECT_TRUE(c.signature_ok && c.payouts_ok && c.canonical_ok);
  EXPECT_EQ(c.issuer, operator_id().did());
  EXPECT_EQ(c.created, "2026-11-25T12:00:00Z");
  EXPECT_EQ(c.revenue, 1000001u);
  EXPECT_EQ(c.levels, 3u);
  EXPECT_EQ(c.payees, 6u);
  // The inputs are recorded as given, next to the payouts: doubles as JSON numbers,
  // decimals as strings.
  EXPECT_NE(st.find("\"did:web:alice.example\":[\"12.5\",\""), std::string::npos);
  EXPECT_NE(st.find("\"did:web:bob.example\":[-3,\""), std::string::npos);
  EXPECT_NE(st.find("\"did:web:carol.example\":[0.1,\""), std::string::npos);
  EXPECT_NE(st.find("\"negativeWeights\":\"shift\""), std::string::npos);
  EXPECT_NE(st.find("\"unit\":\"USD cents\""), std::string::npos);
  EXPECT_NE(st.find("\"cryptosuite\":\"eddsa-jcs-2022\""), std::string::npos);
  // The file is its own canonical form.
  EXPECT_EQ(canonicalize_json(st) + "\n", st);
  // Deterministic: same inputs and time, same bytes (Ed25519 is deterministic).
  EXPECT_EQ(sign(1000001, p), st);
  EXPECT_NE(sign(1000001, p, "2026-11-25T12:00:01Z"), st);
}

TEST(Statement, EveryAlteredByteFails) {
  Policy p = single_level_policy(payees_of({{"did:web:a.example", 70}, {"did:web:b.example", 30}}));
  const std::string st = sign(5, p);
  const StatementCheck ok = verify_statement(st);
  ASSERT_TRUE(ok.valid) << ok.reason;
  std::mt19937 rng(1);
  int checked = 0;
  for (std::size_t i = 0; i < st.size(); ++i) {
    for (int variant = 0; variant < 2; ++variant) {
      std::string t = st;
      // Flip the lowest bit, or swap in another printable character.
      t[i] = variant == 0 ? static_cast<char>(t[i] ^ 1) : static_cast<char>(0x21 + rng() % 94);
      if (t[i] == st[i]) continue;
      ++checked;
      try {
        const StatementCheck c = verify_statement(t);
        EXPECT_FALSE(c.valid) << "byte " << i << " changed from '" << st[i] << "' to '" << t[i] << "' went unnoticed";
        EXPECT_FALSE(c.reason.empty());
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), Errc::corrupt_input);  // no longer JSON at all
      }
    }
  }
  EXPECT_GT(checked, static_cast<int>(st.size()));
  // Whitespace inserted between tokens keeps the meaning but not the bytes.
  std::string spaced = st;
  spaced.insert(1, " ");
  const StatementCheck c = verify_statement(spaced);
  EXPECT_FALSE(c.valid);
  EXPECT_FALSE(c.canonical_ok);
  EXPECT_TRUE(c.signature_ok);
  EXPECT_TRUE(c.payouts_ok);
  EXPECT_NE(c.reason.find("not the canonical (RFC 8785) form"), std::string::npos);
}

// Change a statement's JSON and sign it again with `signer`: the signature then holds.
std::string resign(const std::string& st, const std::function<void(nlohmann::json&)>& edit, const Identity& signer) {
  nlohmann::json doc = nlohmann::json::parse(st);
  nlohmann::json options = doc["proof"];
  options.erase("proofValue");
  options.erase("@context");
  doc.erase("proof");
  edit(doc);
  options["verificationMethod"] = detail::did_key_verification_method(signer.did());
  return detail::jcs(detail::eddsa_jcs_2022_sign(doc, options, signer)) + "\n";
}

TEST(Statement, ResignedWrongPayoutsFail) {
  const Policy p = cascade_policy();
  const std::string st = sign(1000, p);
  // Move one unit from carol to alice and sign again: the signature holds, the money does not.
  const std::string lie = resign(st, [](nlohmann::json& d) {
    auto& pay = d["credentialSubject"]["payouts"];
    pay["did:web:alice.example"] = amount_to_string(parse_amount(pay["did:web:alice.example"].get<std::string>()) + 1);
    pay["did:web:carol.example"] = amount_to_string(parse_amount(pay["did:web:carol.example"].get<std::string>()) - 1);
  }, operator_id());
  StatementCheck c = verify_statement(lie);
  EXPECT_TRUE(c.signature_ok);
  EXPECT_TRUE(c.canonical_ok);
  EXPECT_FALSE(c.payouts_ok);
  EXPECT_FALSE(c.valid);
  EXPECT_NE(c.reason.find("credentialSubject.payouts gives did:web:alice.example"), std::string::npos) << c.reason;

  // A changed input (a weight) with the old payouts fails too.
  const std::string lie2 = resign(st, [](nlohmann::json& d) {
    d["credentialSubject"]["levels"][2]["payees"]["did:web:alice.example"][0] = "13";
  }, operator_id());
  c = verify_statement(lie2);
  EXPECT_TRUE(c.signature_ok);
  EXPECT_FALSE(c.payouts_ok);

  // Signed by another key than the issuer's.
  const Identity other = Identity::generate();
  c = verify_statement(resign(st, [](nlohmann::json&) {}, other));
  EXPECT_FALSE(c.signature_ok);
  EXPECT_NE(c.reason.find("not by the issuer"), std::string::npos) << c.reason;
  // A payee left out, or one added.
  c = verify_statement(resign(st, [](nlohmann::json& d) { d["credentialSubject"]["payouts"].erase("did:web:bob.example"); },
                              operator_id()));
  EXPECT_NE(c.reason.find("leaves out payee did:web:bob.example"), std::string::npos) << c.reason;
  c = verify_statement(resign(st, [](nlohmann::json& d) { d["credentialSubject"]["payouts"]["did:web:eve.example"] = "0"; },
                              operator_id()));
  EXPECT_NE(c.reason.find("did:web:eve.example, who is not a payee"), std::string::npos) << c.reason;
  // An out-of-range input that a careless reader would truncate (2^32 + 1000 -> 1000).
  c = verify_statement(resign(st, [](nlohmann::json& d) {
    d["credentialSubject"]["levels"][0]["keepBasisPoints"] = 4294968296ll;
  }, operator_id()));
  EXPECT_FALSE(c.valid);
  EXPECT_NE(c.reason.find("keepBasisPoints is not an integer in 0..10000"), std::string::npos) << c.reason;
  // Not a statement at all.
  EXPECT_THROW(verify_statement("not json"), Error);
  c = verify_statement("{}\n");
  EXPECT_FALSE(c.valid);
}

TEST(Statement, ManyPayeesAndFallback) {
  std::vector<Payee> ps;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 3000; ++i) {
    std::array<uint8_t, 32> pk{};
    for (auto& b : pk) b = static_cast<uint8_t>(rng());
    ps.push_back({did_key_from_ed25519(pk), Weight::from_double(std::ldexp(static_cast<double>(rng() % 1000), -static_cast<int>(rng() % 60)))});
  }
  const std::string st = sign(test::u128_of("98765432109876543210987654321"), single_level_policy(ps));
  const StatementCheck c = verify_statement(st);
  EXPECT_TRUE(c.valid) << c.reason;
  EXPECT_EQ(c.payees, 3000u);
  // All weights zero: the fallback is paid and recorded.
  Policy z = single_level_policy(payees_of({{"did:web:a.example", 0}, {"did:web:b.example", -1}}),
                                 NegativeWeights::clip, "did:web:platform.example");
  const std::string zs = sign(77, z);
  const StatementCheck zc = verify_statement(zs);
  EXPECT_TRUE(zc.valid) << zc.reason;
  EXPECT_NE(zs.find("\"did:web:platform.example\":[null,\"77\"]"), std::string::npos);
  EXPECT_NE(zs.find("\"fallback\":\"did:web:platform.example\""), std::string::npos);
}

TEST(Statement, EachPayeeListedOnceWithItsWeightAndPayout) {
  // Three levels, thousands of contributors (doubles and decimals, a zero, a negative): each
  // level lists its payees once as [weight, payout]; the totals follow with more than one
  // level.
  Policy p = cascade_policy();
  std::mt19937_64 rng(6);
  for (int i = 0; i < 5000; ++i) {
    const std::string did = "did:web:contributor" + std::to_string(i) + ".example";
    Weight w = i % 3 == 0 ? Weight::from_decimal(std::to_string(rng() % 1000) + "." + std::to_string(rng() % 100))
                          : Weight::from_double(std::ldexp(static_cast<double>(rng() % 1000), -static_cast<int>(rng() % 40)));
    p.levels[2].payees.push_back({did, w});
  }
  const std::string st = sign(test::u128_of("98765432109876543210987654321"), p);
  const StatementCheck c = verify_statement(st);
  EXPECT_TRUE(c.valid) << c.reason;
  EXPECT_EQ(c.payees, 5006u);
  const nlohmann::json doc = nlohmann::json::parse(st);
  const auto& subject = doc["credentialSubject"];
  EXPECT_EQ(subject["levels"][2]["payees"].size(), 5003u);
  EXPECT_EQ(subject["payouts"].size(), 5006u);
  EXPECT_FALSE(subject["levels"][0].contains("weights"));
  EXPECT_EQ(subject["levels"][2]["payees"]["did:web:bob.example"][0], -3);
  // With one level, its table holds the totals and there is no separate one.
  const std::string one = sign(1000, single_level_policy(p.levels[2].payees));
  EXPECT_TRUE(verify_statement(one).valid);
  EXPECT_FALSE(nlohmann::json::parse(one)["credentialSubject"].contains("payouts"));
}

TEST(Statement, LongDecimalWeights) {
  // A decimal's text as given, however long (trailing zeros), goes into the statement as is.
  const std::string long_text = "1." + std::string(700, '0');
  Policy p = single_level_policy({{"did:web:a.example", Weight::from_decimal(long_text)},
                                  {"did:web:" + std::string(600, 'b') + ".example", Weight::from_decimal("2")}});
  const std::string st = sign(3, p);
  const StatementCheck c = verify_statement(st);
  EXPECT_TRUE(c.valid) << c.reason;
  EXPECT_NE(st.find("\"did:web:a.example\":[\"" + long_text + "\",\"1\"]"), std::string::npos);
}

TEST(Statement, TablesThatDoNotAddUpFail) {
  const Policy p = cascade_policy();
  const std::string st = sign(1000, p);
  // More than one level needs the totals.
  StatementCheck c = verify_statement(resign(st, [](nlohmann::json& d) { d["credentialSubject"].erase("payouts"); },
                                             operator_id()));
  EXPECT_FALSE(c.valid);
  EXPECT_NE(c.reason.find("credentialSubject has no 'payouts'"), std::string::npos) << c.reason;
  // A level's payout changed (the totals left alone).
  c = verify_statement(resign(st, [](nlohmann::json& d) {
    auto& row = d["credentialSubject"]["levels"][2]["payees"]["did:web:carol.example"];
    row[1] = amount_to_string(parse_amount(row[1].get<std::string>()) + 1);
  }, operator_id()));
  EXPECT_FALSE(c.payouts_ok);
  EXPECT_NE(c.reason.find("credentialSubject.levels[2].payees gives did:web:carol.example"), std::string::npos) << c.reason;
  // A payee whose weight is null (a fallback's row) that is not the fallback.
  c = verify_statement(resign(st, [](nlohmann::json& d) {
    d["credentialSubject"]["levels"][2]["payees"]["did:web:carol.example"][0] = nullptr;
  }, operator_id()));
  EXPECT_FALSE(c.payouts_ok);
  // Rows that are not [weight, amount].
  c = verify_statement(resign(st, [](nlohmann::json& d) {
    d["credentialSubject"]["levels"][1]["payees"]["did:web:lab.example"] = {0.4};
  }, operator_id()));
  EXPECT_NE(c.reason.find("the row of did:web:lab.example is not [weight, amount]"), std::string::npos) << c.reason;
  // With one level, a totals table is not needed; when there is one it must hold.
  const Policy single = single_level_policy(test::payees_of({{"did:web:a.example", 70}, {"did:web:b.example", 30}}));
  const std::string one = sign(5, single);
  c = verify_statement(resign(one, [](nlohmann::json& d) {
    d["credentialSubject"]["payouts"] = {{"did:web:a.example", "4"}, {"did:web:b.example", "1"}};
  }, operator_id()));
  EXPECT_TRUE(c.valid) << c.reason;
  c = verify_statement(resign(one, [](nlohmann::json& d) {
    d["credentialSubject"]["payouts"] = {{"did:web:a.example", "5"}, {"did:web:b.example", "0"}};
  }, operator_id()));
  EXPECT_FALSE(c.valid);
  EXPECT_NE(c.reason.find("credentialSubject.payouts gives did:web:a.example 5"), std::string::npos) << c.reason;
}

TEST(Statement, OnlyOfACascadeResult) {
  // make_statement signs what run_cascade computed; a result put together otherwise is refused.
  CascadeResult r = run_cascade(10, single_level_policy(test::payees_of({{"did:web:a.example", 1}})));
  EXPECT_NO_THROW(make_statement(r, operator_id()));
  CascadeResult other = r;
  other.levels[0].payouts = split(10, test::payees_of({{"did:web:a.example", 1}}));
  EXPECT_THROW(make_statement(other, operator_id()), Error);
  other = r;
  other.policy = std::make_shared<const Policy>(single_level_policy(test::payees_of({{"did:web:b.example", 1}})));
  EXPECT_THROW(make_statement(other, operator_id()), Error);
  EXPECT_THROW(make_statement(CascadeResult{}, operator_id()), Error);
}

TEST(Statement, KnownAnswer) {
  // The format, pinned: 5 units by 70 and 30, signed by the all-zero test seed at a fixed
  // time (docs/royalty.md shows it; Python's `cryptography` re-verifies such files in
  // tests/python/test_royalty_cli.py).
  const std::array<uint8_t, 32> zero{};
  StatementOptions so;
  so.timestamp = "2026-11-25T12:00:00Z";
  const Policy p = single_level_policy(payees_of({{"did:web:b.example", 30}, {"did:web:a.example", 70}}));
  const std::string st = make_statement(run_cascade(5, p), Identity::from_seed(zero), so);
  EXPECT_EQ(st, R"({"@context":["https://www.w3.org/ns/credentials/v2"],"credentialSubject":{"levels":[{"kept":"5","name":"payees","payees":{"did:web:a.example":[70,"4"],"did:web:b.example":[30,"1"]},"received":"5"}],"negativeWeights":"clip","revenue":"5","rule":"didmark/largest-remainder/v1","type":"RoyaltySplit"},"issuer":"did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp","proof":{"@context":["https://www.w3.org/ns/credentials/v2"],"created":"2026-11-25T12:00:00Z","cryptosuite":"eddsa-jcs-2022","proofPurpose":"assertionMethod","proofValue":"z4WNbEk71hXgcKzU1fkuDWE5Uf1VjEhi4d1f2W7L4wevf5U78SLgmE3AP77NTha64oQNbhtG2SZtL5765UUz9J2g4","type":"DataIntegrityProof","verificationMethod":"did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp#z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"},"type":["VerifiableCredential","RoyaltyStatement"],"validFrom":"2026-11-25T12:00:00Z"})" "\n");
}

TEST(Statement, NeedsAnIdentity) {
  const Policy p = cascade_policy();
  EXPECT_THROW(make_statement(run_cascade(10, p), Identity{}), Error);
}

}  // namespace
}  // namespace didmark
