// The fast paths of the split checked against the general ones: the 128-bit divisor with a
// precomputed reciprocal against the big-integer division, the 128-bit weights against the
// big-integer weights, and the radix sort of DIDs against std::sort.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "didmark/error.hpp"
#include "royalty/bigint.hpp"
#include "royalty/fixed_div.hpp"
#include "royalty/split_detail.hpp"
#include "royalty_test_util.hpp"

namespace didmark {
namespace {

using detail::BigUInt;
using detail::u128;

u128 rand_bits(std::mt19937_64& rng, int bits) {
  const u128 v = (static_cast<u128>(rng()) << 64) | rng();
  return bits >= 128 ? v : (bits <= 0 ? 0 : v & ((static_cast<u128>(1) << bits) - 1));
}

// floor(n * 2^64 / d) by the big integers: (top 128 bits, low 64 bits).
std::pair<u128, uint64_t> reference_share(const BigUInt& n, u128 d) {
  BigUInt u = n;
  u <<= 64;
  BigUInt q, r;
  BigUInt::divmod(u, BigUInt(d), q, r);
  EXPECT_LE(q.size(), 3);
  return {(static_cast<u128>(q.limb(2)) << 64) | q.limb(1), q.limb(0)};
}

TEST(FixedDiv, MatchesBigIntegers) {
  std::mt19937_64 rng(11);
  const u128 one = 1;
  std::vector<u128> divisors = {1,          2,         3,           ~uint64_t(0),          one << 64,
                                (one << 64) + 1,       one << 127,  (one << 127) + 1,      ~u128(0),
                                ~u128(0) - 1,          (one << 64) - 1 + (one << 100)};
  for (int t = 0; t < 200; ++t) divisors.push_back(rand_bits(rng, 1 + static_cast<int>(rng() % 128)) | 1);
  for (const u128 d : divisors) {
    const detail::Divisor128 div(d);
    for (int t = 0; t < 200; ++t) {
      // n = R * W below 2^192 (the split checks bits(R) + bits(W) <= 192) with R < 2^128 and
      // W <= d: the quotient stays below 2^192.
      const u128 r = t % 7 == 0 ? ~u128(0) : rand_bits(rng, 1 + static_cast<int>(rng() % 128));
      const int rbits = BigUInt(r).bit_length();
      u128 w = t % 5 == 0 ? d : rand_bits(rng, 1 + static_cast<int>(rng() % 128));
      if (w > d) w = d;
      if (BigUInt(w).bit_length() + rbits > 192) w >>= BigUInt(w).bit_length() + rbits - 192;
      BigUInt n(r);
      n = n * BigUInt(w);
      ASSERT_LE(n.size(), 3);
      u128 share;
      const uint64_t frac = detail::share_and_fraction(div, n.limb(2), n.limb(1), n.limb(0), share);
      const auto [want_share, want_frac] = reference_share(n, d);
      ASSERT_TRUE(share == want_share && frac == want_frac)
          << "d = " << BigUInt(d).to_string() << ", n = " << n.to_string();
    }
  }
}

// Weights of many kinds: doubles across the exponent range, decimals, zeros, negatives.
std::vector<detail::ExactWeight> random_weights(std::mt19937_64& rng, std::size_t n, int spread) {
  std::vector<detail::ExactWeight> ws;
  std::uniform_real_distribution<double> u(0, 1);
  for (std::size_t i = 0; i < n; ++i) {
    Weight w;
    switch (rng() % 7) {
      case 0: w = Weight::from_double(0); break;
      case 1: w = Weight::from_double(-u(rng) * 4); break;
      case 2: w = Weight::from_decimal(std::to_string(rng() % 100000) + "." + std::to_string(rng() % 1000)); break;
      case 3: w = Weight::from_decimal(std::to_string(1 + rng() % 9) + "e" + std::to_string(static_cast<int>(rng() % 21) - 10)); break;
      case 4: w = Weight::from_double(static_cast<double>(rng() % 1000)); break;
      default: w = Weight::from_double(std::ldexp(u(rng), static_cast<int>(rng() % static_cast<uint64_t>(2 * spread + 1)) - spread));
    }
    ws.push_back(detail::exact_weight(w));
  }
  return ws;
}

void expect_same_split(Amount r, const std::vector<detail::ExactWeight>& ws, NegativeWeights neg, const std::string& what) {
  const auto fast = detail::split_sorted(r, ws, neg, detail::SplitArithmetic::automatic);
  const auto big = detail::split_sorted(r, ws, neg, detail::SplitArithmetic::big);
  ASSERT_EQ(fast.has_value(), big.has_value()) << what;
  if (!fast) return;
  ASSERT_EQ(*fast, *big) << what;
  Amount sum = 0;
  for (Amount a : *fast) sum += a;
  ASSERT_EQ(sum, r) << what;
}

TEST(Split, NarrowAndBigArithmeticAgree) {
  std::mt19937_64 rng(12);
  for (int t = 0; t < 600; ++t) {
    // Small spreads fit in 128 bits (the fast path); wide ones do not (the big integers).
    const int spread = t % 3 == 0 ? 5 : (t % 3 == 1 ? 40 : 70);
    const auto ws = random_weights(rng, 1 + rng() % 60, spread);
    const Amount r = t % 4 == 0 ? rng() % 1000
                                : (t % 4 == 1 ? kMaxAmount - rng() % 1000 : rand_bits(rng, 1 + static_cast<int>(rng() % 128)));
    for (NegativeWeights neg : {NegativeWeights::clip, NegativeWeights::shift})
      expect_same_split(r, ws, neg, "trial " + std::to_string(t));
  }
}

TEST(Split, NarrowArithmeticAtItsLimits) {
  // Weights whose common-scale integers need close to 128 bits, sums close to 2^128, and
  // R * W close to 2^192: on either side of every limit the two paths agree.
  std::mt19937_64 rng(13);
  for (int bits = 100; bits <= 130; ++bits) {
    for (int t = 0; t < 20; ++t) {
      std::vector<detail::ExactWeight> ws;
      const std::size_t n = 1 + rng() % 8;
      for (std::size_t i = 0; i < n; ++i) {
        detail::ExactWeight w;
        w.mant_lo = (rng() | 1) & ((uint64_t(1) << 53) - 1);
        w.e2 = static_cast<int16_t>(i == 0 ? 0 : rng() % static_cast<uint64_t>(bits - 52));
        w.sign = 1;
        ws.push_back(w);
      }
      for (const Amount r : {kMaxAmount, kMaxAmount >> (rng() % 64), static_cast<Amount>(rng()), Amount(1)})
        expect_same_split(r, ws, NegativeWeights::clip, "bits " + std::to_string(bits));
    }
  }
  // Equal weights (every remainder ties) and sums below 2^64 (a one-limb divisor).
  for (std::size_t n : {2u, 3u, 7u, 1000u}) {
    std::vector<detail::ExactWeight> ws(n, detail::exact_weight(Weight::from_double(0.7)));
    for (const Amount r : {Amount(13), kMaxAmount, kMaxAmount / 3})
      expect_same_split(r, ws, NegativeWeights::clip, "equal weights, n " + std::to_string(n));
  }
}

TEST(Split, SortedOrderMatchesStdSort) {
  std::mt19937_64 rng(14);
  for (const std::size_t n : {0u, 1u, 2u, 100u, 4095u, 4096u, 5000u, 20000u}) {
    for (int variant = 0; variant < 3; ++variant) {
      std::vector<std::string> ids;
      for (std::size_t i = 0; i < n; ++i) {
        std::string s;
        if (variant == 0) {  // one long common prefix, then 8 random letters
          s = "did:web:prefix.example:";
          for (int k = 0; k < 8; ++k) s.push_back(static_cast<char>('a' + rng() % 3));
        } else if (variant == 1) {  // the first 1024 share a longer prefix than the rest
          s = i < 1024 ? "did:web:aaaaaaaaaaaa" : "did:web:" + std::string(1 + rng() % 12, 'a');
          s += std::to_string(rng() % 50);
        } else {  // varied lengths, prefixes of each other, bytes above 0x7f
          s = std::string(rng() % 12, static_cast<char>('a' + rng() % 2));
          if (rng() % 4 == 0) s.push_back(static_cast<char>(0x80 + rng() % 0x7f));
        }
        ids.push_back(std::move(s));
      }
      std::vector<std::string_view> views(ids.begin(), ids.end());
      const auto order = detail::sorted_order(views);
      ASSERT_EQ(order.size(), n);
      std::vector<std::string_view> got;
      for (uint32_t i : order) got.push_back(views[i]);
      std::vector<std::string_view> want = views;
      std::sort(want.begin(), want.end());
      ASSERT_EQ(got, want) << "n " << n << " variant " << variant;
    }
  }
}

TEST(Split, DuplicatesAmongManyPayees) {
  std::vector<Payee> ps;
  for (int i = 0; i < 6000; ++i) ps.push_back({"did:web:p" + std::to_string(i) + ".example", Weight::from_double(1)});
  ps.push_back({"did:web:p17.example", Weight::from_double(2)});  // far from its twin
  try {
    split(100, ps);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate payee did:web:p17.example"), std::string::npos) << e.what();
  }
  // A negative weight with the refusing policy, found among many.
  ps.pop_back();
  ps[4321].weight = Weight::from_decimal("-0.5");
  SplitOptions refuse;
  refuse.negative = NegativeWeights::refuse;
  try {
    split(100, ps, refuse);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("payee did:web:p4321.example has a negative weight (-0.5)"), std::string::npos)
        << e.what();
  }
}

TEST(Payouts, OutliveTheirInputs) {
  Payouts kept;
  {
    std::vector<Payee> ps;
    for (int i = 0; i < 50; ++i) ps.push_back({"did:web:" + std::string(40, 'x') + std::to_string(i), Weight::from_double(i)});
    const Payouts out = split(1000, ps);
    kept = out;  // a copy shares the DIDs' text
  }
  ASSERT_EQ(kept.size(), 50u);
  EXPECT_EQ(kept[0].did, "did:web:" + std::string(40, 'x') + "0");
  EXPECT_EQ(test::total(kept), 1000u);

  // A cascade keeps its policy: its payouts view the policy's DIDs and keep it alive.
  Payouts level;
  {
    Policy p = single_level_policy(test::payees_of({{"did:web:a.example", 1}, {"did:web:b.example", 3}}));
    const CascadeResult r = run_cascade(8, std::move(p));
    level = r.levels[0].payouts;
  }
  ASSERT_EQ(level.size(), 2u);
  EXPECT_EQ(level[1].did, "did:web:b.example");
  EXPECT_EQ(level[1].amount, 6u);
}

TEST(Cascade, TotalsMatchAReferenceMerge) {
  std::mt19937_64 rng(15);
  for (int t = 0; t < 100; ++t) {
    Policy p;
    const int levels = 2 + static_cast<int>(rng() % 4);
    for (int k = 0; k < levels; ++k) {
      Level l;
      l.name = "l" + std::to_string(k);
      if (k + 1 < levels) l.keep_bps = static_cast<int>(rng() % 10001);
      std::map<std::string, double> ws;
      const int n = 1 + static_cast<int>(rng() % (k == levels - 1 ? 3000 : 20));
      for (int i = 0; i < n; ++i) ws["did:web:p" + std::to_string(rng() % 4000)] = static_cast<double>(rng() % 7);
      for (const auto& [d, w] : ws) l.payees.push_back({d, Weight::from_double(w)});
      std::shuffle(l.payees.begin(), l.payees.end(), rng);
      p.levels.push_back(std::move(l));
    }
    p.fallback = "did:web:fallback";
    const Amount revenue = rand_bits(rng, 100);
    const CascadeResult r = run_cascade(revenue, p);
    std::map<std::string, Amount> want;
    std::map<std::string, std::vector<PathStep>> paths;
    for (std::size_t k = 0; k < r.levels.size(); ++k)
      for (const Payout& q : r.levels[k].payouts) {
        want[std::string(q.did)] += q.amount;
        paths[std::string(q.did)].push_back({k, q.amount});
      }
    ASSERT_EQ(r.payees.size(), want.size());
    std::size_t i = 0;
    for (const auto& [d, a] : want) {
      EXPECT_EQ(r.payees[i].did, d);
      EXPECT_EQ(r.payees[i].amount, a);
      const auto path = r.path(d);
      ASSERT_EQ(path.size(), paths[d].size());
      for (std::size_t s = 0; s < path.size(); ++s) {
        EXPECT_EQ(path[s].level, paths[d][s].level);
        EXPECT_EQ(path[s].amount, paths[d][s].amount);
      }
      ++i;
    }
    EXPECT_EQ(test::total(r.payees), revenue);
    EXPECT_TRUE(r.path("did:web:nobody").empty());
  }
}

}  // namespace
}  // namespace didmark
