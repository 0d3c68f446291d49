#pragma once
// W3C Data Integrity proofs with the eddsa-jcs-2022 cryptosuite (vc-di-eddsa, 3.3):
// hashData = SHA-256(JCS(proof config)) || SHA-256(JCS(document)), signed with Ed25519,
// proofValue = multibase base58btc ('z') of the 64-byte signature.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "didmark/identity.hpp"

namespace didmark::detail {

/// did:key:z6Mk...#z6Mk... for an Ed25519 did:key.
std::string did_key_verification_method(std::string_view did);

/// The proof for a document whose canonical (JCS) bytes are `canonical_document`, under
/// proof `options` (type, cryptosuite, created, verificationMethod, proofPurpose). The
/// result is `options` with "@context" (the document's, when it has one) and "proofValue".
nlohmann::json eddsa_jcs_2022_prove(std::string_view canonical_document, const nlohmann::json& document_context,
                                    nlohmann::json options, const Identity& signer);

/// Convenience: the secured document (document + "proof").
nlohmann::json eddsa_jcs_2022_sign(nlohmann::json document, nlohmann::json options, const Identity& signer);

/// Verify the proof of a secured document. Returns an empty string when it holds, else the
/// reason. The key comes from the proof's did:key verificationMethod, or from
/// `public_key` when given (for verification methods that are not did:key URLs).
std::string eddsa_jcs_2022_verify(const nlohmann::json& secured,
                                  const std::array<uint8_t, 32>* public_key = nullptr);

/// Verify one proof over `unsecured` (the document without "proof", or for a chained proof
/// the input proof_chain_input made). Empty string when it holds, else the reason.
std::string eddsa_jcs_2022_verify_proof(nlohmann::json unsecured, const nlohmann::json& proof,
                                        const std::array<uint8_t, 32>* public_key = nullptr);

// Proof sets and chains (VC Data Integrity 1.0, 4.3 "Add Proof Set/Chain"): "proof" may hold
// one proof or an array; a proof whose options have "previousProof" (an id, or an array of
// ids) signs the document with "proof" set to the array of the proofs it names.

/// The document a proof with `previous` (its previousProof, or null) signs: `secured`
/// without "proof", plus "proof": [the named proofs] when `previous` is not null.
/// Errc::corrupt_input when previousProof names no proof of the document.
nlohmann::json proof_chain_input(const nlohmann::json& secured, const nlohmann::json& previous);

/// Add a proof to a secured document (a single proof becomes a set of two). With
/// "previousProof" in `options` the new proof is chained to the proofs it names.
nlohmann::json eddsa_jcs_2022_add_proof(nlohmann::json secured, nlohmann::json options, const Identity& signer);

}  // namespace didmark::detail
