// The largest-remainder split: exactness, order independence, monotonicity, limits, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "didmark/error.hpp"
#include "royalty_test_util.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using test::as_map;
using test::payees_of;
using test::total;
using test::u128;

using test::error_of;

std::string did(int i) { return "did:web:payee" + std::to_string(i) + ".example"; }

// Weights spanning many magnitudes, some zero, some decimal strings.
std::vector<Payee> random_payees(std::mt19937_64& rng, int n) {
  std::vector<Payee> ps;
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < n; ++i) {
    const int kind = static_cast<int>(rng() % 6);
    Weight w;
    if (kind == 0) w = Weight::from_double(0);
    else if (kind == 1) w = Weight::from_double(std::ldexp(u(rng), static_cast<int>(rng() % 200) - 100));
    else if (kind == 2) w = Weight::from_decimal(std::to_string(rng() % 1000) + "." + std::to_string(rng() % 1000));
    else if (kind == 3) w = Weight::from_double(static_cast<double>(rng() % 100));
    else w = Weight::from_double(u(rng));
    ps.push_back({did(static_cast<int>(rng() % 100000)) + "-" + std::to_string(i), w});
  }
  return ps;
}

TEST(Weight, ExactValues) {
  const Weight a = Weight::from_double(0.1);
  EXPECT_EQ(a.mantissa(), static_cast<Amount>(3602879701896397ull));
  EXPECT_EQ(a.exp2(), -55);
  const Weight one = Weight::from_double(1.0);
  EXPECT_EQ(one.mantissa(), 1u);
  EXPECT_EQ(one.exp2(), 0);
  const Weight tiny = Weight::from_double(5e-324);
  EXPECT_EQ(tiny.mantissa(), 1u);
  EXPECT_EQ(tiny.exp2(), -1074);
  EXPECT_EQ(Weight::from_double(-0.0).sign(), 0);
  EXPECT_EQ(Weight::from_double(-2.5).sign(), -1);
  const Weight d = Weight::from_decimal("-2.50e3");
  EXPECT_EQ(d.mantissa(), 25u);
  EXPECT_EQ(d.exp2(), 2);
  EXPECT_EQ(d.exp5(), 2);
  EXPECT_EQ(d.sign(), -1);
  EXPECT_EQ(d.text(), "-2.50e3");
  EXPECT_EQ(Weight::from_decimal("0.000").sign(), 0);
  EXPECT_EQ(Weight::from_decimal("12345678901234567890123456789012345678").mantissa(),
            test::u128_of("12345678901234567890123456789012345678"));
}

TEST(Weight, RefusesWhatIsNotANumber) {
  for (const char* bad : {"", "01", "1.", ".5", "1e", "abc", "1.5x", "+1", " 1", "1 ", "0x10", "NaN", "-"})
    EXPECT_NE(error_of([&] { Weight::from_decimal(bad); }).find("is not a decimal number"), std::string::npos) << bad;
  EXPECT_NE(error_of([] { Weight::from_decimal("123456789012345678901234567890123456789"); }).find("39 significant digits"),
            std::string::npos);
  EXPECT_NE(error_of([] { Weight::from_decimal("1e100"); }).find("outside the supported range"), std::string::npos);
  EXPECT_NE(error_of([] { Weight::from_decimal("1e-101"); }).find("outside the supported range"), std::string::npos);
  EXPECT_NO_THROW(Weight::from_decimal("9.99e99"));
  EXPECT_NO_THROW(Weight::from_decimal("1e-100"));
  EXPECT_THROW(Weight::from_double(NAN), Error);
  EXPECT_THROW(Weight::from_double(INFINITY), Error);
}

TEST(Amount, ParseAndFormat) {
  EXPECT_EQ(amount_to_string(kMaxAmount), "340282366920938463463374607431768211455");
  EXPECT_EQ(parse_amount("340282366920938463463374607431768211455"), kMaxAmount);
  EXPECT_EQ(parse_amount("007"), 7u);
  EXPECT_EQ(amount_to_string(0), "0");
  EXPECT_NE(error_of([] { parse_amount("340282366920938463463374607431768211456"); }).find("exceeds the largest amount"),
            std::string::npos);
  for (const char* bad : {"", "-1", " 1", "1.5", "1e3", "12a"})
    EXPECT_THROW(parse_amount(bad), Error) << bad;
}

TEST(Split, FiveUnitsBySeventyAndThirtyInEitherOrder) {
  const auto a = split(5, payees_of({{"did:web:a.example", 70}, {"did:web:b.example", 30}}));
  const auto b = split(5, payees_of({{"did:web:b.example", 30}, {"did:web:a.example", 70}}));
  EXPECT_EQ(a, b);
  // 3.5 and 1.5: one unit left, equal remainders, the smaller DID takes it.
  EXPECT_EQ(as_map(a)["did:web:a.example"], 4u);
  EXPECT_EQ(as_map(a)["did:web:b.example"], 1u);
  // With the DIDs the other way round the tie goes the other way, in both orders too.
  const auto c = split(5, payees_of({{"did:web:b.example", 70}, {"did:web:a.example", 30}}));
  const auto d = split(5, payees_of({{"did:web:a.example", 30}, {"did:web:b.example", 70}}));
  EXPECT_EQ(c, d);
  EXPECT_EQ(as_map(c)["did:web:b.example"], 3u);
  EXPECT_EQ(as_map(c)["did:web:a.example"], 2u);
}

TEST(Split, MatchesTheReferenceOnIntegerWeights) {
  std::mt19937_64 rng(3);
  for (int t = 0; t < 3000; ++t) {
    const int n = 1 + static_cast<int>(rng() % 12);
    std::vector<Payee> ps;
    std::vector<std::pair<std::string, uint64_t>> ref;
    for (int i = 0; i < n; ++i) {
      const uint64_t w = t % 3 == 0 ? rng() % 4 : rng() % (uint64_t(1) << 40);  // many ties when small
      ps.push_back({did(i), Weight::from_double(static_cast<double>(w))});
      ref.push_back({did(i), w});
    }
    bool any = false;
    for (auto& r : ref) any = any || r.second;
    if (!any) continue;
    const Amount r = t % 2 ? rng() % 1000 : (static_cast<Amount>(rng() % (uint64_t(1) << 16)) << 64) | rng();
    EXPECT_EQ(as_map(split(r, ps)), test::reference_split(r, ref)) << "trial " << t;
  }
}

TEST(Split, PropertiesOnRandomInputs) {
  std::mt19937_64 rng(4);
  for (int t = 0; t < 400; ++t) {
    auto ps = random_payees(rng, 1 + static_cast<int>(rng() % 30));
    ps.push_back({"did:web:anchor.example", Weight::from_double(1)});  // never all zero
    const Amount r = t % 3 == 0 ? rng() % 100 : (static_cast<Amount>(rng()) << 64) | rng();
    const auto out = split(r, ps);
    ASSERT_EQ(out.size(), ps.size());
    EXPECT_EQ(total(out), r);  // exact
    for (std::size_t i = 0; i + 1 < out.size(); ++i) EXPECT_LT(out[i].did, out[i + 1].did);
    const auto m = as_map(out);
    for (const auto& p : ps) {
      EXPECT_LE(m.at(p.did), r);
      if (p.weight.sign() == 0) {
        EXPECT_EQ(m.at(p.did), 0u) << "zero weight paid";
      }
    }
    // Order of the input does not matter.
    auto shuffled = ps;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    EXPECT_EQ(split(r, shuffled), out);
    // Same input, same output; and splitting again by the payouts returns the payouts.
    EXPECT_EQ(split(r, ps), out);
    if (r > 0 && amount_to_string(r).size() <= 38) {
      std::vector<Payee> by_payout;
      for (const auto& p : out) by_payout.push_back({std::string(p.did), Weight::from_decimal(amount_to_string(p.amount))});
      bool nonzero = false;
      for (const auto& p : out) nonzero = nonzero || p.amount > 0;
      if (nonzero) {
        EXPECT_EQ(split(r, by_payout), out);
      }
    }
    // Raising one payee's weight never lowers its payout.
    const std::size_t k = rng() % ps.size();
    auto raised = ps;
    const double before = raised[k].weight.to_double();
    raised[k].weight = Weight::from_double(before == 0 ? 0.5 : before * (1.0 + static_cast<double>(rng() % 100) / 10.0));
    EXPECT_GE(as_map(split(r, raised)).at(ps[k].did), m.at(ps[k].did)) << "monotonicity, trial " << t;
  }
}

TEST(Split, ExactDoublesAndExactDecimals) {
  // Decimal strings are exact: 0.1 : 0.2 : 0.3 is exactly 1 : 2 : 3.
  std::vector<Payee> dec = {{"did:web:a", Weight::from_decimal("0.1")},
                            {"did:web:b", Weight::from_decimal("0.2")},
                            {"did:web:c", Weight::from_decimal("0.3")}};
  const Amount r = test::u128_of("6000000000000000000000000000000");
  auto m = as_map(split(r, dec));
  EXPECT_EQ(m["did:web:a"], test::u128_of("1000000000000000000000000000000"));
  EXPECT_EQ(m["did:web:b"], test::u128_of("2000000000000000000000000000000"));
  EXPECT_EQ(m["did:web:c"], test::u128_of("3000000000000000000000000000000"));
  // JSON numbers are the doubles they denote, taken exactly (Python's Fraction agrees).
  m = as_map(split(r, payees_of({{"did:web:a", 0.1}, {"did:web:b", 0.2}, {"did:web:c", 0.3}})));
  EXPECT_EQ(m["did:web:a"], test::u128_of("1000000000000000046259292692715"));
  EXPECT_EQ(m["did:web:b"], test::u128_of("2000000000000000092518585385430"));
  EXPECT_EQ(m["did:web:c"], test::u128_of("2999999999999999861222121921855"));
}

TEST(Split, EdgeCases) {
  // One payee takes everything; zero revenue pays nobody.
  EXPECT_EQ(as_map(split(12345, payees_of({{"did:web:solo", 0.001}})))["did:web:solo"], 12345u);
  for (const auto& p : split(0, payees_of({{"did:web:a", 1}, {"did:web:b", 2}}))) EXPECT_EQ(p.amount, 0u);
  // The largest amount: 2^128 - 1 is divisible by 3; halves differ by the tie-break.
  auto m = as_map(split(kMaxAmount, payees_of({{"did:web:a", 1}, {"did:web:b", 1}, {"did:web:c", 1}})));
  EXPECT_EQ(m["did:web:a"], kMaxAmount / 3);
  EXPECT_EQ(m["did:web:c"], kMaxAmount / 3);
  m = as_map(split(kMaxAmount, payees_of({{"did:web:b", 1}, {"did:web:a", 1}})));
  EXPECT_EQ(m["did:web:a"], test::u128_of("170141183460469231731687303715884105728"));
  EXPECT_EQ(m["did:web:b"], test::u128_of("170141183460469231731687303715884105727"));
  // The extremes of the double range with the largest amount: nothing overflows.
  m = as_map(split(kMaxAmount, payees_of({{"did:web:a", 5e-324}, {"did:web:b", 1.7976931348623157e308}, {"did:web:c", 1}})));
  EXPECT_EQ(m["did:web:b"], kMaxAmount);
  // ... nor with decimals at the edges of their range mixed in.
  std::vector<Payee> wide = payees_of({{"did:web:a", 5e-324}, {"did:web:b", 1.7976931348623157e308}});
  wide.push_back({"did:web:c", Weight::from_decimal("1e-100")});
  wide.push_back({"did:web:d", Weight::from_decimal("99999999999999999999999999999999999999e62")});
  wide.push_back({"did:web:e", Weight::from_decimal("1.2345678901234567890123456789012345678e-63")});
  EXPECT_EQ(total(split(kMaxAmount, wide)), kMaxAmount);
  // Many payees with equal weights: the remainder goes to the smallest DIDs.
  std::vector<Payee> eq;
  for (int i = 0; i < 10; ++i) eq.push_back({"did:web:p" + std::to_string(i), Weight::from_double(0.7)});
  const auto out = split(13, eq);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(out[static_cast<std::size_t>(i)].amount, i < 3 ? 2u : 1u);
}

TEST(Split, NegativeWeights) {
  const auto ps = payees_of({{"did:web:a", -1}, {"did:web:b", 1}, {"did:web:c", 3}});
  auto m = as_map(split(8, ps));  // clip
  EXPECT_EQ(m["did:web:a"], 0u);
  EXPECT_EQ(m["did:web:b"], 2u);
  EXPECT_EQ(m["did:web:c"], 6u);
  SplitOptions shift;
  shift.negative = NegativeWeights::shift;  // 0, 2, 4
  m = as_map(split(12, ps, shift));
  EXPECT_EQ(m["did:web:a"], 0u);
  EXPECT_EQ(m["did:web:b"], 4u);
  EXPECT_EQ(m["did:web:c"], 8u);
  SplitOptions refuse;
  refuse.negative = NegativeWeights::refuse;
  EXPECT_NE(error_of([&] { split(8, ps, refuse); }).find("payee did:web:a has a negative weight (-1)"),
            std::string::npos);
  // Shift with decimals and doubles mixed, exactly: -0.5, 0.25 (0.75), 1.5 (2.0).
  std::vector<Payee> mixed = {{"did:web:x", Weight::from_decimal("-0.5")},
                              {"did:web:y", Weight::from_double(0.25)},
                              {"did:web:z", Weight::from_decimal("1.5")}};
  m = as_map(split(11, mixed, shift));
  EXPECT_EQ(m["did:web:x"], 0u);
  EXPECT_EQ(m["did:web:y"], 3u);
  EXPECT_EQ(m["did:web:z"], 8u);
}

TEST(Split, AllZeroGoesToTheFallbackOrIsRefused) {
  const auto zeros = payees_of({{"did:web:a", 0}, {"did:web:b", -2}});
  EXPECT_NE(error_of([&] { split(10, zeros); }).find("all 2 weights are zero (negative weights count as zero)"),
            std::string::npos);
  SplitOptions fb;
  fb.fallback = "did:web:platform";
  const auto out = split(10, zeros, fb);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(as_map(out)["did:web:platform"], 10u);
  EXPECT_EQ(out[2].did, "did:web:platform");  // sorted among the payees
  fb.fallback = "did:web:b";                  // the fallback may be a payee
  EXPECT_EQ(as_map(split(10, zeros, fb))["did:web:b"], 10u);
  EXPECT_EQ(split(10, zeros, fb).size(), 2u);
  fb.fallback = "did:web:0";
  EXPECT_EQ(split(10, std::vector<Payee>{}, fb).front().amount, 10u);
}

TEST(Split, RefusesBadPayees) {
  EXPECT_NE(error_of([] { split(10, std::vector<Payee>{}); }).find("no payees"), std::string::npos);
  EXPECT_NE(error_of([] { split(10, payees_of({{"did:web:a", 1}, {"did:web:b", 2}, {"did:web:a", 3}})); })
                .find("duplicate payee did:web:a"),
            std::string::npos);
  EXPECT_NE(error_of([] { split(10, payees_of({{"did:web:a", 1}, {"alice", 2}})); }).find("invalid DID 'alice'"),
            std::string::npos);
  SplitOptions fb;
  fb.fallback = "nobody";
  EXPECT_THROW(split(10, payees_of({{"did:web:a", 0}}), fb), Error);
}

}  // namespace
}  // namespace didmark
