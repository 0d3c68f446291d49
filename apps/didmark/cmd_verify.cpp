// `didmark verify IN (--id IDFILE | --registry REG.jsonl [--did DID])`: is the mark there?
#include <iostream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "didmark/error.hpp"
#include "mark_options.hpp"
#include "render.hpp"

namespace didmark::cli {
namespace {

struct VerifyFlags {
  MarkFlags mark;
  CertificateFlags cert;
  std::string input;
};

void register_verify(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<VerifyFlags>();
  CLI::App* cmd = app.add_subcommand("verify", "Verify owners' marks in a checkpoint or dataset (blind)");
  cmd->add_option("IN", f->input, "File (or folder of a sharded checkpoint, or folder of images)")->required();
  add_owner_options(*cmd, f->mark, true, true);
  add_mark_options(*cmd, f->mark, true);
  add_verify_certificate_options(*cmd, f->cert);
  cmd->footer(
      "One verdict per owner: did, status (detected, not_detected, no_eligible_data), detected, z,\n"
      "p_value (a bound on the chance of this score without the mark), p_family (p_value corrected for\n"
      "the K owners tested, Sidak 1 - (1 - p)^K), screened, bit_errors, bits, elements, tensors\n"
      "(schema: docs/json/verify.schema.json; vocabulary: docs/json/README.md). A mark\n"
      "is detected when p_value <= --p-threshold and p_family <= --fwer (default 1e-9; with one owner\n"
      "the two are the same). With a registry of many owners a checkpoint is screened first: every\n"
      "owner is scored on a sample and only candidates take the full pass (--screen, docs/watermark.md).\n"
      "The file is read once for all owners. An image or a folder of images adds \"images\": one entry per\n"
      "image (path, z, p_value, detected, verdicts); for a folder the verdicts are one dataset test over all\n"
      "its images (docs/dataset.md).\n"
      "Exit codes: 0 the asked DID (--id or --did) is detected, or with a whole registry at least one\n"
      "registered DID is; 1 not detected; 2 error; 3 nothing in the file could carry a mark (no eligible\n"
      "tensor, no marked cell, no row): not a clean result, just nothing to test.");
  cmd->callback([&g, &action, f, cmd] {
    action = [&g, f, cmd]() -> int {
      refuse_unused_options(*cmd, f->mark, f->input);
      // Certificates add their owners, and the mark options they certify (before the options are read).
      const CertifiedOwners co = resolve_certified_owners(f->mark, f->cert, *cmd);
      InputOptions options = input_options(f->mark);
      for (auto& s : certified_sketches(co, options.sketches)) options.sketches.push_back(std::move(s));
      options.watermark.progress = element_progress(g, "verify");
      const FileVerdicts fv = verify_input(f->input, co.owners, options, g.backend());
      const nlohmann::json precedence =
          certificate_precedence(co, f->input, co.owners, options, fv.verdicts, g.backend(), g.quiet || g.json);
      if (g.json) {
        nlohmann::json out = as_json(file_verdicts_json(fv));
        if (!precedence.is_null()) out["precedence"] = precedence;
        print_json(out);
      } else {
        std::cout << file_verdicts_text(fv) << std::flush;
        print_precedence(precedence);
      }
      bool any = false, all_empty = !fv.verdicts.empty();
      for (const auto& v : fv.verdicts) {
        any = any || v.detected;
        all_empty = all_empty && v.status == VerdictStatus::no_eligible_data;
      }
      return any ? kExitOk : all_empty ? kExitNoData : kExitNotDetected;
    };
  });
}

DIDMARK_CLI_COMMAND(11, register_verify);

}  // namespace
}  // namespace didmark::cli
