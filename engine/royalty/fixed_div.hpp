#pragma once
// Division by a fixed divisor below 2^128 without hardware division, for the fast path of
// royalty splits: every payee's share is floor(R * W * 2^64 / S) with the same S.
//
// The divisor is normalized (shifted so that its top bit is bit 127) and its reciprocal
// v = floor((2^192 - 1) / d) - 2^64 is computed once; each quotient limb then costs three
// multiplications (Moller & Granlund, "Improved division by invariant integers", IEEE
// Trans. Computers 60(2), 2011, algorithm 5: the 3-by-2 division, as in GMP's udiv_qr_3by2).
#include <cstdint>

#include "royalty/bigint.hpp"

namespace didmark::detail {

class Divisor128 {
 public:
  /// d must be non-zero.
  explicit Divisor128(u128 d) {
    DIDMARK_ASSERT(d != 0);
    const int hi_zeros = static_cast<uint64_t>(d >> 64) ? __builtin_clzll(static_cast<uint64_t>(d >> 64))
                                                        : 64 + __builtin_clzll(static_cast<uint64_t>(d));
    shift_ = hi_zeros;
    const u128 n = d << shift_;
    d1_ = static_cast<uint64_t>(n >> 64);
    d0_ = static_cast<uint64_t>(n);
    // v = floor((2^192 - 1) / n) - 2^64, exactly, with the general division (once).
    BigUInt num;
    num.assign(~u128(0));
    num <<= 64;
    num += BigUInt(static_cast<u128>(~uint64_t(0)));
    BigUInt q, r;
    BigUInt::divmod(num, BigUInt(n), q, r);
    DIDMARK_ASSERT(q.size() == 2 && q.limb(1) == 1);
    v_ = q.limb(0);
  }

  int shift() const noexcept { return shift_; }
  /// (hi lo) < d (normalized).
  bool below(uint64_t hi, uint64_t lo) const noexcept { return hi < d1_ || (hi == d1_ && lo < d0_); }

  /// floor(u / d) for u = (u[len-1] .. u[0]) already shifted left by shift(); writes the
  /// quotient limbs to q[0 .. len-2] (q[len-1] is 0 since u[len-1] < 2^64 <= d) and
  /// returns the normalized remainder.
  u128 divide(const uint64_t* u, int len, uint64_t* q) const noexcept {
    uint64_t r1 = 0, r0 = u[len - 1];
    for (int j = len - 2; j >= 0; --j) q[j] = div3by2(r1, r0, u[j], r1, r0);
    return (static_cast<u128>(r1) << 64) | r0;
  }

  /// (n2 n1 n0) / d for (n2 n1) < d: the quotient limb; (r1 r0) the remainder.
  __attribute__((always_inline)) uint64_t div3by2(uint64_t n2, uint64_t n1, uint64_t n0, uint64_t& r1, uint64_t& r0) const noexcept {
    const u128 d = (static_cast<u128>(d1_) << 64) | d0_;
    u128 q = static_cast<u128>(n2) * v_;
    q += (static_cast<u128>(n2) << 64) | n1;
    uint64_t q1 = static_cast<uint64_t>(q >> 64);
    const uint64_t q0 = static_cast<uint64_t>(q);
    const uint64_t t = n1 - d1_ * q1;  // mod 2^64
    u128 r = ((static_cast<u128>(t) << 64) | n0) - d;
    r -= static_cast<u128>(d0_) * q1;
    ++q1;
    const uint64_t mask = uint64_t(0) - static_cast<uint64_t>(static_cast<uint64_t>(r >> 64) >= q0);
    q1 += mask;
    r += (static_cast<u128>(mask & d1_) << 64) | (mask & d0_);
    if (__builtin_expect(r >= d, 0)) {
      ++q1;
      r -= d;
    }
    r1 = static_cast<uint64_t>(r >> 64);
    r0 = static_cast<uint64_t>(r);
    return q1;
  }

 private:
  uint64_t d1_ = 0, d0_ = 0, v_ = 0;
  int shift_ = 0;
};

/// The share of one payee: floor(n * 2^64 / d) for n = (n2 n1 n0) < 2^192 whose quotient is
/// below 2^192 (true when n <= R * d for some R < 2^128): `share` gets the integer part of
/// n / d (the top 128 bits) and the return value the next 64 bits of the fraction.
__attribute__((always_inline)) inline uint64_t share_and_fraction(const Divisor128& div, uint64_t n2, uint64_t n1, uint64_t n0, u128& share) {
  const int s = div.shift();
  if (s < 64) {
    // u = n * 2^(64 + s) = (u4 u3 u2 u1 0); (u4 u3) < d because the quotient is below 2^192:
    // exactly three steps.
    const uint64_t u4 = s ? n2 >> (64 - s) : 0;
    const uint64_t u3 = (n2 << s) | (s ? n1 >> (64 - s) : 0);
    const uint64_t u2 = (n1 << s) | (s ? n0 >> (64 - s) : 0);
    const uint64_t u1 = n0 << s;
    uint64_t r1, r0, q2 = 0;
    if (u4 == 0 && div.below(u3, u2)) {  // a share below 2^64 (the usual case): one step less
      r1 = u3;
      r0 = u2;
    } else {
      q2 = div.div3by2(u4, u3, u2, r1, r0);
    }
    const uint64_t q1 = div.div3by2(r1, r0, u1, r1, r0);
    const uint64_t q0 = div.div3by2(r1, r0, 0, r1, r0);
    share = (static_cast<u128>(q2) << 64) | q1;
    return q0;
  }
  // A divisor below 2^64: u = n * 2^(64 + s), up to 6 limbs.
  uint64_t u[6] = {0, 0, 0, 0, 0, 0};
  const int words = 1 + s / 64, bits = s % 64;
  const uint64_t n[3] = {n0, n1, n2};
  for (int i = 0; i < 3; ++i) {
    u[i + words] |= n[i] << bits;
    if (bits) u[i + words + 1] |= n[i] >> (64 - bits);
  }
  int len = 6;
  while (len > 1 && u[len - 1] == 0) --len;
  uint64_t q[6] = {0, 0, 0, 0, 0, 0};
  if (len >= 2) div.divide(u, len, q);
  share = (static_cast<u128>(q[2]) << 64) | q[1];
  return q[0];
}

}  // namespace didmark::detail
