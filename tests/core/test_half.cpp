#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "didmark/detail/half.hpp"

namespace d = didmark::detail;

namespace {
uint16_t f16_bits(_Float16 h) {
  uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
_Float16 bits_f16(uint16_t u) {
  _Float16 h;
  std::memcpy(&h, &u, 2);
  return h;
}
bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || d::f32_bits(a) == d::f32_bits(b); }

// Reference RNE to bfloat16 from the two candidate neighbours, chosen by exact distance.
uint16_t bf16_reference(float f) {
  if (std::isnan(f)) return 0;  // not compared
  const uint32_t x = d::f32_bits(f);
  const uint16_t lo = static_cast<uint16_t>(x >> 16);
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  const double v = f, a = d::bf16_to_f32(lo);
  if ((x & 0xFFFF) == 0) return lo;
  // Past the largest finite value, rounding treats Inf as the next step (2^128).
  const double b = (hi & 0x7FFF) == 0x7F80 ? std::copysign(std::ldexp(1.0, 128), static_cast<double>(f))
                                           : static_cast<double>(d::bf16_to_f32(hi));
  const double da = std::fabs(v - a), db = std::fabs(b - v);
  if (da < db) return lo;
  if (db < da) return hi;
  return (lo & 1) ? hi : lo;
}
}  // namespace

TEST(Half, F16ToF32ExhaustiveAgainstCompiler) {
  for (uint32_t u = 0; u < 65536; ++u) {
    const float want = static_cast<float>(bits_f16(static_cast<uint16_t>(u)));
    ASSERT_TRUE(same_float(d::f16_to_f32(static_cast<uint16_t>(u)), want)) << "bits " << std::hex << u;
  }
}

TEST(Half, F32ToF16RoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> any;
  auto check = [](float f) {
    const uint16_t want = f16_bits(static_cast<_Float16>(f));
    const uint16_t got = d::f32_to_f16_rne(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(d::f16_to_f32(got)));
    } else {
      EXPECT_EQ(got, want) << "value " << f << " bits " << std::hex << d::f32_bits(f);
    }
  };
  for (int i = 0; i < 2000000; ++i) check(d::bits_f32(any(rng)));
  // Every f16 value and the midpoints either side of it (tie cases).
  for (uint32_t u = 0; u < 0x7C00; ++u) {
    const float v = d::f16_to_f32(static_cast<uint16_t>(u));
    const float next = d::f16_to_f32(static_cast<uint16_t>(u + 1));
    check(v);
    check(-v);
    check(0.5f * (v + next));
    check(std::nextafter(0.5f * (v + next), 0.0f));
    check(std::nextafter(0.5f * (v + next), INFINITY));
  }
  for (float f : {65504.0f, 65519.0f, 65520.0f, 1e9f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f, 1e-30f, -0.0f, INFINITY,
                  -INFINITY, std::numeric_limits<float>::quiet_NaN()})
    check(f);
}

TEST(Half, BF16RoundTripAndNearestEven) {
  for (uint32_t u = 0; u < 65536; ++u) {
    const uint16_t h = static_cast<uint16_t>(u);
    const float f = d::bf16_to_f32(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(d::f32_to_bf16_rne(f), h);
  }
  std::mt19937 rng(2);
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 2000000; ++i) {
    const float f = d::bits_f32(any(rng));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(d::bf16_to_f32(d::f32_to_bf16_rne(f))));
      continue;
    }
    ASSERT_EQ(d::f32_to_bf16_rne(f), bf16_reference(f)) << f;
  }
}

// Stochastic rounding lands on one of the two neighbours, with the probability that makes
// the expectation equal to the input.
template <class ToHalf, class FromHalf>
void check_sr_unbiased(ToHalf to, FromHalf from, float v) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any;
  const int n = 200000;
  double sum = 0;
  float lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < n; ++i) {
    const float r = from(to(v, any(rng)));
    lo = std::min(lo, r);
    hi = std::max(hi, r);
    sum += r;
  }
  const double mean = sum / n;
  const double gap = static_cast<double>(hi) - static_cast<double>(lo);
  EXPECT_LE(lo, v);
  EXPECT_GE(hi, v);
  // Bernoulli mean error: sd = gap * 0.5 / sqrt(n); allow 6 sd.
  EXPECT_NEAR(mean, v, 6 * 0.5 * gap / std::sqrt(n) + 1e-12) << v;
}

TEST(Half, StochasticRoundingIsUnbiased) {
  for (float v : {1.0001f, -3.14159f, 1000.7f, 6.1e-5f, 3.0e-6f, -2.5e-7f, 65000.3f}) {
    check_sr_unbiased(d::f32_to_f16_sr, d::f16_to_f32, v);
    check_sr_unbiased(d::f32_to_bf16_sr, d::bf16_to_f32, v);
  }
}

TEST(Half, StochasticRoundingKeepsRepresentableValuesAndSpecials) {
  std::mt19937 rng(4);
  std::uniform_int_distribution<uint32_t> any;
  for (uint32_t u = 0; u < 0x7C00; u += 7) {
    const float v = d::f16_to_f32(static_cast<uint16_t>(u));
    EXPECT_EQ(d::f32_to_f16_sr(v, any(rng)), u);
    EXPECT_EQ(d::f32_to_bf16_sr(d::bf16_to_f32(static_cast<uint16_t>(u)), any(rng)), u);
  }
  EXPECT_EQ(d::f32_to_f16_sr(65504.0f, 0u), 0x7BFFu);
  EXPECT_EQ(d::f32_to_f16_sr(65510.0f, 0u), 0x7BFFu);  // never rounds a finite value to Inf
  EXPECT_EQ(d::f32_to_f16_sr(INFINITY, 0u), 0x7C00u);
  EXPECT_TRUE(std::isnan(d::f16_to_f32(d::f32_to_f16_sr(NAN, 0u))));
  EXPECT_EQ(d::f32_to_bf16_sr(d::bits_f32(0x7F7FFFFFu), 0u), 0x7F7Fu);
  EXPECT_EQ(d::f32_to_bf16_sr(-INFINITY, 0u), 0xFF80u);
}
