#include "identity/base58.hpp"

#include <algorithm>
#include <array>

#include "didmark/error.hpp"

namespace didmark::detail {

namespace {
constexpr char kAlphabet[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

}  // namespace

// Base conversion with big digits: 58^5 < 2^32, so five base58 characters are one 32-bit
// digit and each step is a 64-bit multiply-add (did:key decoding runs a million times in a
// large royalty split).
constexpr uint32_t kBig = 58u * 58u * 58u * 58u * 58u;  // 656356768

std::string base58btc_encode(std::span<const uint8_t> bytes) {
  std::size_t zeros = 0;
  while (zeros < bytes.size() && bytes[zeros] == 0) ++zeros;
  std::vector<uint32_t> big;  // base-58^5 digits, least significant first
  big.reserve(bytes.size() / 3 + 2);
  std::size_t i = zeros;
  while (i < bytes.size()) {
    // Take up to 3 bytes at a time: value * 2^24 + chunk stays within 64 bits.
    const std::size_t take = std::min<std::size_t>(3, bytes.size() - i);
    uint64_t chunk = 0;
    for (std::size_t k = 0; k < take; ++k) chunk = (chunk << 8) | bytes[i + k];
    i += take;
    const uint64_t mul = uint64_t(1) << (8 * take);
    uint64_t carry = chunk;
    for (auto& d : big) {
      const uint64_t t = d * mul + carry;
      d = static_cast<uint32_t>(t % kBig);
      carry = t / kBig;
    }
    while (carry > 0) {
      big.push_back(static_cast<uint32_t>(carry % kBig));
      carry /= kBig;
    }
  }
  std::string digits;  // base58, least significant first
  digits.reserve(big.size() * 5);
  for (std::size_t k = 0; k < big.size(); ++k) {
    uint32_t d = big[k];
    for (int j = 0; j < 5; ++j) {
      digits.push_back(kAlphabet[d % 58]);
      d /= 58;
    }
  }
  while (!digits.empty() && digits.back() == '1') digits.pop_back();  // leading zero digits
  std::string out(zeros, '1');
  out.append(digits.rbegin(), digits.rend());
  return out;
}

std::vector<uint8_t> base58btc_decode(std::string_view text) {
  static const auto table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    for (int k = 0; k < 58; ++k) t[static_cast<unsigned char>(kAlphabet[k])] = static_cast<int8_t>(k);
    return t;
  }();
  std::size_t ones = 0;
  while (ones < text.size() && text[ones] == '1') ++ones;
  std::vector<uint32_t> limbs;  // base 2^32, least significant first
  limbs.reserve(text.size() * 733 / 4000 + 2);
  std::size_t i = ones;
  while (i < text.size()) {
    const std::size_t take = std::min<std::size_t>(5, text.size() - i);
    uint64_t chunk = 0, mul = 1;
    for (std::size_t k = 0; k < take; ++k, ++i) {
      const int v = table[static_cast<unsigned char>(text[i])];
      if (v < 0) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (c >= 0x21 && c < 0x7f)
          DIDMARK_THROW(Errc::invalid_argument, "character '", text[i], "' at position ", i,
                        " is not in the base58btc alphabet");
        DIDMARK_THROW(Errc::invalid_argument, "byte 0x", std::hex, int(c), std::dec, " at position ", i,
                      " is not in the base58btc alphabet");
      }
      chunk = chunk * 58 + static_cast<uint64_t>(v);
      mul *= 58;
    }
    uint64_t carry = chunk;
    for (auto& l : limbs) {
      const uint64_t t = l * mul + carry;
      l = static_cast<uint32_t>(t);
      carry = t >> 32;
    }
    while (carry > 0) {
      limbs.push_back(static_cast<uint32_t>(carry));
      carry >>= 32;
    }
  }
  std::vector<uint8_t> out(ones, 0);
  std::size_t nbytes = limbs.size() * 4;
  while (nbytes > 0 && ((limbs[(nbytes - 1) / 4] >> (8 * ((nbytes - 1) % 4))) & 0xff) == 0) --nbytes;
  out.reserve(ones + nbytes);
  for (std::size_t b = nbytes; b-- > 0;) out.push_back(static_cast<uint8_t>(limbs[b / 4] >> (8 * (b % 4))));
  return out;
}

}  // namespace didmark::detail
