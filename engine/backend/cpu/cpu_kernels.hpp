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
#include <vector>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/embed_math.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/detail/screen_math.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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
// `vector + scalar` makes GCC broadcast (vpbroadcastd); an initializer list of eight copies
// would be built lane by lane.
inline v8u splat(uint32_t x) { return v8u{} + x; }

// ---- Philox4x32-10, 8 counters at once ------------------------------------------------
// Lane i computes detail::philox4x32_10 for block g0 + i; same arithmetic, so the same bits.

inline void mulhilo8(uint32_t m, v8u a, v8u& hi, v8u& lo) {
#if defined(__AVX2__)
  // vpmuludq on the even and the odd lanes; GCC's vector extensions would emulate a full
  // 64x64-bit multiply here.
  __m256i av;
  std::memcpy(&av, &a, sizeof av);
  const __m256i mv = _mm256_set1_epi32(static_cast<int>(m));
  const __m256i pe = _mm256_mul_epu32(av, mv);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(av, 32), mv);
  const __m256i l = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  const __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  std::memcpy(&lo, &l, sizeof lo);
  std::memcpy(&hi, &h, sizeof hi);
#else
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
#endif
}

struct Signs8 {
  v8u w[4];  // w[j][i]: word j of block g0 + i
};

/// Philox4x32-10 (detail/philox.hpp) on 8 lanes: the counter words x..w per lane, the key the
/// same in every lane (K = uint32_t) or one per lane (K = v8u).
template <class K>
inline Signs8 philox10_8(v8u x, v8u y, v8u z, v8u w, K k0, K k1) {
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

inline Signs8 carrier_signs8(const CarrierSpec& s, uint64_t g0) {
  const v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
  v8u x = splat(static_cast<uint32_t>(g0)) + lane;
  // The high counter word changes inside a group only when the low word wraps.
  const v8u wrapped = (v8u)(x < splat(static_cast<uint32_t>(g0)));
  v8u y = splat((static_cast<uint32_t>(g0 >> 32) & 0x0FFFFFFFu) | (detail::kDomainSign << 28)) - wrapped;
  const v8u z = splat(s.stream.x), w = splat(s.stream.y);
  return philox10_8<uint32_t>(x, y, z, w, s.key.x, s.key.y);
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

/// Lane l holds the sign bit of element (first + l) of the broadcast word, moved to bit 31.
inline v8u sign_lanes(v8u word, uint32_t first) {
  const v8u shift = v8u{31, 30, 29, 28, 27, 26, 25, 24} - first;
  return (word << shift) & 0x80000000u;
}

inline bool all_lanes(v8u mask) {
  v8u m = mask;
  uint32_t a = m[0] & m[1] & m[2] & m[3] & m[4] & m[5] & m[6] & m[7];
  return a != 0;
}

inline float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// ---- correlate ------------------------------------------------------------------------------

/// One full block: lane sums of c_e w_e into s, and (WithSq) of w_e^2 into q.
template <class T, bool WithSq>
inline void block_corr8(const T* p, const u32x4& r, v8f& s, v8f& q) {
  v8f s0 = {}, s1 = {}, q0 = {}, q1 = {};
  const uint32_t words[4] = {r.x, r.y, r.z, r.w};
#pragma GCC unroll 4
  for (int wi = 0; wi < 4; ++wi) {
    const T* b = p + wi * 32;
    const v8u wv = splat(words[wi]);
    if constexpr (std::is_same_v<T, bf16_t>) {
      // 16 bf16 per load: the low halves of the 32-bit lanes are elements 2l, the high
      // halves 2l+1; a sum does not care about order, so no widening shuffle is needed.
#pragma GCC unroll 2
      for (int j = 0; j < 32; j += 16) {
        v8u x;
        std::memcpy(&x, b + j, sizeof x);
        const v8f even = as_f(x << 16), odd = as_f(x & 0xFFFF0000u);
        const v8u se = v8u{31, 29, 27, 25, 23, 21, 19, 17} - static_cast<uint32_t>(j);
        const v8u so = v8u{30, 28, 26, 24, 22, 20, 18, 16} - static_cast<uint32_t>(j);
        s0 += as_f(as_u(even) ^ ((wv << se) & 0x80000000u));
        s1 += as_f(as_u(odd) ^ ((wv << so) & 0x80000000u));
        if constexpr (WithSq) {
          q0 += even * even;
          q1 += odd * odd;
        }
      }
    } else {
#pragma GCC unroll 4
      for (int j = 0; j < 32; j += 16) {
        const v8f a = load8(b + j), c = load8(b + j + 8);
        s0 += as_f(as_u(a) ^ sign_lanes(wv, static_cast<uint32_t>(j)));
        s1 += as_f(as_u(c) ^ sign_lanes(wv, static_cast<uint32_t>(j + 8)));
        if constexpr (WithSq) {
          q0 += a * a;
          q1 += c * c;
        }
      }
    }
  }
  s = s0 + s1;
  if constexpr (WithSq) q = q0 + q1;
}

/// out[i] = sum of the lanes of v[i], for 8 vectors at once (a transposing add tree).
inline v8f reduce8(const v8f* v) {
#if defined(__AVX2__)
  __m256 m[8];
  std::memcpy(m, v, sizeof m);
  const __m256 t0 = _mm256_hadd_ps(m[0], m[1]), t1 = _mm256_hadd_ps(m[2], m[3]);
  const __m256 t2 = _mm256_hadd_ps(m[4], m[5]), t3 = _mm256_hadd_ps(m[6], m[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  const __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
  v8f out;
  std::memcpy(&out, &r, sizeof out);
  return out;
#else
  v8f out;
  for (int i = 0; i < 8; ++i) out[i] = hsum(v[i]);
  return out;
#endif
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
    const int64_t first = g * detail::kCarrierBlock;
    // Full blocks of the group go down the vector path; the partial last block, f64 and
    // blocks holding NaN/Inf go down the checked one.
    const int full = kVector ? static_cast<int>(std::min<int64_t>(nb, (numel - first) / detail::kCarrierBlock)) : 0;
    uint32_t bad = 0;
    for (int k = 0; k < k_count; ++k) {
      const CarrierSpec& c = carriers[k];
      const Signs8 sg = carrier_signs8(c, static_cast<uint64_t>(g));
      // Lane partials of the group's full blocks, reduced together; computed unconditionally
      // so that a block's sums and squares stay in one pass over its vectors.
      v8f sv[8] = {}, qv[8] = {};
      if (k == 0) {
        for (int i = 0; i < full; ++i)
          block_corr8<T, true>(data + first + i * detail::kCarrierBlock, block_words(sg, i), sv[i], qv[i]);
      } else {
        for (int i = 0; i < full; ++i)
          block_corr8<T, false>(data + first + i * detail::kCarrierBlock, block_words(sg, i), sv[i], qv[i]);
      }
      const v8f sp = reduce8(sv);
      if (k == 0 && full > 0) {
        const v8f qp = reduce8(qv);
        for (int i = 0; i < full; ++i) {
          if (std::isfinite(qp[i])) {
            sum_sq += static_cast<double>(qp[i]);
          } else {
            bad |= 1u << i;
          }
        }
      }
      double* sums = bit_sums[k];
      uint32_t bit = detail::carrier_bit_index(c, static_cast<uint64_t>(g));
      for (int i = 0; i < nb; ++i, bit = bit + 1 == c.num_bits ? 0 : bit + 1) {
        if (i < full && !(bad >> i & 1u)) {
          sums[bit] += static_cast<double>(sp[i]);
          continue;
        }
        const int64_t f = first + i * detail::kCarrierBlock;
        const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - f));
        double s_blk, q_blk;
        int64_t nf = 0;
        block_checked(data + f, n, block_words(sg, i), s_blk, q_blk, nf);
        if (k == 0) {
          sum_sq += q_blk;
          nonfinite += nf;
        }
        sums[bit] += s_blk;
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

/// Vector embed of 8 finite elements e0..e0+7 of a block; false when some lane needs the
/// scalar formula (f16 outside the normal range). Same arithmetic as detail::embed_element;
/// `dither_h` is the pre-mix input of detail::carrier_dither for these lanes.
template <class T>
inline bool embed8(const T* p, T* out, v8u d_bits, v8u sign, v8u dither_h, v8f& q, v8f& dq) {
  const v8f v = load8(p);
  const v8f x = v + as_f(d_bits ^ sign);
  if constexpr (std::is_same_v<T, float>) {
    (void)dither_h;
    const v8f diff = x - v;
    q += v * v;
    dq += diff * diff;
    std::memcpy(out, &x, sizeof x);
    return true;
  } else {
    const v8u xb = as_u(x);
    const v8u u = fmix8(dither_h);
    v8u qb;
    if constexpr (std::is_same_v<T, bf16_t>) {
      qb = xb >> 16;
      qb -= (v8u)((u >> 16) < (xb & 0xFFFFu));  // mask -1 where rounding away from zero
      qb += (v8u)((qb & 0x7F80u) == 0x7F80u);   // a finite input never becomes Inf
      const v8f w = as_f(qb << 16);  // (bf16 blocks normally take embed_block_bf16)
      const v8f diff = w - v;
      q += v * v;
      dq += diff * diff;
    } else {
      const v8u ax = xb & 0x7FFFFFFFu;
      const v8u normal = (v8u)(ax >= 0x38800000u) & (v8u)(ax < 0x477FE000u);
      if (!all_lanes(normal)) return false;
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

typedef int32_t v8i __attribute__((vector_size(32)));

inline bool all_finite(v8f v) {
  const v8u e = as_u(v) & 0x7F800000u;
  const v8u bad = (v8u)(e == 0x7F800000u);
  return !(bad[0] | bad[1] | bad[2] | bad[3] | bad[4] | bad[5] | bad[6] | bad[7]);
}

/// Embed one full block into `out`: lane sums of src^2 and (dst-src)^2 in q and dq; false
/// when the scalar path must redo the block.
template <class T>
inline bool embed_block(const T* p, T* out, float d, const u32x4& r, v8f& q, v8f& dq) {
  const uint32_t words[4] = {r.x, r.y, r.z, r.w};
  const v8u d_bits = splat(detail::f32_bits(d));
  // detail::carrier_dither(r, e) = fmix32((r.x ^ r.w) + (e + 1) * golden): the pre-mix value
  // of each lane advances by a fixed multiple of golden per step.
  constexpr uint32_t kGolden = 0x9E3779B9u;
  const uint32_t base = (r.x ^ r.w) + kGolden;
  bool ok = true;
  if constexpr (std::is_same_v<T, bf16_t>) {
    // 16 bf16 per 32-byte load, as pairs in 32-bit lanes: element 2l in the low half, 2l+1 in
    // the high half. Results are packed back the same way, so nothing is shuffled.
    v8u he = splat(base) + v8u{0, 2, 4, 6, 8, 10, 12, 14} * kGolden;
    v8u ho = he + kGolden;
    const v8u step = splat(16u * kGolden);
#pragma GCC unroll 4
    for (int wi = 0; wi < 4; ++wi) {
      const v8u wv = splat(words[wi]);
#pragma GCC unroll 2
      for (int j = 0; j < 32; j += 16) {
        const int e0 = wi * 32 + j;
        v8u x;
        std::memcpy(&x, p + e0, sizeof x);
        const v8f ve = as_f(x << 16), vo = as_f(x & 0xFFFF0000u);
        const v8u se = ((wv << (v8u{31, 29, 27, 25, 23, 21, 19, 17} - static_cast<uint32_t>(j))) & 0x80000000u);
        const v8u so = ((wv << (v8u{30, 28, 26, 24, 22, 20, 18, 16} - static_cast<uint32_t>(j))) & 0x80000000u);
        const v8u xe = as_u(ve + as_f(d_bits ^ se)), xo = as_u(vo + as_f(d_bits ^ so));
        const v8u ue = fmix8(he), uo = fmix8(ho);
        // detail::f32_to_bf16_sr; the operands are below 2^16, so the compare is signed.
        const v8u qe = (xe >> 16) - (v8u)((v8i)(ue >> 16) < (v8i)(xe & 0xFFFFu));
        const v8u qo = (xo >> 16) - (v8u)((v8i)(uo >> 16) < (v8i)(xo & 0xFFFFu));
        const v8f we = as_f(qe << 16), wo = as_f(qo << 16);
        const v8f de = we - ve, dn = wo - vo;
        q += ve * ve + vo * vo;
        dq += de * de + dn * dn;
        const v8u packed = (qe & 0xFFFFu) | (qo << 16);
        std::memcpy(out + e0, &packed, sizeof packed);
        he += step;
        ho += step;
      }
    }
    // Rounding up into the Inf exponent needs |x| near FLT_MAX: a block with such values has
    // an infinite sum of squares and goes to the scalar path, and the caller keeps |d| small.
  } else {
    v8u h = splat(base) + v8u{0, 1, 2, 3, 4, 5, 6, 7} * kGolden;
    const v8u step = splat(8u * kGolden);
#pragma GCC unroll 4
    for (int wi = 0; wi < 4; ++wi) {
      const v8u wv = splat(words[wi]);
#pragma GCC unroll 4
      for (int j = 0; j < 32; j += 8) {
        const int e0 = wi * 32 + j;
        ok &= embed8(p + e0, out + e0, d_bits, sign_lanes(wv, static_cast<uint32_t>(j)), h, q, dq);
        h += step;
      }
    }
  }
  return ok;
}

/// Embed blocks [g0, g1): dst = src + c * delta[b], with statistics. `delta` values must
/// be below 2^100 in magnitude for the vector path (the backend checks).
template <class T>
void add_range(const T* src, T* dst, int64_t numel, int64_t g0, int64_t g1, const CarrierSpec& c,
               const float* delta, double& ssq_src, double& ssq_diff, int64_t& nonfinite) {
  constexpr bool kVector = !std::is_same_v<T, double>;
  const bool in_place = src == dst;
  for (int64_t g = g0; g < g1; g += 8) {
    const int nb = static_cast<int>(std::min<int64_t>(8, g1 - g));
    const Signs8 sg = carrier_signs8(c, static_cast<uint64_t>(g));
    uint32_t bit = detail::carrier_bit_index(c, static_cast<uint64_t>(g));
    v8f gq = {}, gdq = {};
    for (int i = 0; i < nb; ++i, bit = bit + 1 == c.num_bits ? 0 : bit + 1) {
      const int64_t first = (g + i) * detail::kCarrierBlock;
      const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - first));
      const u32x4 r = block_words(sg, i);
      const float d = delta[bit];
      const T* p = src + first;
      T* o = dst + first;
      if constexpr (kVector) {
        if (n == detail::kCarrierBlock) {
          // Out of place the results go straight to dst (the scalar path can redo them from
          // src); in place they wait in a buffer until the block is known to be finite.
          alignas(32) T buf[detail::kCarrierBlock];
          T* out = in_place ? buf : o;
          v8f q = {}, dq = {};
          if (embed_block(p, out, d, r, q, dq) && all_finite(q)) {
            if (in_place) std::memcpy(o, buf, sizeof buf);
            gq += q;
            gdq += dq;
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
    ssq_src += static_cast<double>(hsum(gq));
    ssq_diff += static_cast<double>(hsum(gdq));
  }
}

// ---- registry screen (detail/screen_math.hpp) -----------------------------------------------
//
// Per sampled block: its 128 values quantized to 5-bit integers under the block's power-of-two
// scale, and 32 nibble tables of signed sums (16 int8 entries each). Then, for 32 keys at a
// time: four 8-lane Philox evaluations (lanes = keys, one counter), every key's 128 signs
// flipped where its payload bit is 1, a byte transpose so that one 32-byte vector holds the
// same byte of all 32 keys, and per nibble one vpshufb: 32 table lookups in one instruction.
// The integer sums are exact, so this path and the scalar one give the same numbers.

/// Philox key and stream words of 8 keys, lane i = key i (padding lanes repeat a real key).
struct Keys8 {
  v8u kx, ky, sx, sy;
};

/// Lane i computes detail::carrier_signs(key i, block): the same arithmetic as carrier_signs8
/// with the key varying across lanes instead of the counter.
inline Signs8 carrier_signs8_keys(const Keys8& k, uint64_t block) {
  v8u x = splat(static_cast<uint32_t>(block));
  v8u y = splat((static_cast<uint32_t>(block >> 32) & 0x0FFFFFFFu) | (detail::kDomainSign << 28));
  v8u z = k.sx, w = k.sy;
  return philox10_8<v8u>(x, y, z, w, k.kx, k.ky);
}

/// Keys [k0, k1) of one screen call, padded to whole groups of 32 (k0 a multiple of 32).
struct ScreenKeys {
  const Keys8* keys8;       // one per 8 keys, padded
  const uint32_t* offsets;  // bit offset per (padded) key
  const uint32_t* payload;  // `words` 32-bit words per (padded) key, bit b at word b / 32
  const uint32_t* base;     // k * words per (padded) key
  uint32_t words;
  uint32_t num_bits;
  int64_t k0, k1;
};

/// Slot s of a group of 32 keys (the order the vector path leaves its sums in) -> key offset.
inline int screen_slot_key(int s) {
  const int P = s < 16 ? 2 * s : 2 * (s - 16) + 1;  // byte position in the transposed vectors
  const int h = P / 16, b = (P % 16) / 4, i = P % 4;
  return 8 * b + 4 * h + i;
}

#if defined(__AVX2__)
/// 32 keys at one block: each key's exact block sum (payload sign applied) times `scale`, added
/// into acc[slot] (slot order, screen_slot_key). tab: per nibble p, 32 bytes (16 entries twice).
inline void screen_keys32(const ScreenKeys& ks, int64_t kb, uint64_t block, uint32_t gm, const int8_t* tab,
                          double scale, double* acc) {
  __m256i W[4][4];
  const __m256i Lm1 = _mm256_set1_epi32(static_cast<int>(ks.num_bits - 1));
  const __m256i Lv = _mm256_set1_epi32(static_cast<int>(ks.num_bits));
  const __m256i one = _mm256_set1_epi32(1), low5 = _mm256_set1_epi32(31);
  for (int b = 0; b < 4; ++b) {
    const int64_t k = kb + 8 * b;
    const Signs8 s = carrier_signs8_keys(ks.keys8[k / 8], block);
    __m256i bit = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(gm)),
                                   _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ks.offsets + k)));
    bit = _mm256_sub_epi32(bit, _mm256_and_si256(_mm256_cmpgt_epi32(bit, Lm1), Lv));
    const __m256i widx = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ks.base + k)),
                                          _mm256_srli_epi32(bit, 5));
    const __m256i pw = _mm256_i32gather_epi32(reinterpret_cast<const int*>(ks.payload), widx, 4);
    const __m256i neg = _mm256_sub_epi32(_mm256_setzero_si256(),
                                         _mm256_and_si256(_mm256_srlv_epi32(pw, _mm256_and_si256(bit, low5)), one));
    for (int j = 0; j < 4; ++j) {
      __m256i w;
      std::memcpy(&w, &s.w[j], sizeof w);
      W[b][j] = _mm256_xor_si256(w, neg);  // a 1 payload bit flips every sign of the block
    }
  }
  // In each 128-bit half, gather byte c of the 4 keys together; then a 4x4 transpose of dwords
  // across the 4 batches: o[c] byte P = 16h + 4b + i holds byte c of key 8b + 4h + i.
  const __m256i by_byte = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5,
                                           9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i nib = _mm256_set1_epi8(0x0F);
  __m256i acc_e = _mm256_setzero_si256(), acc_o = _mm256_setzero_si256();
  for (int j = 0; j < 4; ++j) {
    const __m256i a0 = _mm256_shuffle_epi8(W[0][j], by_byte), a1 = _mm256_shuffle_epi8(W[1][j], by_byte);
    const __m256i a2 = _mm256_shuffle_epi8(W[2][j], by_byte), a3 = _mm256_shuffle_epi8(W[3][j], by_byte);
    const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
    const __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
    const __m256i o[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3),
                          _mm256_unpackhi_epi64(t1, t3)};
    for (int c = 0; c < 4; ++c) {
      const int B = 4 * j + c;  // byte of the 128 sign bits: nibbles 2B (low) and 2B + 1 (high)
      __m256i tl, th;
      std::memcpy(&tl, tab + 64 * B, sizeof tl);
      std::memcpy(&th, tab + 64 * B + 32, sizeof th);
      const __m256i lo = _mm256_and_si256(o[c], nib);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(o[c], 4), nib);
      // |entry| <= 60, so two of them fit a byte; then into 16-bit sums (<= 1920).
      const __m256i r = _mm256_add_epi8(_mm256_shuffle_epi8(tl, lo), _mm256_shuffle_epi8(th, hi));
      acc_e = _mm256_add_epi16(acc_e, _mm256_srai_epi16(_mm256_slli_epi16(r, 8), 8));
      acc_o = _mm256_add_epi16(acc_o, _mm256_srai_epi16(r, 8));
    }
  }
  const __m256d sc = _mm256_set1_pd(scale);
  const __m128i parts[4] = {_mm256_castsi256_si128(acc_e), _mm256_extracti128_si256(acc_e, 1),
                            _mm256_castsi256_si128(acc_o), _mm256_extracti128_si256(acc_o, 1)};
  for (int q = 0; q < 4; ++q) {
    const __m256i v = _mm256_cvtepi16_epi32(parts[q]);
    double* a = acc + 8 * q;
    _mm256_storeu_pd(a, _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(v)), sc, _mm256_loadu_pd(a)));
    _mm256_storeu_pd(a + 4,
                     _mm256_fmadd_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1)), sc, _mm256_loadu_pd(a + 4)));
  }
}
#endif

/// Screen sampled groups [i0, i1) of a tensor (group first + i * stride): acc[k - k0] receives
/// each key's sum; with `stats`, the sum of squares of the quantized values and the counts.
template <class T>
void screen_range(const T* data, int64_t numel, int64_t first, int64_t stride, int64_t i0, int64_t i1,
                  const ScreenKeys& keys, double* acc, bool stats, double& ssq, int64_t& elements,
                  int64_t& nonfinite) {
  alignas(64) float x[detail::kCarrierBlock];
  alignas(64) int8_t q[detail::kCarrierBlock];
  alignas(64) int8_t tab[detail::kScreenNibbles * 32];
  const uint32_t L = keys.num_bits;
  const int64_t padded = (keys.k1 - keys.k0 + 31) / 32 * 32;
  std::vector<double> slots(static_cast<std::size_t>(padded), 0.0);  // slot order per group of 32
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t group = first + i * stride;
    for (int j = 0; j < detail::kScreenGroupBlocks; ++j) {
      const int64_t block = group * detail::kScreenGroupBlocks + j;
      const int64_t e0 = block * detail::kCarrierBlock;
      if (e0 >= numel) break;
      const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - e0));
      int64_t finite = 0;
      float m = 0.0f;
      for (int e = 0; e < detail::kCarrierBlock; ++e) {
        bool ok = false;
        x[e] = e < n ? detail::screen_value(static_cast<double>(to_acc(data[e0 + e])), ok) : 0.0f;
        finite += ok ? 1 : 0;
        m = std::max(m, std::fabs(x[e]));
      }
      if (stats) {
        elements += finite;
        nonfinite += n - finite;
      }
      if (!(m >= detail::kScreenTiny)) continue;  // quantizes to zeros: adds nothing
      const int ex = detail::screen_scale_exp(m);
      const float inv = detail::screen_inv_scale(ex);
      int sq = 0;
      for (int e = 0; e < detail::kCarrierBlock; ++e) {
        const int v = detail::screen_quantize(x[e], inv);
        q[e] = static_cast<int8_t>(v);
        sq += v * v;
      }
      if (stats) ssq += static_cast<double>(sq) * detail::screen_scale(2 * ex);
      if (keys.k0 >= keys.k1) continue;
      for (int p = 0; p < detail::kScreenNibbles; ++p)
        for (uint32_t t = 0; t < 16; ++t) {
          const auto v = static_cast<int8_t>(detail::screen_nibble_entry(q + 4 * p, t));
          tab[p * 32 + t] = v;
          tab[p * 32 + 16 + t] = v;
        }
      const double scale = detail::screen_scale(ex);
      const auto gm = static_cast<uint32_t>(static_cast<uint64_t>(block) % L);
#if defined(__AVX2__)
      for (int64_t kb = keys.k0; kb < keys.k1; kb += 32)
        screen_keys32(keys, kb, static_cast<uint64_t>(block), gm, tab, scale, slots.data() + (kb - keys.k0));
#else
      for (int64_t kb = keys.k0; kb < keys.k1; kb += 8) {
        const Signs8 sg = carrier_signs8_keys(keys.keys8[kb / 8], static_cast<uint64_t>(block));
        for (int l = 0; l < 8; ++l) {
          const int64_t k = kb + l;
          uint32_t bit = gm + keys.offsets[k];
          bit -= bit >= L ? L : 0;
          const uint32_t neg = (keys.payload[keys.base[k] + bit / 32] >> (bit % 32)) & 1u;
          int sum = 0;
          const u32x4 r = block_words(sg, l);
          for (int p = 0; p < detail::kScreenNibbles; ++p) sum += tab[p * 32 + detail::screen_nibble(r, p)];
          // Slot order as the vector path leaves it, so the mapping back is one.
          const int64_t g0 = (k - keys.k0) / 32 * 32;
          int slot = 0;
          while (screen_slot_key(slot) != static_cast<int>((k - keys.k0) % 32)) ++slot;
          slots[static_cast<std::size_t>(g0 + slot)] += (neg ? -sum : sum) * scale;
        }
      }
#endif
    }
  }
  for (int64_t g0 = 0; g0 < padded; g0 += 32)
    for (int s = 0; s < 32; ++s) {
      const int64_t k = keys.k0 + g0 + screen_slot_key(s);
      if (k < keys.k1) acc[k - keys.k0] += slots[static_cast<std::size_t>(g0 + s)];
    }
}

}  // namespace didmark::cpu
