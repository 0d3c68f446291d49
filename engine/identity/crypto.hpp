#pragma once
// Small wrappers over libsodium used by identity and royalty: initialisation, SHA-256,
// HKDF-SHA256 (RFC 5869, on libsodium's HMAC-SHA256) and hex.
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace didmark::detail {

/// sodium_init() once; throws Errc::internal if libsodium cannot start.
void ensure_sodium();

std::array<uint8_t, 32> sha256(std::span<const uint8_t> data);
inline std::array<uint8_t, 32> sha256(std::string_view s) {
  return sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

/// HKDF-SHA256 (RFC 5869): extract with `salt`, expand with `info` to `length` bytes (<= 8160).
std::vector<uint8_t> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info, std::size_t length);

/// Lower-case hex.
std::string to_hex(std::span<const uint8_t> bytes);
/// Exactly 2*N hex digits (either case) into N bytes; nullopt otherwise. Never echoes input.
std::optional<std::vector<uint8_t>> from_hex(std::string_view hex);

inline std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace didmark::detail
