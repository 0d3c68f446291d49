#pragma once
// Deterministic identities and certificates for the certificate tests.
#include <array>
#include <string>

#include "didmark/certificate.hpp"
#include "didmark/identity.hpp"
#include "identity/crypto.hpp"

namespace didmark::test {

inline Identity identity_of(uint8_t tag) {
  std::array<uint8_t, 32> seed{};
  seed[0] = tag;
  seed[31] = 0x5a;
  return Identity::from_seed(seed);
}

/// A claim about a one-file model whose digest is derived from `model` (any text).
inline MarkCertificate claim_for(const Identity& owner, const std::string& model, const std::string& at) {
  MarkCertificate c;
  c.scheme = Scheme::spread_spectrum;
  c.strength = 0.005;
  c.tensors = "";
  c.key_digest = watermark_key_digest(owner.watermark_key());
  c.model_format = "safetensors";
  const std::string h = detail::to_hex(detail::sha256(model));
  c.resources = {{model + ".safetensors", "sha256", h}};
  c.marked_at = at;
  return c;
}

}  // namespace didmark::test
