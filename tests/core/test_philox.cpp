#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/philox.hpp"

using didmark::detail::philox4x32_10;
using didmark::detail::u32x2;
using didmark::detail::u32x4;

namespace {
void expect_kat(u32x4 c, u32x2 k, u32x4 want) {
  const u32x4 got = philox4x32_10(c, k);
  EXPECT_EQ(got.x, want.x);
  EXPECT_EQ(got.y, want.y);
  EXPECT_EQ(got.z, want.z);
  EXPECT_EQ(got.w, want.w);
}
}  // namespace

// The three Random123 known-answer vectors listed in DESIGN.md.
TEST(Philox, KnownAnswerZero) {
  expect_kat({0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
}
TEST(Philox, KnownAnswerOnes) {
  expect_kat({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu},
             {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
}
TEST(Philox, KnownAnswerPi) {
  expect_kat({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
             {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST(Carrier, SignsAreBalancedAndBitsCycle) {
  didmark::detail::CarrierSpec s{{1, 2}, {3, 4}, 7, 256};
  int64_t ones = 0;
  const int blocks = 4096;
  for (int g = 0; g < blocks; ++g) {
    const u32x4 r = didmark::detail::carrier_signs(s, static_cast<uint64_t>(g));
    for (uint32_t e = 0; e < 128; ++e) ones += didmark::detail::carrier_sign_bit(r, e);
    EXPECT_EQ(didmark::detail::carrier_bit_index(s, static_cast<uint64_t>(g)), (g + 7u) % 256u);
  }
  const double n = blocks * 128.0;
  // Binomial(n, 1/2): 6 standard deviations is sqrt(n)*3.
  EXPECT_NEAR(static_cast<double>(ones), n / 2, 3 * std::sqrt(n));
}

TEST(Carrier, DitherIsUniformEnough) {
  didmark::detail::CarrierSpec s{{9, 8}, {7, 6}, 0, 256};
  int buckets[16] = {};
  std::set<uint32_t> distinct;
  for (int g = 0; g < 256; ++g) {
    const u32x4 r = didmark::detail::carrier_signs(s, static_cast<uint64_t>(g));
    for (uint32_t e = 0; e < 128; ++e) {
      const uint32_t u = didmark::detail::carrier_dither(r, e);
      buckets[u >> 28]++;
      distinct.insert(u);
    }
  }
  const double expect = 256 * 128 / 16.0;
  for (int b : buckets) EXPECT_NEAR(b, expect, 6 * std::sqrt(expect));
  EXPECT_GT(distinct.size(), 32700u);
}
