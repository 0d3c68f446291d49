#pragma once
/// \file hash.hpp
/// Unkeyed 64-bit hashes, one copy for every user: FNV-1a (names of tensors, table row
/// identities, synthetic seeds) and the murmur3 finalizer fmix64. Neither is a secret or a
/// defence against collisions chosen by an adversary; keyed selection is Philox's job.

#include <cstdint>
#include <string_view>

#include "didmark/detail/config.hpp"

namespace didmark::detail {

inline constexpr uint64_t kFnv1aSeed = 0xCBF29CE484222325ull;
inline constexpr uint64_t kFnv1aPrime = 0x100000001B3ull;

/// FNV-1a over n bytes, continued from h (start with kFnv1aSeed).
DIDMARK_HD DIDMARK_FORCEINLINE uint64_t fnv1a_update(uint64_t h, const char* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= kFnv1aPrime;
  }
  return h;
}

/// FNV-1a of a whole string.
inline uint64_t fnv1a64(std::string_view s) { return fnv1a_update(kFnv1aSeed, s.data(), s.size()); }

/// The murmur3 64-bit finalizer: a bijection that mixes every input bit into every output bit.
DIDMARK_HD DIDMARK_FORCEINLINE uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xFF51AFD7ED558CCDull;
  k ^= k >> 33;
  k *= 0xC4CEB9FE1A85EC53ull;
  k ^= k >> 33;
  return k;
}

}  // namespace didmark::detail
