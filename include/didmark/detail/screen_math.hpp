#pragma once
/// \file screen_math.hpp
/// Registry screening: one carrier-v1 block correlated with many keys at once.
///
/// The sample. A tensor is cut into groups of kScreenGroupBlocks carrier blocks (1024
/// elements); with a stride S and a phase P, group i is sampled when (i + P) % S == 0. The rule
/// looks at sizes (and a seed the caller may keep secret), never at a key, so the Hoeffding
/// bound of the known-payload test holds on the sample as on the whole tensor.
///
/// The values. Each sampled element becomes screen_value(v): NaN/Inf -> 0 (left out, counted),
/// finite values clamped to +-2^120 and rounded to f32. Each 128-element carrier block is then
/// quantized to integers q in [-15, 15] times a power of two 2^e chosen from the block's
/// largest |value| (screen_scale_exp): x~ = q 2^e. The statistic is the known-payload test on
/// x~, a key-independent function of the weights, so the Hoeffding bound holds on it exactly;
/// the rounding adds noise of at most 1/15 of a block's largest value per element, which
/// costs a Gaussian block about 0.1-0.5% of its z.
///
/// The sums. A key's block correlation sum_e c_e q_e is an exact integer (|.| <= 1920), found
/// from 32 tables of 16 entries (nibble p of the key's 128 Philox bits indexes the signed sums
/// of elements 4p..4p+3), the tables built once per block for every key. Blocks add I 2^e into
/// f64, exactly while a call's block scales span less than 2^26, so every backend and every
/// thread count gives the same sums.

#include <cmath>
#include <cstdint>
#include <cstring>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/config.hpp"
#include "didmark/detail/half.hpp"

namespace didmark::detail {

inline constexpr int kScreenGroupBlocks = 8;
inline constexpr int64_t kScreenGroup = int64_t{kScreenGroupBlocks} * kCarrierBlock;  // 1024 elements
inline constexpr int kScreenLevels = 15;                // quantized values in [-15, 15]
inline constexpr int kScreenNibbles = kCarrierBlock / 4;  // 32 tables of 16 entries per block
inline constexpr double kScreenClamp = 0x1p120;
/// Blocks whose largest |value| is below this quantize to all zeros.
inline constexpr float kScreenTiny = 0x1p-100f;

/// First sampled group of a tensor under (stride, phase): the smallest i >= 0 with
/// (i + phase) % stride == 0.
DIDMARK_HD DIDMARK_FORCEINLINE int64_t screen_first_group(int64_t stride, int64_t phase) {
  const int64_t p = phase % stride;
  return p == 0 ? 0 : stride - p;
}

/// Sampled groups among `groups` under (stride, phase).
DIDMARK_HD DIDMARK_FORCEINLINE int64_t screen_group_count(int64_t groups, int64_t stride, int64_t phase) {
  const int64_t first = screen_first_group(stride, phase);
  return groups > first ? (groups - 1 - first) / stride + 1 : 0;
}

/// The value a sampled element contributes; `finite` false for NaN/Inf (which contribute 0).
DIDMARK_HD DIDMARK_FORCEINLINE float screen_value(double v, bool& finite) {
  finite = !(v != v) && v - v == 0.0;  // NaN fails the first test, +-Inf the second
  if (!finite) return 0.0f;
  if (v > kScreenClamp) v = kScreenClamp;
  if (v < -kScreenClamp) v = -kScreenClamp;
  return static_cast<float>(v);
}

/// The block's scale exponent: the smallest e with m <= 15 * 2^e, for its largest |value| m
/// (m >= kScreenTiny, finite). Read off m's bits, so it is exact everywhere.
DIDMARK_HD DIDMARK_FORCEINLINE int screen_scale_exp(float m) {
  const uint32_t b = f32_bits(m);
  const int E = static_cast<int>((b >> 23) & 0xFFu) - 127;
  return (b & 0x7FFFFFu) <= 0x700000u ? E - 3 : E - 2;  // 15 * 2^(E-3) = 1.875 * 2^E
}

/// 2^-e as f32 (exact; e within [-126, 126]).
DIDMARK_HD DIDMARK_FORCEINLINE float screen_inv_scale(int e) {
  return bits_f32(static_cast<uint32_t>(127 - e) << 23);
}

/// 2^e as f64.
DIDMARK_HD DIDMARK_FORCEINLINE double screen_scale(int e) {
  uint64_t u = static_cast<uint64_t>(1023 + e) << 52;
  double d;
#if defined(__CUDA_ARCH__)
  d = __longlong_as_double(static_cast<long long>(u));
#else
  std::memcpy(&d, &u, sizeof d);
#endif
  return d;
}

/// x quantized under a block's inverse scale: round(x 2^-e), ties to even, within [-15, 15].
DIDMARK_HD DIDMARK_FORCEINLINE int screen_quantize(float x, float inv_scale) {
  const int q = static_cast<int>(rintf(x * inv_scale));
  return q > kScreenLevels ? kScreenLevels : q < -kScreenLevels ? -kScreenLevels : q;
}

/// Entry m of the table of 4 quantized values: sum of q[i], negated where bit i of m is set.
DIDMARK_HD DIDMARK_FORCEINLINE int screen_nibble_entry(const int8_t* q, uint32_t m) {
  const int a = (m & 1u) ? -q[0] : q[0];
  const int b = (m & 2u) ? -q[1] : q[1];
  const int c = (m & 4u) ? -q[2] : q[2];
  const int d = (m & 8u) ? -q[3] : q[3];
  return a + b + c + d;
}

/// Nibble p (0..31) of a block's 128 sign bits: the signs of elements 4p..4p+3.
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t screen_nibble(const u32x4& r, int p) {
  return (carrier_word(r, static_cast<uint32_t>(p) >> 3) >> (4 * (p & 7))) & 15u;
}

/// sum_e c_e q_e of one block from its 32 tables (tables[p * 16 + m]) and its sign bits.
template <class Entry>
DIDMARK_HD DIDMARK_FORCEINLINE int screen_block_sum(const Entry* tables, const u32x4& r) {
  int s = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int p = 0; p < kScreenNibbles; ++p) s += static_cast<int>(tables[p * 16 + screen_nibble(r, p)]);
  return s;
}

/// The payload sign bit of `bit` for a key whose payload bits are packed in `words` (bit b at
/// words[b / 64] >> (b % 64)): 1 means the bit is 1 and the block's sum counts negated.
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t screen_payload_bit(const uint64_t* words, uint32_t bit) {
  return static_cast<uint32_t>((words[bit >> 6] >> (bit & 63u)) & 1u);
}

}  // namespace didmark::detail
