#pragma once
// CPU loops over the shared carrier formulas (include/didmark/detail/carrier.hpp).
//
// Each loop walks whole 128-element carrier blocks: one Philox call gives the block's 128
// signs, and the block's elements are processed 8 at a time with GCC vector extensions, so
// the work per element is a load, a sign flip and two adds. Block partials are summed in the
// element type (f32 for 16-bit and 32-bit inputs) and added into f64 accumulators per bit.
// A block whose partial sum of squares is not finite holds a NaN/Inf (or overflows) and is
// redone element by element, so the fast path carries no per-element finiteness test.

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
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
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

/// Exact binary16 -> binary32 for 8 lanes without branches (subnormals by one exact subtract).
inline v8f f16x8_to_f32(v8u h) {
  const v8u magic_u = {0x38800000u, 0x38800000u, 0x38800000u, 0x38800000u,
                       0x38800000u, 0x38800000u, 0x38800000u, 0x38800000u};
  v8u o = (h & 0x7FFFu) << 13;
  const v8u exp = o & 0x0F800000u;
  o += (127u - 15u) << 23;
  const v8u is_special = (v8u)(exp == 0x0F800000u);  // all-ones where Inf/NaN
  const v8u is_small = (v8u)(exp == 0u);             // zero or subnormal
  o += is_special & ((128u - 16u) << 23);
  const v8f small = as_f(o + (1u << 23)) - as_f(magic_u);
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

/// Lane l of the result has the sign bit of element (first + l) moved to bit 31.
inline v8u sign_lanes(uint32_t word, uint32_t first) {
  const v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
  const v8u w = {word, word, word, word, word, word, word, word};
  return ((w >> (lane + first)) & 1u) << 31;
}

inline float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// ---- correlate --------------------------------------------------------------------------

/// Sum of squares of one block (n elements), in the accumulation type.
template <class T>
inline acc_t<T> block_sum_sq(const T* p, int n) {
  if constexpr (!std::is_same_v<T, double>) {
    if (n == detail::kCarrierBlock) {
      v8f q = {};
      for (int i = 0; i < detail::kCarrierBlock; i += 8) {
        const v8f v = load8(p + i);
        q += v * v;
      }
      return hsum(q);
    }
  }
  acc_t<T> q = 0;
  for (int e = 0; e < n; ++e) {
    const acc_t<T> v = to_acc(p[e]);
    q += v * v;
  }
  return q;
}

/// sum_e c_e * w_e over one block whose elements are all finite.
template <class T>
inline acc_t<T> block_correlate(const T* p, int n, const u32x4& r) {
  if constexpr (!std::is_same_v<T, double>) {
    if (n == detail::kCarrierBlock) {
      v8f s0 = {}, s1 = {};
      const uint32_t words[4] = {r.x, r.y, r.z, r.w};
      for (int wi = 0; wi < 4; ++wi) {
        const T* q = p + wi * 32;
        s0 += as_f(as_u(load8(q + 0)) ^ sign_lanes(words[wi], 0));
        s1 += as_f(as_u(load8(q + 8)) ^ sign_lanes(words[wi], 8));
        s0 += as_f(as_u(load8(q + 16)) ^ sign_lanes(words[wi], 16));
        s1 += as_f(as_u(load8(q + 24)) ^ sign_lanes(words[wi], 24));
      }
      return hsum(s0 + s1);
    }
  }
  acc_t<T> s = 0;
  for (int e = 0; e < n; ++e) {
    const acc_t<T> v = to_acc(p[e]);
    s += detail::carrier_sign_bit(r, static_cast<uint32_t>(e)) ? -v : v;
  }
  return s;
}

/// Slow path for a block that holds NaN/Inf: finite elements only, non-finite counted.
template <class T>
inline void block_correlate_checked(const T* p, int n, const u32x4* rs, int k_count, double* s_out, double& q_out,
                                    int64_t& nonfinite) {
  for (int k = 0; k < k_count; ++k) s_out[k] = 0;
  double q = 0;
  for (int e = 0; e < n; ++e) {
    const acc_t<T> v = to_acc(p[e]);
    if (!std::isfinite(v)) {
      ++nonfinite;
      continue;
    }
    q += static_cast<double>(v) * static_cast<double>(v);
    for (int k = 0; k < k_count; ++k)
      s_out[k] += detail::carrier_sign_bit(rs[k], static_cast<uint32_t>(e)) ? -static_cast<double>(v)
                                                                           : static_cast<double>(v);
  }
  q_out = q;
}

/// Correlate blocks [g0, g1) of one tensor with k_count carriers.
/// bit_sums[k] points at carriers[k].num_bits doubles.
template <class T>
void correlate_range(const T* data, int64_t numel, int64_t g0, int64_t g1, const CarrierSpec* carriers,
                     int k_count, double* const* bit_sums, double& sum_sq, int64_t& nonfinite) {
  constexpr int kMaxBatch = 16;
  u32x4 rs[kMaxBatch];
  double s_checked[kMaxBatch];
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t first = g * detail::kCarrierBlock;
    const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - first));
    const T* p = data + first;
    const acc_t<T> q = block_sum_sq(p, n);
    if (std::isfinite(q)) {
      sum_sq += static_cast<double>(q);
      for (int k = 0; k < k_count; ++k) {
        const u32x4 r = detail::carrier_signs(carriers[k], static_cast<uint64_t>(g));
        bit_sums[k][detail::carrier_bit_index(carriers[k], static_cast<uint64_t>(g))] +=
            static_cast<double>(block_correlate(p, n, r));
      }
    } else {
      for (int k0 = 0; k0 < k_count; k0 += kMaxBatch) {
        const int kb = std::min(kMaxBatch, k_count - k0);
        for (int k = 0; k < kb; ++k) rs[k] = detail::carrier_signs(carriers[k0 + k], static_cast<uint64_t>(g));
        double q_checked = 0;
        int64_t nf = 0;
        block_correlate_checked(p, n, rs, kb, s_checked, q_checked, nf);
        if (k0 == 0) {
          sum_sq += q_checked;
          nonfinite += nf;
        }
        for (int k = 0; k < kb; ++k)
          bit_sums[k0 + k][detail::carrier_bit_index(carriers[k0 + k], static_cast<uint64_t>(g))] += s_checked[k];
      }
    }
  }
}

// ---- carrier add (embed step) -------------------------------------------------------------

/// Embed blocks [g0, g1): dst = src + c * delta[b], with statistics.
template <class T>
void add_range(const T* src, T* dst, int64_t numel, int64_t g0, int64_t g1, const CarrierSpec& c,
               const float* delta, double& ssq_src, double& ssq_diff, int64_t& nonfinite) {
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t first = g * detail::kCarrierBlock;
    const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, numel - first));
    const u32x4 r = detail::carrier_signs(c, static_cast<uint64_t>(g));
    const float d = delta[detail::carrier_bit_index(c, static_cast<uint64_t>(g))];
    const T* p = src + first;
    T* o = dst + first;
    if constexpr (std::is_same_v<T, float>) {
      if (n == detail::kCarrierBlock) {
        // Fast path: all 128 outputs first, then one finiteness test on the block's sums.
        const v8f dv = {d, d, d, d, d, d, d, d};
        const uint32_t words[4] = {r.x, r.y, r.z, r.w};
        v8f q = {}, dq = {};
        alignas(32) float out[detail::kCarrierBlock];
        for (int wi = 0; wi < 4; ++wi) {
          for (int j = 0; j < 32; j += 8) {
            const v8f v = load8(p + wi * 32 + j);
            const v8f w = v + as_f(as_u(dv) ^ sign_lanes(words[wi], static_cast<uint32_t>(j)));
            const v8f diff = w - v;
            q += v * v;
            dq += diff * diff;
            std::memcpy(out + wi * 32 + j, &w, sizeof w);
          }
        }
        const float qs = hsum(q);
        if (std::isfinite(qs)) {
          std::memcpy(o, out, sizeof out);
          ssq_src += static_cast<double>(qs);
          ssq_diff += static_cast<double>(hsum(dq));
          continue;
        }
      }
    }
    if constexpr (std::is_same_v<T, bf16_t>) {
      if (n == detail::kCarrierBlock) {
        const v8f dv = {d, d, d, d, d, d, d, d};
        const uint32_t words[4] = {r.x, r.y, r.z, r.w};
        const v8u lane = {0, 1, 2, 3, 4, 5, 6, 7};
        v8f q = {}, dq = {};
        alignas(32) uint16_t out[detail::kCarrierBlock];
        for (int wi = 0; wi < 4; ++wi) {
          for (int j = 0; j < 32; j += 8) {
            const uint32_t e0 = static_cast<uint32_t>(wi * 32 + j);
            const v8f v = load8(p + e0);
            const v8u x = as_u(v + as_f(as_u(dv) ^ sign_lanes(words[wi], static_cast<uint32_t>(j))));
            // Dither per lane: detail::carrier_dither, vectorized.
            v8u h = (r.x ^ r.w) + (lane + (e0 + 1u)) * 0x9E3779B9u;
            h ^= h >> 16;
            h *= 0x85EBCA6Bu;
            h ^= h >> 13;
            h *= 0xC2B2AE35u;
            h ^= h >> 16;
            // Stochastic rounding as in detail::f32_to_bf16_sr; v finite so x is finite.
            v8u qb = x >> 16;
            qb -= (v8u)((h >> 16) < (x & 0xFFFFu));  // mask is all-ones (-1) where rounding up
            qb += (v8u)((qb & 0x7F80u) == 0x7F80u);  // back off an overflow to Inf
            const v8f w = as_f(qb << 16);
            const v8f diff = w - v;
            q += v * v;
            dq += diff * diff;
            const v8h packed = __builtin_convertvector(qb, v8h);
            std::memcpy(out + e0, &packed, sizeof packed);
          }
        }
        const float qs = hsum(q);
        if (std::isfinite(qs)) {
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

}  // namespace didmark::cpu
