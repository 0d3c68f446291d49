#include "mark_options.hpp"

#include <algorithm>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::cli {

void add_mark_options(CLI::App& cmd, MarkFlags& f) {
  cmd.add_option("--scheme", f.scheme, "Watermark scheme: spread-spectrum or stdm (verify with the one embedded)")
      ->check(CLI::IsMember({"spread-spectrum", "stdm"}))
      ->capture_default_str();
  cmd.add_option("--strength", f.strength,
                 "Relative change ||dw||/||w|| per tensor (default 0.005 spread spectrum, 0.001 STDM)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--max-change", f.max_change,
                 "Refuse to write when a tensor would change by more than this (relative; default "
                 "max(0.01, 2 x strength))")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--p-threshold", f.p_threshold, "A mark is detected when its p-value bound is at most this")
      ->check(CLI::Range(1e-300, 0.5))
      ->capture_default_str();
  cmd.add_option("--tensors", f.tensors,
                 "Only tensors whose name matches this ECMAScript regex (searched) take part; use the same "
                 "value to embed and verify");
  cmd.add_option("--format", f.format, "File format (default: from the file name); see 'didmark formats'");
}

void add_owner_options(CLI::App& cmd, MarkFlags& f, bool with_id, bool with_registry) {
  if (with_id) cmd.add_option("--id", f.id_file, "Identity file of the owner (from 'didmark id new')");
  if (with_registry) {
    cmd.add_option("--registry", f.registry, "Registry of owners' verification keys (JSON Lines of {did, key})");
    cmd.add_option("--did", f.did, "With --registry: only this DID");
  }
}

WatermarkOptions watermark_options(const MarkFlags& f) {
  WatermarkOptions o;
  const auto s = parse_scheme(f.scheme);
  DIDMARK_EXPECTS(s.has_value(), invalid_argument, "--scheme '", f.scheme, "' is not spread-spectrum or stdm");
  o.scheme = *s;
  if (f.strength > 0) o.set_strength(f.strength);
  if (f.max_change > 0) o.max_relative_change = f.max_change;
  o.p_threshold = f.p_threshold;
  o.policy.include_regex = f.tensors;
  return o;
}

Owner owner_from_identity(const std::string& id_file) {
  const Identity ident = load_identity(id_file);
  return Owner{ident.did(), ident.watermark_key(), did_codeword(ident.did())};
}

std::vector<Owner> resolve_owners(const MarkFlags& f) {
  DIDMARK_EXPECTS(f.id_file.empty() || f.registry.empty(), invalid_argument,
                  "give --id or --registry, not both");
  if (!f.id_file.empty()) {
    DIDMARK_EXPECTS(f.did.empty(), invalid_argument, "--did selects an entry of --registry; with --id the DID is "
                                                     "the identity's own");
    return {owner_from_identity(f.id_file)};
  }
  DIDMARK_EXPECTS(!f.registry.empty(), invalid_argument, "say whose mark: --id IDFILE or --registry REG.jsonl");
  std::vector<Owner> out;
  for (const auto& e : load_registry(f.registry))
    if (f.did.empty() || e.did == f.did) out.push_back(Owner{e.did, e.key, did_codeword(e.did)});
  DIDMARK_EXPECTS(f.did.empty() || !out.empty(), not_found, "DID '", f.did, "' is not in registry '", f.registry,
                  "'");
  DIDMARK_EXPECTS(!out.empty(), invalid_argument, "registry '", f.registry, "' has no entries");
  return out;
}

Verdict verdict_of(const Owner& o, const VerifyReport& r) {
  Verdict v = verdict_base(o.did, r);
  v.elements = r.elements;
  v.tensors = r.tensors;
  v.extra = {{"scheme", std::string(scheme_name(r.scheme))}, {"seconds", r.seconds}};
  return v;
}

nlohmann::json verified_file_json(const std::string& path, const std::string& format,
                                  const std::vector<Verdict>& verdicts) {
  nlohmann::json detected = nlohmann::json::array(), all = nlohmann::json::array();
  for (const auto& v : verdicts) {
    if (v.detected) detected.push_back(v.did);
    all.push_back(to_json(v));
  }
  return {{"path", path}, {"format", format}, {"detected", detected}, {"verdicts", all}};
}

}  // namespace didmark::cli
