#include "certificate_hooks.hpp"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "common/atomic_file.hpp"
#include "didmark/error.hpp"

namespace didmark::cli {

namespace {

namespace fs = std::filesystem;

bool option_given(const CLI::App& cmd, const std::string& name) {
  const CLI::Option* o = cmd.get_option_no_throw(name);
  return o && o->count() > 0;
}

std::string read_text(const std::string& file, const char* what) { return read_text_file(file, what); }

// The certified model when it sits beside its certificate with the certified digests.
std::optional<fs::path> model_beside(const LoadedCertificate& lc) {
  const MarkCertificate& c = lc.check.certificate;
  std::string entry;
  for (const auto& r : c.resources)
    if (r.name.size() > 23 && r.name.ends_with(".safetensors.index.json")) entry = r.name;
  if (entry.empty() && c.resources.size() == 1) entry = c.resources[0].name;
  if (entry.empty()) return std::nullopt;
  const fs::path p = fs::path(lc.file).parent_path() / entry;
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  try {
    if (!compare_resources(c.resources, model_resources(p)).empty()) return std::nullopt;
  } catch (const Error&) {
    return std::nullopt;
  }
  return p;
}

}  // namespace

void add_embed_certificate_option(CLI::App& embed, CertificateFlags& f) {
  embed.add_option("--certificate", f.output,
                   "Also write a mark certificate of OUT here: a W3C VC signed by the owner, binding the DID, the "
                   "mark's options, the output's file digests and the time (docs/certificate.md)");
  embed.add_flag("--disclose-key", f.disclose_key,
                 "With --certificate: put the watermark key in the certificate, so that anyone holding it can "
                 "verify (and also weaken) the mark");
}

void add_verify_certificate_options(CLI::App& verify, CertificateFlags& f) {
  verify.add_option("--certificate", f.files,
                    "Mark certificate (repeatable): adds its owner, orders the owners found by certified time "
                    "('precedence' in --json)");
  verify.add_option("--trust-authority", f.trusted,
                    "Only countersignatures by this authority DID count as countersigned times (repeatable; "
                    "default: every valid countersignature)");
}

Certified certify(const fs::path& model, const Identity& owner, const InputOptions& options,
                  const std::string& sketch, const std::string& timestamp, bool disclose_key, Backend& backend) {
  const WatermarkKey key = owner.watermark_key();
  const Owner who{owner.did(), key, did_codeword(owner.did())};
  InputOptions vo = options;
  vo.sketches.clear();
  const FileVerdicts fv = verify_input(model, std::span(&who, 1), vo, backend);
  Certified out;
  out.verdict = fv.verdicts.at(0);
  if (!out.verdict.detected) return out;

  MarkCertificate c;
  // The scheme that matched (verification may have tested both).
  c.scheme = options.watermark.scheme == Scheme::automatic ? out.verdict.scheme : options.watermark.scheme;
  c.strength = options.watermark.strength_for(c.scheme);
  c.tensors = options.watermark.policy.include_regex;
  c.payload_bits = static_cast<int>(kDefaultPayloadBits);
  c.key_digest = watermark_key_digest(key);
  if (disclose_key) c.verification_key = key;
  c.model_format = fv.format.name;
  c.resources = model_resources(model);
  c.summary = summarize_checkpoint(model);
  if (!sketch.empty()) c.sketch = file_resource(sketch, fs::path(sketch).filename().string());
  c.marked_at = timestamp;
  out.certificate = make_mark_certificate(c, owner);
  const auto doc = nlohmann::json::parse(out.certificate);
  out.id = doc["id"].get<std::string>();
  out.marked_at = doc["validFrom"].get<std::string>();
  return out;
}

void check_certificate_output(const CertificateFlags& f, const fs::path& input, const fs::path& output, bool force) {
  if (f.output.empty()) return;
  const fs::path cert(f.output);
  std::error_code ec;
  DIDMARK_EXPECTS(!fs::exists(cert, ec) || force, invalid_argument, "certificate '", f.output,
                  "' already exists (use --force to overwrite)");
  DIDMARK_EXPECTS(!fs::equivalent(cert, input, ec) && cert != output, invalid_argument, "--certificate '", f.output,
                  "' names the model itself");
}

void certify_embedded(const InputEmbedReport& r, const Identity& owner, const InputOptions& options,
                      const CertificateFlags& f, bool force, Backend& backend, nlohmann::json& json, std::string& text) {
  if (f.output.empty()) return;
  const Certified c = certify(r.output, owner, options, r.sketch_path.empty() ? "" : r.sketch_path.string(),
                              f.timestamp, f.disclose_key, backend);
  DIDMARK_EXPECTS(!c.certificate.empty(), invalid_argument, "the mark just embedded in '", r.output.string(),
                  "' does not verify (z ", c.verdict.z, "): no certificate written; the model may be too small for "
                  "this strength");
  detail::write_file_atomically(f.output, c.certificate, force, 0644);
  json["certificate"] = {{"output", f.output}, {"file", f.output}, {"id", c.id}, {"marked_at", c.marked_at},
                         {"valid_from", c.marked_at}};
  text += "certificate " + f.output + " (" + c.id + ", marked at " + c.marked_at + ", self-asserted until "
          "countersigned)\n";
}

LoadedCertificate load_certificate(const std::string& file, const std::vector<std::string>& trusted) {
  LoadedCertificate lc;
  lc.file = file;
  const std::string text = read_text(file, "certificate");
  try {
    lc.check = verify_certificate(text, trusted);
  } catch (const Error& e) {
    DIDMARK_THROW(Errc::corrupt_input, "certificate '", file, "': ", e.what());
  }
  DIDMARK_EXPECTS(lc.check.valid, corrupt_input, "certificate '", file, "' does not verify: ", lc.check.reason);
  return lc;
}

std::optional<fs::path> CertifiedOwners::sketch_for(const std::string& did) const {
  for (const auto& c : certificates)
    if (c.check.certificate.owner == did && c.sketch) return c.sketch;
  return std::nullopt;
}

CertifiedOwners resolve_certified_owners(MarkFlags& mark, const CertificateFlags& f, const CLI::App& cmd) {
  CertifiedOwners co;
  if (f.files.empty()) {
    co.owners = resolve_owners(mark);
    return co;
  }
  for (const auto& file : f.files) co.certificates.push_back(load_certificate(file, f.trusted));
  if (!mark.id_file.empty() || !mark.registry.empty()) co.owners = resolve_owners(mark);
  std::vector<RegistryEntry> registry;
  if (!mark.registry.empty()) registry = load_registry(mark.registry);

  for (const auto& lc : co.certificates) {
    const MarkCertificate& c = lc.check.certificate;
    const auto known = std::find_if(co.owners.begin(), co.owners.end(), [&](const Owner& o) { return o.did == c.owner; });
    std::optional<WatermarkKey> key;
    std::string source;
    if (known != co.owners.end()) {
      key = known->key;
      source = mark.id_file.empty() ? "--registry" : "--id";
    } else if (const auto e = std::find_if(registry.begin(), registry.end(),
                                           [&](const RegistryEntry& r) { return r.did == c.owner; });
               e != registry.end()) {
      key = e->key;
      source = "--registry";
    } else if (c.verification_key) {
      key = c.verification_key;
    }
    DIDMARK_EXPECTS(key.has_value(), invalid_argument, "certificate '", lc.file, "' names ", c.owner,
                    " but no watermark key for it is known: give --registry (or --id) with its key, or a certificate "
                    "made with --disclose-key");
    DIDMARK_EXPECTS(watermark_key_digest(*key) == c.key_digest, invalid_argument, "certificate '", lc.file,
                    "' certifies a mark of ", c.owner, " under another watermark key than the one ", source,
                    " gives (key digests differ)");
    if (known == co.owners.end()) co.owners.push_back(Owner{c.owner, *key, did_codeword(c.owner)});
  }

  // Mark options left at their defaults come from the certificates (all must agree).
  auto adopt = [&](const char* flag, std::string& value, auto of) {
    const std::string first = of(co.certificates.front().check.certificate);
    for (const auto& lc : co.certificates) {
      const std::string v = of(lc.check.certificate);
      if (option_given(cmd, flag))
        DIDMARK_EXPECTS(v == value, invalid_argument, "certificate '", lc.file, "' says the mark was made with ",
                        flag, " '", v, "', not '", value, "'");
      else
        DIDMARK_EXPECTS(v == first, invalid_argument, "the certificates disagree on ", flag, " ('", first, "' and '",
                        v, "'): verify them separately, or give ", flag);
    }
    if (!option_given(cmd, flag)) value = first;
  };
  adopt("--scheme", mark.scheme, [](const MarkCertificate& c) { return std::string(scheme_name(c.scheme)); });
  adopt("--tensors", mark.tensors, [](const MarkCertificate& c) { return c.tensors; });
  if (!option_given(cmd, "--strength")) {
    const double s = co.certificates.front().check.certificate.strength;
    bool agree = true;
    for (const auto& lc : co.certificates) agree = agree && lc.check.certificate.strength == s;
    // Spread-spectrum verification does not depend on the strength; STDM's lattice does.
    DIDMARK_EXPECTS(agree || mark.scheme != "stdm", invalid_argument,
                    "the certificates' STDM marks have different strengths: verify them separately");
    if (agree) mark.strength = s;
  }

  // Sketches: named with --sketch, or beside the certificate under the certified name.
  const std::vector<std::string>& named = mark.sketches;
  for (auto& lc : co.certificates) {
    const auto& sk = lc.check.certificate.sketch;
    if (!sk) continue;
    for (const auto& s : named)
      if (file_resource(s, "sketch").digest == sk->digest) lc.sketch = s;
    const fs::path beside = fs::path(lc.file).parent_path() / sk->name;
    std::error_code ec;
    if (!lc.sketch && fs::exists(beside, ec)) {
      DIDMARK_EXPECTS(file_resource(beside, sk->name).digest == sk->digest, corrupt_input, "sketch '",
                      beside.string(), "' beside certificate '", lc.file,
                      "' is not the certified sketch (sha256 differs): it was replaced or modified");
      lc.sketch = beside;
    }
  }
  return co;
}

std::vector<LoadedSketch> certified_sketches(const CertifiedOwners& co, std::span<const LoadedSketch> named) {
  std::vector<LoadedSketch> out;
  for (const auto& lc : co.certificates) {
    if (!lc.sketch) continue;
    bool have = false;
    for (const auto& s : named) have = have || fs::equivalent(s.path, *lc.sketch);
    for (const auto& s : out) have = have || fs::equivalent(s.path, *lc.sketch);
    if (!have) {
      const std::string p = lc.sketch->string();
      auto loaded = load_sketches(std::span(&p, 1));
      out.push_back(std::move(loaded.front()));
    }
  }
  return out;
}

nlohmann::json certificate_precedence(const CertifiedOwners& co, const fs::path& input, std::span<const Owner> owners,
                                      const InputOptions& options, const std::vector<Verdict>& verdicts,
                                      Backend& backend, bool quiet, std::vector<PrecedenceEntry>* entries) {
  if (co.certificates.empty()) return nullptr;
  std::map<std::string, const Verdict*> by_did;
  std::vector<std::string> detected_here;
  for (const auto& v : verdicts) {
    by_did[v.did] = &v;
    if (v.detected) detected_here.push_back(v.did);
  }
  const std::vector<ModelResource> here = input.empty() ? std::vector<ModelResource>{} : model_resources(input);

  std::vector<PrecedenceInput> inputs;
  std::map<std::string, std::string> file_of;  // certificate id -> file
  for (const auto& lc : co.certificates) {
    PrecedenceInput in;
    in.certificate = &lc.check;
    const auto v = by_did.find(lc.check.certificate.owner);
    in.detected = v != by_did.end() && v->second->detected;
    in.z = v != by_did.end() ? v->second->z : 0;
    in.this_file = !here.empty() && compare_resources(lc.check.certificate.resources, here).empty();
    if (in.this_file) {
      in.certified_model_marks = detected_here;
    } else if (in.detected && !owners.empty()) {
      if (const auto model = model_beside(lc)) {
        try {
          InputOptions mo = options;
          mo.format = lc.check.certificate.model_format;
          mo.sketches.clear();
          std::vector<std::string> marks;
          for (const auto& mv : verify_input(*model, owners, mo, backend).verdicts)
            if (mv.detected) marks.push_back(mv.did);
          in.certified_model_marks = std::move(marks);
        } catch (const Error& e) {
          if (!quiet)
            std::cerr << "didmark: note: cannot check the certified model beside '" << lc.file << "': " << e.what()
                      << "\n";
        }
      }
    }
    file_of[lc.check.certificate.id] = lc.file;
    inputs.push_back(std::move(in));
  }
  const std::vector<PrecedenceEntry> ps = mark_precedence(inputs);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : ps)
    out.push_back({{"did", p.did},
                   {"time", p.time},
                   {"countersigned", p.countersigned},
                   {"time_source", p.countersigned ? "countersigned" : "self-asserted"},
                   {"authority", p.authority.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.authority)},
                   {"certificate", p.certificate},
                   {"certificate_file", file_of[p.certificate]},
                   {"z", p.z},
                   {"this_file", p.this_file},
                   {"flags", p.flags},
                   {"missing", p.missing}});
  if (entries) *entries = ps;
  return out;
}

void print_precedence(const nlohmann::json& precedence) {
  if (precedence.is_null()) return;
  if (precedence.empty()) {
    std::printf("precedence: no certified owner's mark is detected in this file\n");
    return;
  }
  std::printf("precedence (earliest first):\n");
  int k = 0;
  for (const auto& p : precedence) {
    std::string flags;
    for (const auto& f : p["flags"]) flags += (flags.empty() ? "" : ", ") + f.get<std::string>();
    const std::string by = p["authority"].is_string() ? " by " + p["authority"].get<std::string>() : "";
    std::printf("  %d. %s  %s %s%s%s%s\n", ++k, p["did"].get<std::string>().c_str(),
                p["time_source"].get<std::string>().c_str(), p["time"].get<std::string>().c_str(), by.c_str(),
                flags.empty() ? "" : ("  [" + flags + "]").c_str(), p["this_file"].get<bool>() ? "  (this file is its certified model)" : "");
  }
}

}  // namespace didmark::cli
