#pragma once
/// \file identity.hpp
/// Who owns a mark: DIDs, identity files, per-DID watermark keys, the payload codeword of a
/// DID and registries of verification keys.
///
///  * `did:key` with Ed25519 is generated, parsed and used for signing; other DID methods
///    (did:web, did:ethr, did:pkh, ...) are accepted as owner names where nothing is signed.
///  * An identity file holds a DID and its Ed25519 secret seed (JSON, mode 0600).
///  * The watermark key (256 bits) is derived from the identity secret and the DID with a
///    standard KDF; it can be exported alone so a marketplace verifies without the secret.
///  * The payload is a 256-bit codeword derived from the DID.
///  * A registry is a JSON Lines file of {"did": ..., "key": hex} entries.
///
/// Secrets never appear in error messages, logs or JSON output.

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/watermark.hpp"

namespace didmark {

/// A parsed DID.
struct DidInfo {
  std::string did;     ///< the whole DID, canonical: did:web's host name in lower case (DNS names are case-insensitive)
  std::string method;  ///< "key", "web", "ethr", "pkh", ...
  /// For did:key with Ed25519: the 32-byte public key.
  std::optional<std::array<uint8_t, 32>> ed25519_public;
};

/// Parse and validate a DID (W3C DID syntax: "did:" method ":" method-specific-id). For
/// did:key the multibase/multicodec encoding is checked and the key extracted; other
/// methods are checked for syntax only. Throws Errc::invalid_argument with the reason.
DidInfo parse_did(std::string_view did);

/// did:key:z6Mk... for an Ed25519 public key.
std::string did_key_from_ed25519(std::span<const uint8_t, 32> public_key);

/// An owner identity: a did:key and its Ed25519 secret. Copying copies the secret.
class Identity {
 public:
  /// An empty identity (no DID, zero seed); assign a real one before use.
  Identity() = default;
  Identity(const Identity&) = default;
  Identity& operator=(const Identity&) = default;
  Identity(Identity&&) noexcept = default;
  Identity& operator=(Identity&&) noexcept = default;
  /// Wipes the seed from memory.
  ~Identity();

  /// A fresh identity from the system's secure random source.
  static Identity generate();
  /// The identity of a 32-byte Ed25519 seed (deterministic).
  static Identity from_seed(std::span<const uint8_t, 32> seed);

  const std::string& did() const noexcept { return did_; }
  const std::array<uint8_t, 32>& public_key() const noexcept { return public_key_; }
  /// Ed25519 signature (64 bytes) of `message`.
  std::array<uint8_t, 64> sign(std::span<const uint8_t> message) const;
  /// The 256-bit watermark key of this identity (KDF of the secret and the DID).
  WatermarkKey watermark_key() const;
  /// The secret seed. Handle with care; never print it.
  const std::array<uint8_t, 32>& seed() const noexcept { return seed_; }

 private:
  std::string did_;
  std::array<uint8_t, 32> seed_{};
  std::array<uint8_t, 32> public_key_{};
};

/// The watermark key of (secret, DID): HKDF-SHA256 (RFC 5869) with IKM = the 32-byte
/// secret, salt = "didmark/watermark-key/v1", info = the DID's UTF-8 bytes, 32 bytes out.
/// Identity::watermark_key() is derive_watermark_key(seed(), did()).
WatermarkKey derive_watermark_key(std::span<const uint8_t, 32> secret, std::string_view did);

/// Verify an Ed25519 signature made by the did:key `did`: false for a wrong signature (or
/// one that is not 64 bytes); Errc::invalid_argument when `did` is not an Ed25519 did:key.
bool verify_signature(std::string_view did, std::span<const uint8_t> message, std::span<const uint8_t> signature);

/// Write an identity file (JSON with the DID and the secret seed, mode 0600, written
/// atomically). Refuses to overwrite an existing file unless `overwrite`.
void save_identity(const Identity& id, const std::filesystem::path& path, bool overwrite = false);
/// Read an identity file. Refuses (Errc::permission, with the mode and the fix) a file that
/// group or others have any access to (mode & 077, as ssh does); Errc::corrupt_input when
/// malformed or when the DID does not belong to the seed, Errc::not_found when missing.
/// No message ever quotes the seed.
Identity load_identity(const std::filesystem::path& path);

/// The payload codeword of a DID: `bits` bits (default 256) derived by hashing the DID.
/// Two different DIDs agree on about half their bits.
Payload did_codeword(std::string_view did, std::size_t bits = kDefaultPayloadBits);

/// A short public fingerprint of a DID's codeword: its first 8 bytes in hex (16 digits).
std::string codeword_fingerprint(std::string_view did);

/// How well recovered bits match a DID's codeword.
struct CodewordMatch {
  int bits = 0;
  int agreeing = 0;
  double log10_p = 0;  ///< exact binomial tail of agreeing bits under "not this DID"
  bool valid = false;  ///< log10_p <= log10(p_threshold)
};
CodewordMatch match_codeword(std::span<const uint8_t> recovered_bits, std::string_view did,
                             double p_threshold = 1e-9);

/// One verification key in a registry.
struct RegistryEntry {
  std::string did;
  WatermarkKey key;
};

/// Read a JSON Lines registry. Malformed lines, bad DIDs, bad keys and duplicate DIDs are
/// refused with the line number (Errc::corrupt_input). Blank lines are allowed.
std::vector<RegistryEntry> load_registry(const std::filesystem::path& path);
/// The registry line {"did": ..., "key": hex} of an entry (no trailing newline).
std::string registry_line(const RegistryEntry& e);

}  // namespace didmark
