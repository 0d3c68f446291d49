// The fixed-capacity big integer behind exact shares: against native 128-bit arithmetic,
// division identities at full width, and the capacity bound of the split.
#include <gtest/gtest.h>

#include <random>

#include "royalty/bigint.hpp"

namespace didmark::detail {
namespace {

u128 rand128(std::mt19937_64& rng, int bits) {
  u128 v = (static_cast<u128>(rng()) << 64) | rng();
  return bits >= 128 ? v : v & ((static_cast<u128>(1) << bits) - 1);
}

BigUInt rand_big(std::mt19937_64& rng, int limbs) {
  BigUInt r;
  for (int i = 0; i < limbs; ++i) {
    r <<= 64;
    r += BigUInt(static_cast<u128>(rng() | (i == 0 ? 1u : 0u)));
  }
  return r;
}

TEST(BigUInt, MatchesNative128) {
  std::mt19937_64 rng(1);
  for (int t = 0; t < 20000; ++t) {
    const u128 a = rand128(rng, 1 + static_cast<int>(rng() % 128));
    const u128 b = rand128(rng, 1 + static_cast<int>(rng() % 64));
    const BigUInt A(a), B(b);
    EXPECT_EQ(compare(A, B), a < b ? -1 : (a > b ? 1 : 0));
    if (a <= ~u128(0) - b) {
      EXPECT_EQ((BigUInt(a) += B).to_u128(), a + b);
    }
    if (a >= b) {
      EXPECT_EQ((BigUInt(a) -= B).to_u128(), a - b);
    }
    if (b != 0) {
      BigUInt q, r;
      BigUInt::divmod(A, B, q, r);
      EXPECT_EQ(q.to_u128(), a / b);
      EXPECT_EQ(r.to_u128(), a % b);
    }
    const u128 x = rand128(rng, 64), y = rand128(rng, 64);
    EXPECT_EQ((BigUInt(x) * BigUInt(y)).to_u128(), x * y);
    BigUInt m(x);
    m.mul_small(static_cast<uint64_t>(y));
    EXPECT_EQ(m.to_u128(), x * y);
    const int sh = static_cast<int>(rng() % 64);
    BigUInt s(a >> 64);
    s <<= sh;
    EXPECT_EQ(s.to_u128(), (a >> 64) << sh);
  }
}

TEST(BigUInt, DivisionIdentityAtFullWidth) {
  std::mt19937_64 rng(2);
  for (int t = 0; t < 3000; ++t) {
    const int ul = 1 + static_cast<int>(rng() % 40), dl = 1 + static_cast<int>(rng() % 20);
    BigUInt u = rand_big(rng, ul), d = rand_big(rng, dl);
    // Divisors with a top limb of all ones and runs of zero limbs stress q-hat correction.
    if (t % 5 == 0) {
      d = BigUInt(~u128(0));
      d <<= 64 * static_cast<int>(rng() % 4);
      d += BigUInt(static_cast<u128>(1));
    }
    BigUInt q, r;
    BigUInt::divmod(u, d, q, r);
    EXPECT_LT(compare(r, d), 0);
    BigUInt back = q * d;
    back += r;
    EXPECT_EQ(compare(back, u), 0) << "u limbs " << ul << " d limbs " << dl;
  }
}

TEST(BigUInt, Decimal) {
  EXPECT_EQ(BigUInt().to_string(), "0");
  EXPECT_EQ(BigUInt(~u128(0)).to_string(), "340282366920938463463374607431768211455");
  BigUInt ten(static_cast<u128>(10)), p(static_cast<u128>(1));
  for (int i = 0; i < 40; ++i) p = p * ten;
  EXPECT_EQ(p.to_string(), "1" + std::string(40, '0'));
  BigUInt two(static_cast<u128>(1));
  two <<= 200;
  EXPECT_EQ(two.to_string(), "1606938044258990275541962092341162602522202993782792835301376");
}

TEST(BigUInt, CapacityIsAnErrorNotAWrap) {
  BigUInt big(static_cast<u128>(1));
  big <<= 64 * BigUInt::kLimbs - 1;  // the top bit of the capacity
  EXPECT_EQ(big.bit_length(), 64 * BigUInt::kLimbs);
  EXPECT_THROW(big <<= 1, Error);
  EXPECT_THROW(big += big, Error);
}

}  // namespace
}  // namespace didmark::detail
