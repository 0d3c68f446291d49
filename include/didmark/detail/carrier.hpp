#pragma once
/// \file carrier.hpp
/// The keyed carrier ("carrier v1"): for element j (row-major index within one tensor)
///  * block g = j / 128 is one Philox4x32-10 call; its 128 output bits are the signs of the
///    block's 128 elements (bit set = -1), so one call serves 128 elements;
///  * the whole block carries payload bit b(g) = (g + bit_offset) mod L: bits cycle through
///    a tensor's blocks, which keeps every bit's share within one block of the others;
///  * an element's stochastic-rounding dither (16-bit outputs only) mixes the block's 128
///    bits with the element's position.
/// The counter is (g low, g high | domain << 28, stream.x, stream.y), the key is the
/// tensor's 64-bit subkey; see engine/watermark/carrier_key.cpp for how the per-tensor
/// subkey and stream come from the 256-bit watermark key and the tensor name.

#include <cstdint>

#include "didmark/detail/config.hpp"
#include "didmark/detail/philox.hpp"

namespace didmark::detail {

inline constexpr int kCarrierBlock = 128;

/// Domains separate the uses of one tensor stream (counter word y, top four bits).
enum CarrierDomain : uint32_t { kDomainSign = 0, kDomainStdmDither = 1 };

/// Everything a kernel needs to regenerate one tensor's carrier.
struct CarrierSpec {
  u32x2 key;            ///< Philox key (per-tensor subkey)
  u32x2 stream;         ///< counter words z, w
  uint32_t bit_offset;  ///< b(g) = (g + bit_offset) mod num_bits
  uint32_t num_bits;    ///< payload length L >= 1
};

DIDMARK_HD DIDMARK_FORCEINLINE u32x4 carrier_random(const CarrierSpec& s, uint64_t block, uint32_t domain) {
  const u32x4 ctr{static_cast<uint32_t>(block), (static_cast<uint32_t>(block >> 32) & 0x0FFFFFFFu) | (domain << 28),
                  s.stream.x, s.stream.y};
  return philox4x32_10(ctr, s.key);
}

/// 128 sign bits of block g (bit e set: element g*128+e has carrier -1).
DIDMARK_HD DIDMARK_FORCEINLINE u32x4 carrier_signs(const CarrierSpec& s, uint64_t block) {
  return carrier_random(s, block, kDomainSign);
}

DIDMARK_HD DIDMARK_FORCEINLINE uint32_t carrier_word(const u32x4& r, uint32_t i) {
  return i == 0 ? r.x : i == 1 ? r.y : i == 2 ? r.z : r.w;
}

/// Sign bit of element e (0..127) of a block: 0 -> +1, 1 -> -1.
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t carrier_sign_bit(const u32x4& r, uint32_t e) {
  return (carrier_word(r, e >> 5) >> (e & 31u)) & 1u;
}

DIDMARK_HD DIDMARK_FORCEINLINE uint32_t carrier_bit_index(const CarrierSpec& s, uint64_t block) {
  return static_cast<uint32_t>((block + s.bit_offset) % s.num_bits);
}

/// Uniform 32-bit dither of element e of a block, for stochastic rounding to 16 bits.
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t carrier_dither(const u32x4& r, uint32_t e) {
  // One mixer per element; given the element's own sign bit the other 127 bits stay
  // uniform, so the dither is independent of the sign it rounds.
  return fmix32((r.x ^ r.w) + (e + 1u) * 0x9E3779B9u);
}

/// Flip the sign of v when `bit` is set: the carrier product c_j * v without a multiply.
DIDMARK_HD DIDMARK_FORCEINLINE float apply_sign(float v, uint32_t bit) {
  return v * (1.0f - 2.0f * static_cast<float>(bit));
}

}  // namespace didmark::detail
