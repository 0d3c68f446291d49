#include "identity/crypto.hpp"

#include <sodium.h>

#if DIDMARK_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

#include "didmark/error.hpp"

namespace didmark::detail {

void ensure_sodium() {
  static const int rc = sodium_init();
  DIDMARK_EXPECTS(rc >= 0, internal, "libsodium failed to initialise");
}

// OpenSSL's SHA-256 uses the SHA extensions where the CPU has them (about 5x libsodium's
// portable code here); statements of a million payees hash ~150 MB.
std::array<uint8_t, 32> sha256(std::span<const uint8_t> data) {
  std::array<uint8_t, 32> out{};
#if DIDMARK_HAVE_LIBCRYPTO
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 && len == 32) return out;
#endif
  crypto_hash_sha256(out.data(), data.data(), data.size());
  return out;
}

namespace {
std::array<uint8_t, 32> hmac(std::span<const uint8_t> key, std::span<const uint8_t> a, std::span<const uint8_t> b,
                             std::span<const uint8_t> c) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, a.data(), a.size());
  crypto_auth_hmacsha256_update(&st, b.data(), b.size());
  crypto_auth_hmacsha256_update(&st, c.data(), c.size());
  std::array<uint8_t, 32> out{};
  crypto_auth_hmacsha256_final(&st, out.data());
  sodium_memzero(&st, sizeof st);
  return out;
}
}  // namespace

std::vector<uint8_t> hkdf_sha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                                 std::span<const uint8_t> info, std::size_t length) {
  ensure_sodium();
  DIDMARK_EXPECTS(length <= 255 * 32, invalid_argument, "HKDF-SHA256 output of ", length,
                  " bytes exceeds 8160");
  static constexpr std::array<uint8_t, 32> zeros{};
  // RFC 5869 2.2: an absent salt is HashLen zero bytes.
  auto prk = hmac(salt.empty() ? std::span<const uint8_t>(zeros) : salt, ikm, {}, {});
  std::vector<uint8_t> okm;
  okm.reserve(length);
  std::array<uint8_t, 32> t{};
  std::size_t tlen = 0;
  for (uint8_t i = 1; okm.size() < length; ++i) {
    const uint8_t counter[1] = {i};
    t = hmac(prk, std::span<const uint8_t>(t.data(), tlen), info, counter);
    tlen = t.size();
    for (std::size_t j = 0; j < t.size() && okm.size() < length; ++j) okm.push_back(t[j]);
  }
  sodium_memzero(prk.data(), prk.size());
  sodium_memzero(t.data(), t.size());
  return okm;
}

std::string to_hex(std::span<const uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(bytes.size() * 2, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

std::optional<std::vector<uint8_t>> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<uint8_t> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int a = val(hex[2 * i]), b = val(hex[2 * i + 1]);
    if (a < 0 || b < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(a * 16 + b);
  }
  return out;
}

}  // namespace didmark::detail
