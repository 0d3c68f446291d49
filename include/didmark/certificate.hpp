#pragma once
/// \file certificate.hpp
/// Mark certificates: who marked which model, how, and when, signed by the owner and
/// countersigned by a registration authority's clock; and the precedence of several owners'
/// marks in one file.
///
/// Two marks in one file cannot say which came first; signed time can. A mark certificate is a
/// W3C Verifiable Credential 2.0 (types VerifiableCredential + DidmarkMarkCertificate) issued
/// by the owner's did:key with an eddsa-jcs-2022 Data Integrity proof. It binds:
///  * the owner DID (issuer and credentialSubject.id);
///  * the mark: scheme, carrier version ("carrier-v1"), strength, the tensors regex, the
///    payload length and a digest of the watermark key (never the key itself unless the owner
///    asks to disclose it; never the identity seed);
///  * the marked model: every file with its SHA-256, listed as OpenSSF Model Signing v1.0
///    lists resources ({name, algorithm, digest}, sorted by name, names relative to the model
///    root: for a sharded checkpoint the index and every shard), plus a parameter summary;
///  * the alignment sketch when there is one (an opaque file: its name and SHA-256);
///  * the time of marking (validFrom), which is self-asserted.
///
/// A registration authority countersigns with its own identity and clock: a second proof
/// chained to the owner's (VC Data Integrity proof chains: `previousProof` names the owner
/// proof's id, and the authority signs the credential together with that proof). Times are
/// reported as `countersigned` (the authority's) or `self-asserted` (the owner's validFrom).
///
/// Precedence (mark_precedence): among the owners whose marks a file carries and who hold
/// certificates, countersigned owners come first in the order of the authorities' times, then
/// self-asserted owners in the order of their own times (flagged). A later owner whose own
/// certified model was checked and does not carry an earlier owner's mark is flagged
/// `inconsistent`. docs/certificate.md has the format, the rules and the interop notes.
///
/// Example:
/// \code
///   didmark::MarkCertificate c;
///   c.scheme = didmark::Scheme::spread_spectrum;
///   c.strength = 0.005;
///   c.key_digest = didmark::watermark_key_digest(owner.watermark_key());
///   c.resources = didmark::model_resources("marked.safetensors");
///   std::string cert = didmark::make_mark_certificate(c, owner);
///   std::string cert2 = didmark::countersign_certificate(cert, authority);
///   didmark::CertificateCheck k = didmark::verify_certificate(cert2);   // k.valid, k.countersigned
/// \endcode

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/watermark.hpp"

namespace didmark {

class Identity;

/// The carrier version certificates name (detail/carrier.hpp, docs/watermark.md).
inline constexpr std::string_view kCarrierVersion = "carrier-v1";

/// One file of a model, as OpenSSF Model Signing v1.0 lists resources.
struct ModelResource {
  std::string name;                ///< relative to the model root, '/' separators
  std::string algorithm = "sha256";
  std::string digest;              ///< lower-case hex
  bool operator==(const ModelResource&) const = default;
};

/// The files of the model at `path` with their SHA-256, sorted by name:
///  * a sharded safetensors checkpoint (an index, or a folder holding one): the index and
///    every shard it names, names relative to the index's folder;
///  * any other file: that file, named by its file name.
/// Errc::not_found for a missing path, Errc::invalid_argument for a folder that is not a
/// sharded checkpoint; index errors as read_safetensors_index reports them.
std::vector<ModelResource> model_resources(const std::filesystem::path& path);

/// A file's resource entry: SHA-256 of its bytes (read through a mapping) under `name`.
ModelResource file_resource(const std::filesystem::path& file, std::string name);

/// Elements per dtype of a checkpoint's tensors: what a certificate records so that a
/// verifier can tell a quantized copy (the same parameters in narrower types).
struct ModelSummary {
  std::string format;                    ///< "safetensors", "safetensors-sharded", "pt", "npy"
  int64_t parameters = 0;                ///< elements of all tensors
  std::map<std::string, int64_t> dtypes;  ///< dtype name -> elements
  /// Mean bytes per element over all tensors (0 when there are none).
  double bytes_per_parameter() const noexcept;
};
/// The summary of a checkpoint file (any CheckpointFormat); nullopt for files that are not
/// checkpoints didmark can open (datasets, .pt without LibTorch).
std::optional<ModelSummary> summarize_checkpoint(const std::filesystem::path& path);

/// SHA-256("didmark/watermark-key-digest/v1" || 0x00 || key), hex: binds a certificate to a
/// watermark key without revealing it.
std::string watermark_key_digest(const WatermarkKey& key);

/// What a certificate says. make_mark_certificate reads the mark, model and sketch fields
/// (owner, id and marked_at come from the signer, the content and the clock);
/// verify_certificate fills all of them.
struct MarkCertificate {
  std::string id;         ///< "urn:uuid:..." (derived from the content)
  std::string owner;      ///< the owner's did:key (issuer and credentialSubject.id)
  std::string marked_at;  ///< validFrom, RFC 3339 (self-asserted); empty: now
  // The mark, as verification needs it.
  Scheme scheme = Scheme::spread_spectrum;
  std::string carrier = std::string(kCarrierVersion);
  double strength = 0;     ///< the embed strength (STDM verification needs it)
  std::string tensors;     ///< the --tensors regex ("" = the default eligibility policy)
  int payload_bits = static_cast<int>(kDefaultPayloadBits);
  std::string key_digest;  ///< watermark_key_digest of the owner's watermark key
  /// The watermark key itself, only when the owner chose to disclose it (anyone holding the
  /// certificate can then verify the mark, and also weaken it).
  std::optional<WatermarkKey> verification_key;
  // The marked model.
  std::string model_format;
  std::vector<ModelResource> resources;  ///< sorted by name, unique, non-empty
  std::optional<ModelSummary> summary;
  std::optional<ModelResource> sketch;
};

/// Sign a certificate for `claim` with the owner's identity: issuer = owner.did(), validFrom
/// and the proof's `created` = claim.marked_at (or now, UTC with milliseconds). Returns the
/// canonical (RFC 8785) JSON text with a trailing newline. Refused (Errc::invalid_argument):
/// no resources, unsorted or duplicate names, digests that are not 64 hex digits, a key digest
/// that is not the owner's key's (when the claim discloses the key), a strength that is not
/// positive and finite, a bad time.
std::string make_mark_certificate(const MarkCertificate& claim, const Identity& owner);

/// Add a registration authority's proof, chained to the owner's proof, with the authority's
/// clock (`time`, RFC 3339; empty: now). The certificate must verify first (Errc::invalid_argument
/// with the reason otherwise); the owner cannot countersign their own certificate and an
/// authority cannot countersign twice (Errc::invalid_argument).
std::string countersign_certificate(std::string_view certificate, const Identity& authority,
                                    std::string_view time = {});

/// One countersignature of a certificate.
struct Countersignature {
  std::string authority;  ///< its did:key
  std::string time;       ///< its proof's `created`
  bool trusted = true;    ///< the authority is in the trusted list (or no list was given)
};

/// The result of verify_certificate.
struct CertificateCheck {
  bool valid = false;   ///< shape, the owner's proof and every countersignature hold
  std::string reason;   ///< the first failure, in words (empty when valid)
  MarkCertificate certificate;
  std::vector<Countersignature> countersignatures;  ///< valid ones, in file order
  /// The time that orders this certificate: the earliest trusted countersignature's time
  /// when there is one (countersigned = true), else marked_at (self-asserted).
  std::string time;
  bool countersigned = false;
  std::string authority;  ///< the authority whose time it is (empty when self-asserted)
  bool canonical = false;  ///< the bytes are exactly the canonical form (+ newline)
};

/// Check a certificate's bytes: JSON, the VC shape, the owner's eddsa-jcs-2022 proof by the
/// issuer's did:key, each countersignature's chained proof. `trusted_authorities` (DIDs):
/// when non-empty, only their countersignatures set the time; others are listed with
/// trusted = false. Errc::corrupt_input only when the text is not JSON at all; every other
/// defect is valid = false with the reason.
CertificateCheck verify_certificate(std::string_view bytes, std::span<const std::string> trusted_authorities = {});

/// Whether `actual` (model_resources of a model) is the certified model: the same names and
/// digests (for single-file models the digest alone: a renamed copy is the same model). Returns an empty string when it is, else the first difference in words.
std::string compare_resources(std::span<const ModelResource> certified, std::span<const ModelResource> actual);

// ---- Precedence -----------------------------------------------------------------------------

/// One certified owner's evidence about one file.
struct PrecedenceInput {
  const CertificateCheck* certificate = nullptr;  ///< a valid certificate (not owned)
  bool detected = false;  ///< the owner's mark is detected in the file
  double z = 0;
  /// The file is this certificate's model (digests match).
  bool this_file = false;
  /// When the owner's certified model was checked (it is this file, or it was found and its
  /// digests matched): the DIDs whose marks it carries. nullopt: not checked.
  std::optional<std::vector<std::string>> certified_model_marks;
};

/// One owner in a file's precedence.
struct PrecedenceEntry {
  std::string did;
  std::string time;        ///< RFC 3339: the authority's when countersigned, else validFrom
  bool countersigned = false;
  std::string authority;   ///< the authority whose time it is
  std::string certificate;  ///< the certificate's id
  double z = 0;
  bool this_file = false;
  /// "self-asserted" (no trusted countersignature: ranked after every countersigned owner);
  /// "inconsistent" (the owner's certified model was checked and does not carry the mark of
  /// an earlier owner in this list); "unchecked" (a later owner whose certified model was not
  /// available to check); "tie" (the same instant as a neighbour: ordered by DID).
  std::vector<std::string> flags;
  /// For "inconsistent": the earlier owners whose marks the certified model lacks.
  std::vector<std::string> missing;
};

/// The precedence of the detected owners, earliest first (rule in the file comment and
/// docs/certificate.md). Owners not detected are left out. Several inputs for one DID: the
/// earliest-ranked certificate stands for the owner (its model checks and those of the others
/// are combined). Errc::invalid_argument for a null or invalid certificate.
std::vector<PrecedenceEntry> mark_precedence(std::span<const PrecedenceInput> inputs);

/// An RFC 3339 date-time as (seconds since 1970-01-01T00:00:00Z, nanoseconds); nullopt when
/// malformed (the grammar of XML Schema dateTime with a required offset).
std::optional<std::pair<int64_t, int32_t>> parse_rfc3339(std::string_view s);
/// Now, UTC, with milliseconds: "2026-05-01T10:44:55.123Z".
std::string utc_now_ms();

}  // namespace didmark
