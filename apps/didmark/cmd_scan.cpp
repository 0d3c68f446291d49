// `didmark scan PATH... --registry REG.jsonl`: many files against many registered owners,
// each file read once for all of them; JSON Lines out, one line per file.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "didmark/error.hpp"
#include "mark_options.hpp"
#include "render.hpp"

namespace didmark::cli {
namespace {

struct ScanFlags {
  MarkFlags mark;
  CertificateFlags cert;
  std::vector<std::string> paths;
  int jobs = 1;
};

nlohmann::json error_line(const std::string& path, const std::string& code, const std::string& message) {
  return {{"path", path}, {"error", {{"code", code}, {"message", message}}}};
}

void register_scan(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<ScanFlags>();
  CLI::App* cmd = app.add_subcommand("scan", "Scan files and folders for the marks of every registered owner");
  cmd->add_option("PATH", f->paths, "Files and folders (walked recursively)")->required();
  add_owner_options(*cmd, f->mark, false, true);
  add_mark_options(*cmd, f->mark, true);
  add_verify_certificate_options(*cmd, f->cert);
  cmd->add_option("-j,--jobs", f->jobs, "Files verified in parallel")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->footer(
      "Writes JSON Lines on stdout, one line per file in path order:\n"
      "  {\"path\", \"format\", \"detected\": [DIDs], \"verdicts\": [{did, status, detected, z, p_value,\n"
      "   p_family, screened, ...}], \"warnings\", \"family\", \"fwer\", \"screen\", \"seconds\"}\n"
      "  {\"path\", \"error\": {\"code\", \"message\"}} for a file that cannot be read; the scan goes on.\n"
      "  (schema: docs/json/scan.schema.json)\n"
      "Detection is family-wise per file: p_family = 1 - (1 - p)^K over the K owners <= --fwer (default\n"
      "1e-9). For a stream of uploads, set --fwer to the false-accusation budget divided by the uploads\n"
      "it must cover (docs/watermark.md#many-owners). Checkpoints are screened on a sample first when\n"
      "there are 32 owners or more (--screen); candidates take the ordinary full pass.\n"
      "Each file is read once for all owners. In folders, files of no known format and hidden files\n"
      "are skipped, and the shards of a sharded checkpoint are scanned under its index. Dataset\n"
      "arrays take their row ids from --ids or from the sidecar X.ids.npy beside X.npy.\n"
      "With --certificate (repeatable): the certified owners are tested too (after realignment to their\n"
      "certified sketches) and every file's line gains \"precedence\": who marked first, by countersigned\n"
      "time, as `didmark verify --certificate` reports it.\n"
      "Exit codes: 0 at least one mark detected, 1 none detected, 2 some file failed (or bad usage).");
  cmd->callback([&g, &action, f, cmd] {
    action = [&g, f, cmd]() -> int {
      DIDMARK_EXPECTS(!f->mark.registry.empty() || !f->cert.files.empty(), invalid_argument,
                      "scan needs --registry REG.jsonl (or --certificate CERT.json)");
      // Certificates add their owners, and the mark options they certify (before the options are read).
      const CertifiedOwners co = resolve_certified_owners(f->mark, f->cert, *cmd);
      const std::vector<Owner>& owners = co.owners;
      InputOptions options = input_options(f->mark);
      for (auto& s : certified_sketches(co, options.sketches)) options.sketches.push_back(std::move(s));
      int failed = 0, detected_files = 0;
      std::optional<Progress> progress;
      ScanOptions so;
      so.jobs = f->jobs;
      const std::size_t files = scan_inputs(f->paths, owners, options, so, g.backend(), [&](ScanItem&& it) {
        if (!progress) progress.emplace(g, "scan", static_cast<int64_t>(it.total));
        nlohmann::json line;
        if (it.verdicts) {
          line = as_json(file_verdicts_json(*it.verdicts));
          line["seconds"] = it.verdicts->seconds;
          if (!f->cert.files.empty())
            line["precedence"] = certificate_precedence(co, it.path, owners, options, it.verdicts->verdicts,
                                                        g.backend(), true);
          detected_files += line["detected"].empty() ? 0 : 1;
        } else {
          line = error_line(it.path.string(), it.error_code, it.error_message);
          ++failed;
        }
        std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n' << std::flush;
        progress->advance();
        return true;
      });
      if (progress) progress->done();
      if (!g.quiet)
        std::fprintf(stderr, "didmark scan: %zu file%s, %d with a detected mark, %d failed, %zu owner%s\n", files,
                     files == 1 ? "" : "s", detected_files, failed, owners.size(), owners.size() == 1 ? "" : "s");
      if (failed > 0) return kExitError;
      return detected_files > 0 ? kExitOk : kExitNotDetected;
    };
  });
}

DIDMARK_CLI_COMMAND(12, register_scan);

}  // namespace
}  // namespace didmark::cli
