// `didmark verify IN (--id IDFILE | --registry REG.jsonl [--did DID])`: is the mark there?
#include <cstdio>
#include <iostream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "didmark/error.hpp"
#include "formats.hpp"
#include "mark_options.hpp"

namespace didmark::cli {
namespace {

struct VerifyFlags {
  MarkFlags mark;
  CertificateFlags cert;
  std::string input;
};

std::string short_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.2fG", static_cast<double>(n) / 1e9);
  else if (n >= 1'000'000)
    std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(n) / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

void print_verdicts(const std::string& path, const std::string& format, const std::vector<Verdict>& vs) {
  std::printf("%s (%s): %zu owner%s checked\n", path.c_str(), format.c_str(), vs.size(), vs.size() == 1 ? "" : "s");
  for (const auto& v : vs) {
    char p[32];
    if (v.log10_p < -300)
      std::snprintf(p, sizeof p, "1e%.0f", v.log10_p);
    else
      std::snprintf(p, sizeof p, "%.3g", v.p_value);
    std::printf("%-13s %s  z = %7.2f  p <= %-9s bit errors %d/%d  %s elements in %d tensor%s\n",
                v.detected ? "DETECTED" : "not detected", v.did.c_str(), v.z, p, v.bit_errors, v.bits,
                short_count(v.elements).c_str(), v.tensors, v.tensors == 1 ? "" : "s");
  }
}

void register_verify(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<VerifyFlags>();
  CLI::App* cmd = app.add_subcommand("verify", "Verify owners' marks in a checkpoint or dataset (blind)");
  cmd->add_option("IN", f->input, "File (or folder of a sharded checkpoint)")->required();
  add_owner_options(*cmd, f->mark, true, true);
  add_mark_options(*cmd, f->mark);
  add_verify_certificate_options(*cmd, f->cert);
  cmd->footer(
      "One verdict per owner: did, detected, z, p_value (a bound on the chance of this score without\n"
      "the mark), bit_errors, bits, elements, tensors. The file is read once for all owners.\n"
      "Exit codes: 0 the asked DID (--id or --did) is detected, or with a whole registry at least one\n"
      "registered DID is; 1 not detected; 2 error.");
  cmd->callback([&g, &action, f, cmd] {
    action = [&g, f, cmd]() -> int {
      const CertifiedOwners co = resolve_certified_owners(f->mark, f->cert, *cmd);
      const auto& owners = co.owners;
      const FormatHandler& h = format_for(f->input, f->mark.format);
      DIDMARK_EXPECTS(static_cast<bool>(h.verify), unsupported, "format '", h.name, "' cannot verify");
      VerifyJob job;
      job.input = f->input;
      job.owners = owners;
      job.options = watermark_options(f->mark);
      job.globals = &g;
      const std::vector<Verdict> vs = h.verify(job);
      const nlohmann::json precedence = certificate_precedence(co, job, vs);
      if (g.json) {
        nlohmann::json out = verified_file_json(f->input, h.name, vs);
        if (!precedence.is_null()) out["precedence"] = precedence;
        print_json(out);
      } else {
        print_verdicts(f->input, h.name, vs);
        print_precedence(precedence);
      }
      bool any = false;
      for (const auto& v : vs) any = any || v.detected;
      return any ? kExitOk : kExitNotDetected;
    };
  });

  // Formats add their own options to embed and verify (registered at order 10, before this).
  CLI::App* embed = nullptr;
  for (CLI::App* c : app.get_subcommands([](CLI::App*) { return true; }))
    if (c->get_name() == "embed") embed = c;
  if (embed)
    for (const auto& h : formats())
      if (h.add_options) h.add_options(*embed, *cmd);
}

DIDMARK_CLI_COMMAND(11, register_verify);

}  // namespace
}  // namespace didmark::cli
