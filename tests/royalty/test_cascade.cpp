// Cascades: fee -> base-model owners -> data contributors, each level by the same rule.
#include <gtest/gtest.h>

#include <random>

#include "didmark/error.hpp"
#include "royalty_test_util.hpp"

namespace didmark {
namespace {

using test::payees_of;

Level level(std::string name, std::optional<int> bps, std::vector<Payee> ps) {
  Level l;
  l.name = std::move(name);
  l.keep_bps = bps;
  l.payees = std::move(ps);
  return l;
}

Policy three_levels() {
  Policy p;
  p.levels.push_back(level("platform fee", 1000, payees_of({{"did:web:market.example", 1}})));
  p.levels.push_back(level("base models", 3000, payees_of({{"did:web:basemodel-a.example", 0.6},
                                                            {"did:web:basemodel-b.example", 0.4}})));
  p.levels.push_back(level("data", std::nullopt, payees_of({{"did:web:data-c.example", 3},
                                                             {"did:web:data-d.example", 1},
                                                             {"did:web:market.example", 1}})));
  return p;
}

TEST(Cascade, ThreeLevels) {
  const CascadeResult r = run_cascade(1000, three_levels());
  ASSERT_EQ(r.levels.size(), 3u);
  EXPECT_EQ(r.levels[0].kept, 100u);
  EXPECT_EQ(r.levels[0].passed, 900u);
  EXPECT_EQ(r.levels[1].received, 900u);
  EXPECT_EQ(r.levels[1].kept, 270u);
  EXPECT_EQ(r.levels[2].received, 630u);
  EXPECT_EQ(r.levels[2].kept, 630u);
  EXPECT_EQ(r.levels[2].passed, 0u);
  std::map<std::string, const Payout*> by;
  Amount sum = 0;
  for (const auto& p : r.payees) {
    by[std::string(p.did)] = &p;
    sum += p.amount;
  }
  EXPECT_EQ(sum, 1000u);
  EXPECT_EQ(r.payees.size(), 5u);  // every payee once
  for (std::size_t i = 0; i + 1 < r.payees.size(); ++i) EXPECT_LT(r.payees[i].did, r.payees[i + 1].did);
  EXPECT_EQ(by["did:web:basemodel-a.example"]->amount, 162u);
  EXPECT_EQ(by["did:web:basemodel-b.example"]->amount, 108u);
  EXPECT_EQ(by["did:web:data-c.example"]->amount, 378u);  // 630 * 3/5
  EXPECT_EQ(by["did:web:data-d.example"]->amount, 126u);
  // The platform is paid at two levels: 100 as fee, 126 as a contributor.
  const Payout& m = *by["did:web:market.example"];
  EXPECT_EQ(m.amount, 226u);
  const std::vector<PathStep> path = r.path(m.did);
  ASSERT_EQ(path.size(), 2u);
  EXPECT_EQ(path[0].level, 0u);
  EXPECT_EQ(path[0].amount, 100u);
  EXPECT_EQ(path[1].level, 2u);
  EXPECT_EQ(path[1].amount, 126u);
}

TEST(Cascade, KeepRoundsHalfUpTowardTheLevel) {
  Policy p;
  p.levels.push_back(level("half", 5000, payees_of({{"did:web:a", 1}})));
  p.levels.push_back(level("rest", std::nullopt, payees_of({{"did:web:b", 1}})));
  const auto r = run_cascade(5, p);
  EXPECT_EQ(r.levels[0].kept, 3u);  // 2.5 -> 3
  EXPECT_EQ(r.levels[1].kept, 2u);
  const auto big = run_cascade(kMaxAmount, p);  // no overflow in A * bps
  EXPECT_EQ(big.levels[0].kept + big.levels[1].kept, kMaxAmount);
  EXPECT_EQ(big.levels[0].kept, kMaxAmount / 2 + 1);
  p.levels[0].keep_bps = 1;
  const auto tiny = run_cascade(kMaxAmount, p);
  EXPECT_EQ(tiny.levels[0].kept, (kMaxAmount / 10000) + ((kMaxAmount % 10000) + 5000) / 10000);
}

TEST(Cascade, TotalsAreExactOnRandomCascades) {
  std::mt19937_64 rng(9);
  for (int t = 0; t < 200; ++t) {
    Policy p;
    const int levels = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < levels; ++k) {
      std::vector<Payee> ps;
      const int n = 1 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i)
        ps.push_back({"did:web:p" + std::to_string(rng() % 8), Weight::from_double(static_cast<double>(rng() % 5))});
      std::sort(ps.begin(), ps.end(), [](const Payee& a, const Payee& b) { return a.did < b.did; });
      ps.erase(std::unique(ps.begin(), ps.end(), [](const Payee& a, const Payee& b) { return a.did == b.did; }),
               ps.end());
      p.levels.push_back(level("l" + std::to_string(k), k + 1 < levels ? std::optional<int>(rng() % 10001) : std::nullopt,
                               ps));
    }
    p.fallback = "did:web:fallback";
    const Amount r = (static_cast<Amount>(rng()) << 64) | rng();
    const auto res = run_cascade(r, p);
    Amount sum = 0, kept = 0;
    for (const auto& q : res.payees) {
      sum += q.amount;
      Amount path = 0;
      for (const auto& s : res.path(q.did)) path += s.amount;
      EXPECT_EQ(path, q.amount);
    }
    for (const auto& l : res.levels) kept += l.kept;
    EXPECT_EQ(sum, r);
    EXPECT_EQ(kept, r);
  }
}

TEST(Cascade, FallbacksAndErrors) {
  Policy p;
  p.levels.push_back(level("base models", 3000, payees_of({{"did:web:a", 0}})));
  p.levels.push_back(level("data", std::nullopt, payees_of({{"did:web:b", 1}})));
  try {
    run_cascade(100, p);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("level 'base models': all 1 weights are zero"), std::string::npos) << e.what();
  }
  p.fallback = "did:web:platform";
  auto r = run_cascade(100, p);
  EXPECT_EQ(r.payees.front().did, "did:web:a");
  EXPECT_EQ(r.payees.back().did, "did:web:platform");
  EXPECT_EQ(r.payees.back().amount, 30u);
  p.levels[0].fallback = "did:web:lab";  // a level's own fallback wins
  r = run_cascade(100, p);
  EXPECT_EQ(r.levels[0].payouts[1].did, "did:web:lab");
  EXPECT_EQ(r.levels[0].payouts[1].amount, 30u);

  Policy bad = three_levels();
  bad.levels.back().keep_bps = 5000;
  EXPECT_THROW(run_cascade(10, bad), Error);
  bad = three_levels();
  bad.levels[0].keep_bps = 10001;
  EXPECT_THROW(run_cascade(10, bad), Error);
  EXPECT_THROW(run_cascade(10, Policy{}), Error);
}

}  // namespace
}  // namespace didmark
