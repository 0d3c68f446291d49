#pragma once
/// \file philox.hpp
/// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
/// SC 2011), the counter-based generator behind every keyed carrier in didmark.
///
/// Output = philox4x32_10(counter, key) is a pure function of 128 counter bits and 64 key
/// bits, so element i of any stream is made on any device, in any order, with nothing
/// stored. The same function runs in the CPU loops and in the CUDA kernels, so carriers are
/// bit-identical across devices. Known-answer vectors (Random123) are in tests/core.

#include <cstdint>

#include "didmark/detail/config.hpp"

namespace didmark::detail {

struct u32x4 {
  uint32_t x, y, z, w;
};
struct u32x2 {
  uint32_t x, y;
};

DIDMARK_HD DIDMARK_FORCEINLINE void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
#endif
}

DIDMARK_HD DIDMARK_FORCEINLINE u32x4 philox_round(u32x4 c, u32x2 k) {
  uint32_t hi0, lo0, hi1, lo1;
  mulhilo32(0xD2511F53u, c.x, hi0, lo0);
  mulhilo32(0xCD9E8D57u, c.z, hi1, lo1);
  return u32x4{hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0};
}

/// Philox4x32 with 10 rounds: 128 random bits per call.
DIDMARK_HD DIDMARK_FORCEINLINE u32x4 philox4x32_10(u32x4 c, u32x2 k) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 9; ++r) {
    c = philox_round(c, k);
    k.x += 0x9E3779B9u;  // Weyl key schedule (golden ratio, sqrt(3)-1)
    k.y += 0xBB67AE85u;
  }
  return philox_round(c, k);
}

/// Murmur3's 32-bit finalizer: a cheap bijective mixer, used where a full Philox call
/// per element would cost more than the memory traffic (dither for stochastic rounding).
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

}  // namespace didmark::detail
