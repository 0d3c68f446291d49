#pragma once
// Mark certificates inside `didmark embed`, `didmark verify` and `didmark attribute lineage`.
//
//   embed:   add_embed_certificate_option(*cmd, f->cert);
//            check_certificate_output(f->cert, in, out, force);           // before embedding
//            certify_embedded(report, identity, options, f->cert, force, backend, json, text);
//   verify:  add_verify_certificate_options(*cmd, f->cert);
//            const CertifiedOwners co = resolve_certified_owners(f->mark, f->cert, *cmd);  // instead of resolve_owners
//            options.sketches += co's certified sketches; ... verify_input ...
//            const nlohmann::json precedence = certificate_precedence(co, path, options, verdicts, backend, quiet);
// Without --certificate every one of them behaves exactly as the code it replaces.
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "cli.hpp"
#include "didmark/certificate.hpp"
#include "didmark/identity.hpp"
#include "didmark/inputs.hpp"
#include "mark_options.hpp"

namespace didmark::cli {

struct CertificateFlags {
  std::string output;                 ///< embed: write the certificate of OUT here
  std::vector<std::string> files;     ///< verify / lineage: certificates (repeatable)
  std::vector<std::string> trusted;   ///< --trust-authority DID (repeatable)
  bool disclose_key = false;          ///< embed / make: put the watermark key in the certificate
  std::string timestamp;              ///< embed / make: time of marking (default now)
};

/// embed: --certificate CERT, --disclose-key.
void add_embed_certificate_option(CLI::App& embed, CertificateFlags& f);
/// verify (and lineage): --certificate CERT (repeatable), --trust-authority DID (repeatable).
void add_verify_certificate_options(CLI::App& verify, CertificateFlags& f);

/// With --certificate: refuse before anything is written when the certificate cannot be.
void check_certificate_output(const CertificateFlags& f, const std::filesystem::path& input,
                              const std::filesystem::path& output, bool force);
/// With --certificate: certify what embed wrote (the mark must verify in it), signed by
/// `owner`; adds "certificate" to `json` and a line to `text`.
void certify_embedded(const InputEmbedReport& r, const Identity& owner, const InputOptions& options,
                      const CertificateFlags& f, bool force, Backend& backend, nlohmann::json& json, std::string& text);

/// What `certify` produced.
struct Certified {
  Verdict verdict;          ///< the owner's mark in the model (checked before signing)
  std::string certificate;  ///< the signed certificate text (empty when not detected)
  std::string id;
  std::string marked_at;
};
/// Verify the owner's mark in `model` with `options`; when detected, sign a certificate of
/// the model's files (and `sketch` when not empty) with `owner`.
Certified certify(const std::filesystem::path& model, const Identity& owner, const InputOptions& options,
                  const std::string& sketch, const std::string& timestamp, bool disclose_key, Backend& backend);

/// A certificate read from a file and verified.
struct LoadedCertificate {
  std::string file;
  CertificateCheck check;
  std::optional<std::filesystem::path> sketch;  ///< the certified sketch, when found beside it or named
};
/// Read and verify a certificate file: Errc::not_found / io_error when unreadable,
/// Errc::corrupt_input naming the file and the reason when it does not verify.
LoadedCertificate load_certificate(const std::string& file, const std::vector<std::string>& trusted);

struct CertifiedOwners {
  std::vector<Owner> owners;
  std::vector<LoadedCertificate> certificates;
  /// The sketch of an owner (from its certificate), when there is one.
  std::optional<std::filesystem::path> sketch_for(const std::string& did) const;
};
/// The owners to verify: --id / --registry [--did] (as resolve_owners), plus the owner of
/// every certificate. A certificate's key comes from --id or --registry (it must match the
/// certified key digest) or from the certificate when its owner disclosed it. Mark options
/// left at their defaults (--scheme, --strength, --tensors) are taken from the certificates.
CertifiedOwners resolve_certified_owners(MarkFlags& mark, const CertificateFlags& f, const CLI::App& cmd);

/// The certified sketches (beside their certificates or named) as sketches to realign with.
std::vector<LoadedSketch> certified_sketches(const CertifiedOwners& co, std::span<const LoadedSketch> named);

/// The file's precedence (JSON array, earliest first), or null without certificates. Each
/// certified owner's model is checked when it is this file (`input`; skipped when empty) or
/// sits beside its certificate (verified for `owners` with `options`; skipped when there are
/// no owners, e.g. for precomputed verdicts).
nlohmann::json certificate_precedence(const CertifiedOwners& co, const std::filesystem::path& input,
                                      std::span<const Owner> owners, const InputOptions& options,
                                      const std::vector<Verdict>& verdicts, Backend& backend, bool quiet,
                                      std::vector<PrecedenceEntry>* entries = nullptr);
/// Human lines for a precedence array (nothing for null).
void print_precedence(const nlohmann::json& precedence);

}  // namespace didmark::cli
