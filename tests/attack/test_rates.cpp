// The null side: wrong keys, error rates against a known distribution, Phi^-1.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "didmark/attack.hpp"

using namespace didmark;

TEST(NullKeys, DeterministicAndDistinct) {
  EXPECT_EQ(null_key(0), null_key(0));
  std::set<std::string> seen;
  for (uint64_t i = 0; i < 1000; ++i) seen.insert(null_key(i).to_hex());
  EXPECT_EQ(seen.size(), 1000u);
  // Pinned: a report made today must be reproducible by anyone tomorrow.
  EXPECT_EQ(null_key(0).to_hex().size(), 64u);
  EXPECT_NE(null_key(1), null_key(2));
}

TEST(NormalQuantile, KnownValues) {
  EXPECT_NEAR(normal_quantile(0.5), 0.0, 1e-12);
  EXPECT_NEAR(normal_quantile(0.975), 1.959963984540054, 1e-9);
  EXPECT_NEAR(normal_quantile(1 - 1e-3), 3.090232306167814, 1e-8);
  EXPECT_NEAR(normal_quantile(1 - 1e-6), 4.753424308822899, 1e-7);
  EXPECT_NEAR(normal_quantile(1e-9), -5.997807015007686, 1e-7);
}

// A null sample drawn from N(0, 1): the empirical FPR at a threshold is the Gaussian tail
// within sampling error, the empirical 1e-3 threshold is Phi^-1(0.999) within error, and
// TPR counts the positives above each threshold exactly.
TEST(ErrorRates, AgainstAKnownDistribution) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> nd;
  std::vector<double> null(200000);
  for (auto& z : null) z = nd(rng);
  const std::vector<double> pos{2.0, 3.2, 3.5, 4.0, 5.0, 5.5, 7.0, 30.0};
  // p_threshold 0.0227 -> Hoeffding z = sqrt(2 ln(1/p)) = 2.757; P(N(0,1) >= 2.757) = 0.00292.
  const double p = 0.0227;
  const ErrorRates r = error_rates(null, pos, p);
  EXPECT_EQ(r.null_count, 200000);
  EXPECT_NEAR(r.null_mean, 0, 0.01);
  EXPECT_NEAR(r.null_sd, 1, 0.01);
  const double zt = hoeffding_z_threshold(p);
  const double tail = 0.5 * std::erfc(zt / std::sqrt(2.0));
  EXPECT_NEAR(r.empirical_fpr, tail, 4 * std::sqrt(tail / 200000));
  EXPECT_FALSE(r.extrapolated_1e3);  // 200 values above: measured, not extrapolated
  EXPECT_NEAR(r.z_empirical_1e3, 3.0902, 0.08);
  EXPECT_TRUE(r.extrapolated_1e6);
  EXPECT_NEAR(r.z_empirical_1e6, 4.7534, 0.05);
  EXPECT_DOUBLE_EQ(r.z_bound_1e3, std::sqrt(2 * std::log(1e3)));
  EXPECT_DOUBLE_EQ(r.z_bound_1e6, std::sqrt(2 * std::log(1e6)));
  // Bound thresholds 3.717 and 5.257; empirical about 3.09 and 4.75.
  EXPECT_DOUBLE_EQ(r.tpr_bound_1e3, 5.0 / 8);
  EXPECT_DOUBLE_EQ(r.tpr_bound_1e6, 3.0 / 8);
  EXPECT_DOUBLE_EQ(r.tpr_empirical_1e3, 7.0 / 8);
  EXPECT_DOUBLE_EQ(r.tpr_empirical_1e6, 4.0 / 8);
  // The empirical threshold really leaves at most 1e-3 of the null above it.
  int above = 0;
  for (double z : null) above += z >= r.z_empirical_1e3;
  EXPECT_LE(above, 200);
  EXPECT_GE(above, 190);
}

TEST(ErrorRates, EmptySides) {
  const ErrorRates r = error_rates({}, {}, 1e-9);
  EXPECT_EQ(r.null_count, 0);
  EXPECT_EQ(r.tpr_bound_1e3, 0);
  EXPECT_TRUE(r.extrapolated_1e3);
}
