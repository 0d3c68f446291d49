// The payload codeword of a DID: BLAKE2b-512 in counter mode over the DID, domain separated.
#include <sodium.h>

#include <cmath>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "identity/crypto.hpp"

namespace didmark {

namespace {
constexpr std::string_view kCodewordDomain = "didmark/codeword/v1";

// Block b of the codeword stream: BLAKE2b-512(domain || 0x00 || u32le(b) || DID).
void codeword_bytes(std::string_view did, std::size_t nbytes, std::vector<uint8_t>& out) {
  detail::ensure_sodium();
  out.assign((nbytes + 63) / 64 * 64, 0);
  for (uint32_t b = 0; b * 64 < nbytes; ++b) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, nullptr, 0, 64);
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(kCodewordDomain.data()), kCodewordDomain.size());
    const uint8_t sep[5] = {0, static_cast<uint8_t>(b), static_cast<uint8_t>(b >> 8), static_cast<uint8_t>(b >> 16),
                            static_cast<uint8_t>(b >> 24)};
    crypto_generichash_update(&st, sep, sizeof sep);
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(did.data()), did.size());
    crypto_generichash_final(&st, out.data() + 64 * b, 64);
  }
  out.resize(nbytes);
}
}  // namespace

Payload did_codeword(std::string_view did, std::size_t bits) {
  DIDMARK_EXPECTS(bits >= 1 && bits <= kMaxPayloadBits, invalid_argument, "codeword length ", bits,
                  " is outside 1..", kMaxPayloadBits);
  (void)parse_did(did);
  std::vector<uint8_t> bytes;
  codeword_bytes(did, (bits + 7) / 8, bytes);
  return Payload::from_bytes(bytes, bits);
}

std::string codeword_fingerprint(std::string_view did) {
  (void)parse_did(did);
  std::vector<uint8_t> bytes;
  codeword_bytes(did, 8, bytes);
  return detail::to_hex(bytes);
}

CodewordMatch match_codeword(std::span<const uint8_t> recovered_bits, std::string_view did, double p_threshold) {
  DIDMARK_EXPECTS(!recovered_bits.empty(), invalid_argument, "no recovered bits to match against ", did);
  DIDMARK_EXPECTS(p_threshold > 0 && p_threshold <= 1, invalid_argument, "p threshold ", p_threshold,
                  " is outside (0, 1]");
  const Payload cw = did_codeword(did, recovered_bits.size());
  CodewordMatch m;
  m.bits = static_cast<int>(recovered_bits.size());
  for (std::size_t i = 0; i < recovered_bits.size(); ++i) {
    DIDMARK_EXPECTS(recovered_bits[i] <= 1, invalid_argument, "recovered bit ", i, " is ", int(recovered_bits[i]),
                    ", not 0 or 1");
    m.agreeing += recovered_bits[i] == cw.bits[i];
  }
  m.log10_p = binomial_tail_log10(m.bits, m.agreeing);
  m.valid = m.log10_p <= std::log10(p_threshold);
  return m;
}

}  // namespace didmark
