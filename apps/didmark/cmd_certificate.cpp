// `didmark certificate make | countersign | verify`: mark certificates (docs/certificate.md).
#include <fstream>
#include <iostream>
#include <sstream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "common/atomic_file.hpp"
#include "didmark/certificate.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "mark_options.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& file, const char* what) { return read_text_file(file, what); }

void check_output(const std::string& out, const std::string& in, bool force) {
  std::error_code ec;
  DIDMARK_EXPECTS(!fs::exists(in, ec) || !fs::exists(out, ec) || !fs::equivalent(in, out, ec), invalid_argument,
                  "output '", out, "' is the input '", in, "': write the certificate to a new file");
  DIDMARK_EXPECTS(force || !fs::exists(out, ec), invalid_argument, "output '", out,
                  "' already exists (use --force to overwrite)");
}

// ---- make ----

struct MakeFlags {
  MarkFlags mark;
  CertificateFlags cert;
  std::string model, output, sketch;
  bool force = false;
};

int run_make(Globals& g, const MakeFlags& f) {
  DIDMARK_EXPECTS(!f.mark.id_file.empty(), invalid_argument, "certificate make needs --id IDFILE: the owner signs");
  check_output(f.output, f.model, f.force);
  if (!f.sketch.empty()) (void)read_file(f.sketch, "sketch");  // a clear error before the long part
  const Identity owner = load_identity(f.mark.id_file);
  const Certified c =
      certify(f.model, owner, input_options(f.mark), f.sketch, f.cert.timestamp, f.cert.disclose_key, g.backend());
  if (c.certificate.empty()) {
    const std::string why = detail::concat("the mark of ", owner.did(), " is not detected in '", f.model, "' (z ",
                                           c.verdict.z, ", p <= ", c.verdict.p_value,
                                           "): a certificate is only made for a mark that is there");
    if (g.json)
      print_json({{"path", f.model}, {"model", f.model}, {"did", owner.did()}, {"detected", false}, {"z", c.verdict.z},
                  {"p_value", c.verdict.p_value}, {"output", nullptr}, {"certificate", nullptr}, {"reason", why}});
    else
      std::printf("REFUSED: %s\n", why.c_str());
    return kExitNotDetected;
  }
  detail::write_file_atomically(f.output, c.certificate, f.force, 0644);
  if (g.json) {
    // path, output and marked_at are the canonical names of model, certificate and valid_from.
    print_json({{"path", f.model}, {"model", f.model}, {"did", owner.did()}, {"detected", true}, {"z", c.verdict.z},
                {"p_value", c.verdict.p_value}, {"output", f.output}, {"certificate", f.output}, {"id", c.id},
                {"marked_at", c.marked_at}, {"valid_from", c.marked_at}, {"time_source", "self-asserted"}});
  } else {
    std::printf("certified %s: mark of %s detected (z = %.2f)\nwrote %s (%s, marked at %s, self-asserted until "
                "countersigned)\n",
                f.model.c_str(), owner.did().c_str(), c.verdict.z, f.output.c_str(), c.id.c_str(),
                c.marked_at.c_str());
  }
  return kExitOk;
}

// ---- countersign ----

struct CountersignFlags {
  std::string input, authority, output, timestamp;
  bool force = false;
};

int run_countersign(Globals& g, const CountersignFlags& f) {
  check_output(f.output, f.input, f.force);
  const std::string text = read_file(f.input, "certificate");
  const Identity op = load_identity(f.authority);
  std::string out;
  try {
    out = countersign_certificate(text, op, f.timestamp);
  } catch (const Error& e) {
    DIDMARK_THROW(e.code(), "certificate '", f.input, "': ", e.what());
  }
  detail::write_file_atomically(f.output, out, f.force, 0644);
  const CertificateCheck c = verify_certificate(out);
  const std::string at = c.countersignatures.empty() ? "" : c.countersignatures.back().time;
  if (g.json)
    print_json({{"output", f.output}, {"certificate", f.output}, {"id", c.certificate.id},
                {"did", c.certificate.owner}, {"owner", c.certificate.owner},
                {"authority", op.did()}, {"time", at}, {"countersignatures", c.countersignatures.size()}});
  else
    std::printf("countersigned %s for %s\n  authority %s at %s\nwrote %s\n", c.certificate.id.c_str(),
                c.certificate.owner.c_str(), op.did().c_str(), at.c_str(), f.output.c_str());
  return kExitOk;
}

// ---- verify ----

struct VerifyCertFlags {
  std::string input, model, sketch;
  std::vector<std::string> trusted;
};

int run_verify_certificate(Globals& g, const VerifyCertFlags& f) {
  const std::string text = read_file(f.input, "certificate");
  CertificateCheck c;
  try {
    c = verify_certificate(text, f.trusted);
  } catch (const Error& e) {
    DIDMARK_THROW(e.code(), "certificate '", f.input, "': ", e.what());
  }
  const MarkCertificate& m = c.certificate;
  std::string reason = c.reason;
  nlohmann::json model_match = nullptr, sketch_match = nullptr;
  std::string model_reason, sketch_reason;
  if (!f.model.empty()) {
    model_reason = compare_resources(m.resources, model_resources(f.model));
    model_match = model_reason.empty();
    if (reason.empty() && !model_reason.empty()) reason = "model '" + f.model + "': " + model_reason;
  }
  if (!f.sketch.empty()) {
    const ModelResource s = file_resource(f.sketch, fs::path(f.sketch).filename().string());
    sketch_reason = !m.sketch ? "the certificate has no sketch"
                    : s.digest != m.sketch->digest ? "the sketch differs from the certified one (sha256)"
                                                   : "";
    sketch_match = sketch_reason.empty();
    if (reason.empty() && !sketch_reason.empty()) reason = "sketch '" + f.sketch + "': " + sketch_reason;
  }
  const bool ok = c.valid && model_match != false && sketch_match != false;

  if (g.json) {
    nlohmann::json cs = nlohmann::json::array(), resources = nlohmann::json::array();
    for (const auto& s : c.countersignatures)
      cs.push_back({{"authority", s.authority}, {"time", s.time}, {"trusted", s.trusted}});
    for (const auto& r : m.resources)
      resources.push_back({{"name", r.name}, {"algorithm", r.algorithm}, {"digest", r.digest}});
    nlohmann::json j = {{"path", f.input},
                        {"file", f.input},
                        {"valid", ok},
                        {"signatures_ok", c.valid},
                        {"reason", reason},
                        {"id", m.id},
                        {"did", m.owner},
                        {"owner", m.owner},
                        {"marked_at", m.marked_at},
                        {"time", c.time},
                        {"time_source", c.countersigned ? "countersigned" : "self-asserted"},
                        {"countersigned", c.countersigned},
                        {"authority", c.authority.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.authority)},
                        {"countersignatures", cs},
                        {"mark",
                         {{"scheme", std::string(scheme_name(m.scheme))},
                          {"carrier", m.carrier},
                          {"strength", m.strength},
                          {"tensors", m.tensors},
                          {"payload_bits", m.payload_bits},
                          {"key_digest", m.key_digest},
                          {"key_disclosed", m.verification_key.has_value()}}},
                        {"model", {{"format", m.model_format}, {"resources", resources}, {"match", model_match}}},
                        {"sketch", m.sketch ? nlohmann::json{{"name", m.sketch->name}, {"digest", m.sketch->digest},
                                                             {"match", sketch_match}}
                                            : nlohmann::json(nullptr)},
                        {"canonical", c.canonical}};
    print_json(j);
  } else if (ok) {
    std::printf("VALID: %s\n  %s marked %zu file%s (%s, %s, strength %.4g) at %s\n", f.input.c_str(), m.owner.c_str(),
                m.resources.size(), m.resources.size() == 1 ? "" : "s", m.model_format.c_str(),
                std::string(scheme_name(m.scheme)).c_str(), m.strength, m.marked_at.c_str());
    for (const auto& s : c.countersignatures)
      std::printf("  countersigned by %s at %s%s\n", s.authority.c_str(), s.time.c_str(),
                  s.trusted ? "" : " (not a trusted authority)");
    std::printf("  time: %s (%s)\n", c.time.c_str(), c.countersigned ? "countersigned" : "self-asserted");
    if (model_match == true) std::printf("  model %s matches the certified digests\n", f.model.c_str());
    if (sketch_match == true) std::printf("  sketch %s matches the certified digest\n", f.sketch.c_str());
  } else {
    std::printf("INVALID: %s\n  %s\n", f.input.c_str(), reason.c_str());
  }
  return ok ? kExitOk : kExitNotDetected;
}

void register_certificate(CLI::App& app, Globals& g, Action& action) {
  CLI::App& grp = command_group(app, "certificate",
                                "Mark certificates: sign, countersign and verify who marked which model when");
  {
    auto f = std::make_shared<MakeFlags>();
    CLI::App* c = grp.add_subcommand("make", "Certify an existing mark: verify it in MODEL, then sign a certificate of "
                                              "the model's files with the owner's identity");
    c->add_option("MODEL", f->model, "The marked model (file, or folder / index of a sharded checkpoint)")->required();
    c->add_option("-o,--output", f->output, "Write the certificate here (written atomically)")->required();
    add_owner_options(*c, f->mark, true, false);
    add_mark_options(*c, f->mark);
    c->add_option("--sketch", f->sketch, "The alignment sketch of the mark: its SHA-256 goes into the certificate");
    c->add_option("--timestamp", f->cert.timestamp,
                  "Time of marking, RFC 3339 (default: now); self-asserted until an authority countersigns");
    c->add_flag("--disclose-key", f->cert.disclose_key,
                "Put the watermark key in the certificate (anyone holding it can verify, and weaken, the mark)");
    c->add_flag("-f,--force", f->force, "Replace an existing output");
    c->footer(
        "Use the --scheme, --strength and --tensors the mark was embedded with: they are recorded for\n"
        "verifiers. Nothing secret is written (the watermark key only as a digest, unless --disclose-key).\n"
        "Exit codes: 0 written, 1 the mark is not detected in MODEL (nothing written), 2 error.");
    c->callback([&g, &action, f] { action = [&g, f] { return run_make(g, *f); }; });
  }
  {
    auto f = std::make_shared<CountersignFlags>();
    CLI::App* c = grp.add_subcommand("countersign", "As a registration authority, add a proof with your own clock to a "
                                                     "valid certificate (chained to the owner's proof)");
    c->add_option("CERT", f->input, "The certificate")->required();
    c->add_option("--authority", f->authority, "The authority's identity file (an operator did:key)")->required();
    c->add_option("-o,--output", f->output, "Write the countersigned certificate here")->required();
    c->add_option("--timestamp", f->timestamp, "The authority's time, RFC 3339 (default: this machine's clock, UTC)");
    c->add_flag("-f,--force", f->force, "Replace an existing output");
    c->footer("The certificate must verify first; the owner cannot countersign their own certificate.\n"
              "Exit codes: 0 written, 2 error.");
    c->callback([&g, &action, f] { action = [&g, f] { return run_countersign(g, *f); }; });
  }
  {
    auto f = std::make_shared<VerifyCertFlags>();
    CLI::App* c = grp.add_subcommand("verify", "Check a certificate's signatures, and that a model (and sketch) are "
                                               "the certified ones");
    c->add_option("CERT", f->input, "The certificate")->required();
    c->add_option("--model", f->model, "Check that this model's files have the certified SHA-256 digests");
    c->add_option("--sketch", f->sketch, "Check that this sketch file is the certified one");
    c->add_option("--trust-authority", f->trusted,
                  "Only this authority's countersignatures set the time (repeatable; default: all valid ones)");
    c->footer("Reports the time as 'countersigned' (an authority's clock) or 'self-asserted' (the owner's).\n"
              "Exit codes: 0 valid (and the model / sketch match), 1 invalid or not matching, 2 error.");
    c->callback([&g, &action, f] { action = [&g, f] { return run_verify_certificate(g, *f); }; });
  }
}

DIDMARK_CLI_COMMAND(62, register_certificate);

}  // namespace
}  // namespace didmark::cli
