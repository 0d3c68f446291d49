#pragma once
// A fixed-capacity unsigned big integer for the exact share arithmetic of royalty splits.
// Operations cost what the numbers' actual length costs; exceeding the capacity is an
// internal error (never a silent wrap). kLimbs * 64 = 3072 bits holds R * W * 2^64 for
// R < 2^128, any finite double or decimal weight (docs/royalty.md derives the bound).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "didmark/error.hpp"

namespace didmark::detail {

__extension__ typedef unsigned __int128 u128;

class BigUInt {
 public:
  static constexpr int kLimbs = 48;

  BigUInt() = default;
  explicit BigUInt(u128 v) { assign(v); }
  // Copies move only the limbs in use.
  BigUInt(const BigUInt& o) : n_(o.n_) { std::memcpy(limb_, o.limb_, sizeof(uint64_t) * static_cast<std::size_t>(n_)); }
  BigUInt& operator=(const BigUInt& o) {
    n_ = o.n_;
    std::memmove(limb_, o.limb_, sizeof(uint64_t) * static_cast<std::size_t>(n_));
    return *this;
  }

  void assign(u128 v) noexcept {
    limb_[0] = static_cast<uint64_t>(v);
    limb_[1] = static_cast<uint64_t>(v >> 64);
    n_ = limb_[1] ? 2 : (limb_[0] ? 1 : 0);
  }

  int size() const noexcept { return n_; }
  bool is_zero() const noexcept { return n_ == 0; }
  uint64_t limb(int i) const noexcept { return i < n_ ? limb_[i] : 0; }
  int bit_length() const noexcept { return n_ == 0 ? 0 : 64 * (n_ - 1) + 64 - __builtin_clzll(limb_[n_ - 1]); }

  bool fits_u128() const noexcept { return n_ <= 2; }
  u128 to_u128() const {
    DIDMARK_ASSERT(n_ <= 2);
    return (static_cast<u128>(limb(1)) << 64) | limb(0);
  }

  friend int compare(const BigUInt& a, const BigUInt& b) noexcept {
    if (a.n_ != b.n_) return a.n_ < b.n_ ? -1 : 1;
    for (int i = a.n_ - 1; i >= 0; --i)
      if (a.limb_[i] != b.limb_[i]) return a.limb_[i] < b.limb_[i] ? -1 : 1;
    return 0;
  }
  friend bool operator==(const BigUInt& a, const BigUInt& b) noexcept { return compare(a, b) == 0; }
  friend bool operator<(const BigUInt& a, const BigUInt& b) noexcept { return compare(a, b) < 0; }

  BigUInt& operator+=(const BigUInt& b) {
    const int m = std::max(n_, b.n_);
    uint64_t carry = 0;
    for (int i = 0; i < m; ++i) {
      const u128 s = static_cast<u128>(limb(i)) + b.limb(i) + carry;
      limb_[i] = static_cast<uint64_t>(s);
      carry = static_cast<uint64_t>(s >> 64);
    }
    n_ = m;
    if (carry) push(carry);
    return *this;
  }

  /// *this -= b; requires *this >= b.
  BigUInt& operator-=(const BigUInt& b) {
    DIDMARK_ASSERT(compare(*this, b) >= 0);
    uint64_t borrow = 0;
    for (int i = 0; i < n_; ++i) {
      const uint64_t bi = b.limb(i);
      const uint64_t d = limb_[i] - bi - borrow;
      borrow = (limb_[i] < bi || (limb_[i] == bi && borrow)) ? 1 : 0;
      limb_[i] = d;
    }
    trim();
    return *this;
  }

  /// *this *= m (64-bit).
  BigUInt& mul_small(uint64_t m) {
    if (m == 0 || n_ == 0) {
      n_ = 0;
      return *this;
    }
    uint64_t carry = 0;
    for (int i = 0; i < n_; ++i) {
      const u128 p = static_cast<u128>(limb_[i]) * m + carry;
      limb_[i] = static_cast<uint64_t>(p);
      carry = static_cast<uint64_t>(p >> 64);
    }
    if (carry) push(carry);
    return *this;
  }

  friend BigUInt operator*(const BigUInt& a, const BigUInt& b) {
    BigUInt r;
    mul(a, b, r);
    return r;
  }
  /// r = a * b (r must not alias a or b).
  static void mul(const BigUInt& a, const BigUInt& b, BigUInt& r) {
    r.n_ = 0;
    if (a.n_ == 0 || b.n_ == 0) return;
    DIDMARK_ASSERT(a.n_ + b.n_ <= kLimbs + 1);
    const int n = a.n_ + b.n_;
    uint64_t tmp[2 * kLimbs + 2];
    std::memset(tmp, 0, sizeof(uint64_t) * static_cast<std::size_t>(n));
    for (int i = 0; i < a.n_; ++i) {
      uint64_t carry = 0;
      for (int j = 0; j < b.n_; ++j) {
        const u128 p = static_cast<u128>(a.limb_[i]) * b.limb_[j] + tmp[i + j] + carry;
        tmp[i + j] = static_cast<uint64_t>(p);
        carry = static_cast<uint64_t>(p >> 64);
      }
      tmp[i + b.n_] = carry;
    }
    int len = n;
    while (len > 0 && tmp[len - 1] == 0) --len;
    DIDMARK_ASSERT(len <= kLimbs);
    std::memcpy(r.limb_, tmp, sizeof(uint64_t) * static_cast<std::size_t>(len));
    r.n_ = len;
  }

  BigUInt& operator<<=(int bits) {
    DIDMARK_ASSERT(bits >= 0);
    if (n_ == 0 || bits == 0) return *this;
    const int words = bits / 64, sh = bits % 64;
    const int new_n = n_ + words + 1;
    DIDMARK_ASSERT(new_n <= kLimbs + 1);
    uint64_t top = sh ? limb_[n_ - 1] >> (64 - sh) : 0;
    DIDMARK_ASSERT(new_n <= kLimbs || top == 0);
    if (new_n <= kLimbs) limb_[n_ + words] = top;
    for (int i = n_ - 1; i >= 0; --i) {
      const uint64_t lo = (sh && i > 0) ? limb_[i - 1] >> (64 - sh) : 0;
      limb_[i + words] = sh ? (limb_[i] << sh) | lo : limb_[i];
    }
    for (int i = 0; i < words; ++i) limb_[i] = 0;
    n_ = std::min(new_n, kLimbs);
    trim();
    return *this;
  }

  /// Quotient and remainder (Knuth, TAOCP vol. 2, 4.3.1, algorithm D). d must be non-zero.
  static void divmod(const BigUInt& u, const BigUInt& d, BigUInt& q, BigUInt& r);

  std::string to_string() const {
    if (n_ == 0) return "0";
    BigUInt t = *this;
    std::string out;
    while (!t.is_zero()) {
      uint64_t rem = 0;
      for (int i = t.n_ - 1; i >= 0; --i) t.limb_[i] = div128(rem, t.limb_[i], 10000000000000000000ull, rem);
      t.trim();
      std::string chunk = std::to_string(rem);
      if (!t.is_zero()) chunk.insert(0, 19 - chunk.size(), '0');
      out.insert(0, chunk);
    }
    return out;
  }

  /// (hi:lo) / v with hi < v; returns the quotient, sets rem.
  static uint64_t div128(uint64_t hi, uint64_t lo, uint64_t v, uint64_t& rem) {
#if defined(__x86_64__)
    uint64_t q, r;
    __asm__("divq %4" : "=a"(q), "=d"(r) : "a"(lo), "d"(hi), "rm"(v));
    rem = r;
    return q;
#else
    const u128 n = (static_cast<u128>(hi) << 64) | lo;
    rem = static_cast<uint64_t>(n % v);
    return static_cast<uint64_t>(n / v);
#endif
  }

 private:
  void push(uint64_t v) {
    DIDMARK_ASSERT(n_ < kLimbs);
    limb_[n_++] = v;
  }
  void trim() noexcept {
    while (n_ > 0 && limb_[n_ - 1] == 0) --n_;
  }

  friend class Divisor;
  uint64_t limb_[kLimbs];
  int n_ = 0;
};

/// A divisor prepared once (normalized) for many divisions.
class Divisor {
 public:
  explicit Divisor(const BigUInt& d) : d_(d), n_(d.n_) {
    DIDMARK_ASSERT(!d.is_zero());
    s_ = __builtin_clzll(d.limb_[n_ - 1]);
    for (int i = n_ - 1; i > 0; --i) vn_[i] = (d.limb_[i] << s_) | (s_ ? d.limb_[i - 1] >> (64 - s_) : 0);
    vn_[0] = d.limb_[0] << s_;
  }
  const BigUInt& value() const noexcept { return d_; }

  void divmod(const BigUInt& u, BigUInt& q, BigUInt& r) const {
    q.n_ = 0;
    if (compare(u, d_) < 0) {
      r = u;
      return;
    }
    if (n_ == 1) {
      const uint64_t v = d_.limb_[0];
      uint64_t rem = 0;
      for (int i = u.n_ - 1; i >= 0; --i) q.limb_[i] = BigUInt::div128(rem, u.limb_[i], v, rem);
      q.n_ = u.n_;
      q.trim();
      r.assign(rem);
      return;
    }
    const int n = n_, m = u.n_ - n_, s = s_;
    const uint64_t* vn = vn_;
    uint64_t un[BigUInt::kLimbs + 1];
    un[u.n_] = s ? u.limb_[u.n_ - 1] >> (64 - s) : 0;
    for (int i = u.n_ - 1; i > 0; --i) un[i] = (u.limb_[i] << s) | (s ? u.limb_[i - 1] >> (64 - s) : 0);
    un[0] = u.limb_[0] << s;
    for (int j = m; j >= 0; --j) {
      // Estimate q̂ from the top two limbs of the remainder and the top limb of the divisor.
      uint64_t qhat, rhat;
      bool rhat_overflow = false;
      if (un[j + n] >= vn[n - 1]) {
        qhat = ~uint64_t(0);
        const u128 t = ((static_cast<u128>(un[j + n]) << 64) | un[j + n - 1]) - static_cast<u128>(qhat) * vn[n - 1];
        rhat_overflow = (t >> 64) != 0;
        rhat = static_cast<uint64_t>(t);
      } else {
        qhat = BigUInt::div128(un[j + n], un[j + n - 1], vn[n - 1], rhat);
      }
      while (!rhat_overflow &&
             static_cast<u128>(qhat) * vn[n - 2] > ((static_cast<u128>(rhat) << 64) | un[j + n - 2])) {
        --qhat;
        const u128 t = static_cast<u128>(rhat) + vn[n - 1];
        rhat_overflow = (t >> 64) != 0;
        rhat = static_cast<uint64_t>(t);
      }
      // Multiply and subtract.
      uint64_t borrow = 0, carry = 0;
      for (int i = 0; i < n; ++i) {
        const u128 p = static_cast<u128>(qhat) * vn[i] + carry;
        carry = static_cast<uint64_t>(p >> 64);
        const uint64_t pl = static_cast<uint64_t>(p);
        const uint64_t t = un[i + j] - pl - borrow;
        borrow = (un[i + j] < pl || (un[i + j] == pl && borrow)) ? 1 : 0;
        un[i + j] = t;
      }
      const uint64_t top = un[j + n];
      un[j + n] = top - carry - borrow;
      if (top < carry || (top == carry && borrow)) {  // q̂ was one too large: add back
        --qhat;
        uint64_t c = 0;
        for (int i = 0; i < n; ++i) {
          const u128 t = static_cast<u128>(un[i + j]) + vn[i] + c;
          un[i + j] = static_cast<uint64_t>(t);
          c = static_cast<uint64_t>(t >> 64);
        }
        un[j + n] += c;
      }
      q.limb_[j] = qhat;
    }
    q.n_ = m + 1;
    q.trim();
    for (int i = 0; i < n; ++i) r.limb_[i] = (un[i] >> s) | (s ? un[i + 1] << (64 - s) : 0);
    r.n_ = n;
    r.trim();
  }

 private:
  BigUInt d_;
  int n_ = 0, s_ = 0;
  uint64_t vn_[BigUInt::kLimbs];
};

inline void BigUInt::divmod(const BigUInt& u, const BigUInt& d, BigUInt& q, BigUInt& r) { Divisor(d).divmod(u, q, r); }

}  // namespace didmark::detail
