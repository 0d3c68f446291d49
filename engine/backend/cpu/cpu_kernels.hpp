#pragma once
// CPU loops over the shared carrier formulas (include/didmark/detail/).
//
// Work goes in groups of 8 carrier blocks (1024 elements): the 8 Philox calls of a group
// run side by side in 8 vector lanes (one call per block, 128 signs each), then each block's
// elements are processed 8 at a time with GCC vector extensions: per element a load, a sign
// flip and two adds. Block partials are summed in the element type and added into f64
// accumulators per payload bit. A block whose partial sum of squares is not finite holds a
// NaN/Inf (or overflows) and is redone element by element, so the fast path has no
// per-element finiteness test. Vector results are checked bit for bit against the scalar
// formulas in tests/core/test_backend.cpp.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/embed_math.hpp"
#include "didmark/detail/half.hpp"

namespace didmark::cpu {

using detail::CarrierSpec;
using detail::u32x4;
using bf16_t = detail::bfloat16_t;
using f16_t = detail::half_t;
using detail::acc_t;
using detail::to_acc;

// ---- 8-lane vectors --------------------------------------------------------------------
typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef uint64_t v4ul __attribute__((vector_size(32)));

inline v8f as_f(v8u u) {
  v8f f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline v8u as_u(v8f f) {
  v8u u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline v8u splat(uint32_t x) { return v8u{x, x, x, x, x, x, x, x}; }

// ---- Philox4x32-10, 8 counters at once ------------------------------------------------
// Lane i computes detail::philox4x32_10 for block g0 + i; same arithmetic, so the same bits.

inline void mulhilo8(uint32_t m, v8u a, v8u& hi, v8u& lo) {
  v4ul ae, ao;
  std::memcpy(&ae, &a, sizeof ae);
  ao = ae >> 32;
  ae &= 0xFFFFFFFFull;
  const v4ul pe = ae * static_cast<uint64_t>(m);
  const v4ul po = ao * static_cast<uint64_t>(m);
  const v4ul lo64 = (pe & 0xFFFFFFFFull) | (po << 32);
  const v4ul hi64 = (pe >> 32) | (po & 0xFFFFFFFF00000000ull);
  std::memcpy(&lo, &lo64, sizeof lo);
  std::memcpy(&hi, &hi64, sizeof hi);
}

struct Signs8 {
  v8u w[4];  // w[j][i]: word j of block g0 + i
};

inline Signs8 carrier_signs8(const CarrierSpec& s, uint64_t g0) {
  v8u x, y;
  for (int i = 0; i < 8; ++i) {
    const uint64_t g = g0 + static_cast<uint64_t>(i);
    x[i] = static_cast<uint32_t>(g);
    y[i] = (static_cast<uint32_t>(g >> 32) & 0x0FFFFFFFu) | (detail::kDomainSign << 28);
  }
  v8u z = splat(s.stream.x), w = splat(s.stream.y);
  uint32_t k0 = s.key.x, k1 = s.key.y;
  for (int r = 0; r < 10; ++r) {
    v8u hi0, lo0, hi1, lo1;
    mulhilo8(0xD2511F53u, x, hi0, lo0);
    mulhilo8(0xCD9E8D57u, z, hi1, lo1);
    const v8u nx = hi1 ^ y ^ k0;
    const v8u nz = hi0 ^ w ^ k1;
    x = nx;
    y = lo1;
    z = nz;
    w = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Signs8{{x, y, z, w}};
}

inline u32x4 block_words(const Signs8& s, int i) { return u32x4{s.w[0][i], s.w[1][i], s.w[2][i], s.w[3][i]}; }

// ---- loads and signs ---------------------------------------------------------------------

/// Exact binary16 -> binary32 for 8 lanes without branches (subnormals by one exact subtract).
inline v8f f16x8_to_f32(v8u h) {
  v8u o = (h & 0x7FFFu) << 13;
  const v8u exp = o & 0x0F800000u;
  o += (127u - 15u) << 23;
  const v8u is_special = (v8u)(exp == 0x0F800000u);  // all-ones where Inf/NaN
  const v8u is_small = (v8u)(exp == 0u);             // zero or subnormal
  o += is_special & ((128u - 16u) << 23);
  const v8f small = as_f(o + (1u << 23)) - as_f(splat(0x38800000u));
  const v8u r = (is_small & as_u(small)) | (~is_small & o);
  return as_f(r | ((h & 0x8000u) << 16));
}

template <class T>
inline v8f load8(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    v8f v;
    std::memcpy(&v, p, sizeof v);
    return v;
  } else {
    v8h h;
    std::memcpy(&h, p, sizeof h);
    const v8u u = __builtin_convertvector(h, v8u);
    if constexpr (std::is_same_v<T, bf16_t>) {
      return as_f(u << 16);
    } else {
      return f16x8_to_f32(u);
    }
  }
}

/// Lane l holds the sign bit of element (first + l) of `word`, moved to bit 31.
inline v8u sign_lanes(uint32_t word, uint32_t first) {
  const v8u shift = v8u{31, 30, 29, 28, 27, 26, 25, 24} - first;
  return (splat(word) << shift) & 0x80000000u;
}

inline float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// ---- correlate ------------------------------------------------------------------------------

/// One full block: returns sum c_e w_e, and (WithSq) the sum of squares in q.
template <class T, bool WithSq>
inline float block_corr8(const T* p, const u32x4& r, float& q) {
  v8f s0 = {}, s1 = {}, q0 = {}, q1 = {};
  const uint32_t words[4] = {r.x, r.y, r.z, r.w};
#pragma GCC unroll 4
  for (int wi = 0; wi < 4; ++wi) {
    const T* b = p + wi * 32;
#pragma GCC unroll 4
    for (int j = 0; j < 32; j += 16) {
      const v8f a = load8(b + j), c = load8(b + j + 8);
      s0 += as_f(as_u(a) ^ sign_lanes(words[wi], static_cast<uint32_t>(j)));
      s1 += as_f(as_u(c) ^ sign_lanes(words[wi], static_cast<uint32_t>(j + 8)));
      if constexpr (WithSq) {
        q0 += a * a;
        q1 += c * c;
      }
    }
  }
  if constexpr (WithSq) q = hsum(q0 + q1);
  return hsum(s0 + s1);
}

/// Any block (partial, f64, or holding NaN/Inf): finite elements only, the rest counted.
template <class T>
inline void block_checked(const T* p, int n, const u32x4& r, double& s, double& q, int64_t& nonfinite) {
  s = 0;
  q = 0;
  for (int e = 0; e < n; ++e) {
    const double v = static_cast<double>(to_acc(p[e]));
    if (!std::isfinite(v)) {
      ++nonfinite;
      continue;
    }
    q += v * v;
    s += detail::carrier_sign_bit(r, static_cast<uint32_t>(e)) ? -v : v;
  }
}

/// Correlate blocks [g0, g1) of one tensor with k_count carriers. bit_sums[k] points at
/// carriers[k].num_bits doubles; everything is added into.
template <class T>
void correlate_range(const T* data, int64_t numel, int64_t g0, int64_t g1, const CarrierSpec* carriers,
                     int k_count, double* const* bit_sums, double& sum_sq, int64_t& nonfinite) {
  constexpr bool kVector = !std::is_same_v<T, double>;
  for (int64_t g = g0; g < g1; g += 8) {
    const int nb = static_cast<int>(std::min<int64_t>(8, g1 - g));
    uint32_t bad = 0;  // blocks of this group that need the checked path
    for (int k = 0; k < k_count; ++k) {
      const CarrierSpec& c = carriers[k];
      const Signs8 sg = carrier_signs8(c, static_cast<uint64_t>(g));
      uint32_t bit = detail::carrier_bit_index(c, static_cast<uint64_t>(g));
      double* sums = bit_sums[k];
      for (int i = 0; i < nb; ++i, bit = bit + 1 == c.num_bits ? 0 : bit + 1) {
        const int64_t first = (g + i) * detail::kCarrierBlock;
        const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - first));
        const T* p = data + first;
        const u32x4 r = block_words(sg, i);
        if (kVector && n == detail::kCarrierBlock && !(bad >> i & 1u)) {
          if (k == 0) {
            float q;
            const float s = block_corr8<T, true>(p, r, q);
            if (std::isfinite(q)) {
              sum_sq += static_cast<double>(q);
              sums[bit] += static_cast<double>(s);
              continue;
            }
            bad |= 1u << i;
          } else {
            float unused;
            sums[bit] += static_cast<double>(block_corr8<T, false>(p, r, unused));
            continue;
          }
        }
        double s, q;
        int64_t nf = 0;
        block_checked(p, n, r, s, q, nf);
        if (k == 0) {
          sum_sq += q;
          nonfinite += nf;
        }
        sums[bit] += s;
      }
    }
  }
}

// ---- carrier add (embed step) -------------------------------------------------------------

inline v8u fmix8(v8u h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

/// 8 dithers of detail::carrier_dither for elements e0..e0+7 of a block.
inline v8u dither8(const u32x4& r, uint32_t e0) {
  const v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
  return fmix8(splat(r.x ^ r.w) + (lane + (e0 + 1u)) * 0x9E3779B9u);
}

/// Vector embed of 8 finite elements; false when some lane needs the scalar formula (f16
/// outside the normal range). Same arithmetic as detail::embed_element.
template <class T>
inline bool embed8(const T* p, T* out, float d, const u32x4& r, uint32_t word, uint32_t e0, v8f& q, v8f& dq) {
  const v8f v = load8(p);
  const v8f dv = as_f(splat(detail::f32_bits(d)) ^ sign_lanes(word, e0 & 31u));
  const v8f x = v + dv;
  if constexpr (std::is_same_v<T, float>) {
    const v8f diff = x - v;
    q += v * v;
    dq += diff * diff;
    std::memcpy(out, &x, sizeof x);
    return true;
  } else {
    const v8u xb = as_u(x);
    const v8u u = dither8(r, e0);
    v8u qb;
    if constexpr (std::is_same_v<T, bf16_t>) {
      qb = xb >> 16;
      qb -= (v8u)((u >> 16) < (xb & 0xFFFFu));  // mask -1 where rounding away from zero
      qb += (v8u)((qb & 0x7F80u) == 0x7F80u);   // a finite input never becomes Inf
      const v8f w = as_f(qb << 16);
      const v8f diff = w - v;
      q += v * v;
      dq += diff * diff;
    } else {
      const v8u ax = xb & 0x7FFFFFFFu;
      const v8u normal = (v8u)(ax >= 0x38800000u) & (v8u)(ax < 0x477FE000u);
      for (int l = 0; l < 8; ++l)
        if (!normal[l]) return false;
      qb = (ax - 0x38000000u) >> 13;
      qb -= (v8u)((u >> 19) < (ax & 0x1FFFu));
      qb |= (xb >> 16) & 0x8000u;
      const v8f w = f16x8_to_f32(qb);
      const v8f diff = w - v;
      q += v * v;
      dq += diff * diff;
    }
    const v8h packed = __builtin_convertvector(qb, v8h);
    std::memcpy(out, &packed, sizeof packed);
    return true;
  }
}

/// Embed blocks [g0, g1): dst = src + c * delta[b], with statistics.
template <class T>
void add_range(const T* src, T* dst, int64_t numel, int64_t g0, int64_t g1, const CarrierSpec& c,
               const float* delta, double& ssq_src, double& ssq_diff, int64_t& nonfinite) {
  constexpr bool kVector = !std::is_same_v<T, double>;
  for (int64_t g = g0; g < g1; g += 8) {
    const int nb = static_cast<int>(std::min<int64_t>(8, g1 - g));
    const Signs8 sg = carrier_signs8(c, static_cast<uint64_t>(g));
    uint32_t bit = detail::carrier_bit_index(c, static_cast<uint64_t>(g));
    for (int i = 0; i < nb; ++i, bit = bit + 1 == c.num_bits ? 0 : bit + 1) {
      const int64_t first = (g + i) * detail::kCarrierBlock;
      const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - first));
      const u32x4 r = block_words(sg, i);
      const float d = delta[bit];
      const T* p = src + first;
      T* o = dst + first;
      if constexpr (kVector) {
        if (n == detail::kCarrierBlock) {
          // All 128 outputs go to a buffer first (dst may alias src); one finiteness test on
          // the block's sum of squares decides whether they stand.
          alignas(32) T out[detail::kCarrierBlock];
          v8f q = {}, dq = {};
          const uint32_t words[4] = {r.x, r.y, r.z, r.w};
          bool ok = true;
          for (uint32_t e0 = 0; e0 < detail::kCarrierBlock && ok; e0 += 8)
            ok = embed8(p + e0, out + e0, d, r, words[e0 >> 5], e0, q, dq);
          const float qs = hsum(q);
          if (ok && std::isfinite(qs)) {
            std::memcpy(o, out, sizeof out);
            ssq_src += static_cast<double>(qs);
            ssq_diff += static_cast<double>(hsum(dq));
            continue;
          }
        }
      }
      double qd = 0, dqd = 0;
      for (int e = 0; e < n; ++e) {
        const T v = p[e];
        const auto ue = static_cast<uint32_t>(e);
        const T w = detail::embed_element(v, d, detail::carrier_sign_bit(r, ue), detail::carrier_dither(r, ue));
        const double a = static_cast<double>(to_acc(v));
        if (std::isfinite(a)) {
          const double diff = static_cast<double>(to_acc(w)) - a;
          qd += a * a;
          dqd += diff * diff;
        } else {
          ++nonfinite;
        }
        o[e] = w;
      }
      ssq_src += qd;
      ssq_diff += dqd;
    }
  }
}

}  // namespace didmark::cpu
