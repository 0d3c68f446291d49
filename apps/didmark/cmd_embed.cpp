// `didmark embed IN -o OUT --id IDFILE`: mark a copy of a checkpoint or dataset; and
// `didmark formats`: the file formats embed, verify and scan understand.
#include <iostream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "didmark/error.hpp"
#include "formats.hpp"
#include "mark_options.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;

struct EmbedFlags {
  MarkFlags mark;
  CertificateFlags cert;
  std::string input, output;
  bool force = false;
};

// Checks every format shares: never the input, never an existing file without --force.
// (A folder output is for sharded checkpoints: its handler checks the files inside.)
void check_output(const fs::path& in, const fs::path& out, bool force) {
  std::error_code ec;
  DIDMARK_EXPECTS(fs::exists(in, ec), not_found, "'", in.string(), "' does not exist");
  if (!fs::exists(out, ec)) return;
  DIDMARK_EXPECTS(!fs::equivalent(in, out, ec), invalid_argument, "output '", out.string(), "' is the input '",
                  in.string(), "': write the marked copy to a new file");
  DIDMARK_EXPECTS(force || fs::is_directory(out, ec), invalid_argument, "output '", out.string(),
                  "' already exists (use --force to overwrite)");
}

void register_embed(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<EmbedFlags>();
  CLI::App* cmd = app.add_subcommand("embed", "Embed an owner's mark into a copy of a checkpoint or dataset");
  cmd->add_option("IN", f->input, "Input file (or folder of a sharded checkpoint)")->required();
  cmd->add_option("-o,--output", f->output, "Output file (written atomically; a folder for sharded checkpoints)")
      ->required();
  add_owner_options(*cmd, f->mark, true, false);
  add_mark_options(*cmd, f->mark);
  cmd->add_flag("-f,--force", f->force, "Replace an existing output (never the input)");
  add_embed_certificate_option(*cmd, f->cert);
  cmd->footer(
      "The output is written to a temporary file beside it, synced and renamed into place: a crash or\n"
      "kill leaves no partial output, and the input is only read. Prints a per-tensor table (or JSON\n"
      "with --json). Exit codes: 0 written, 2 error.");
  cmd->callback([&g, &action, f, cmd] {
    action = [&g, f, cmd]() -> int {
      DIDMARK_EXPECTS(!f->mark.id_file.empty(), invalid_argument,
                      "embed needs --id IDFILE: the identity of the owner whose mark is embedded");
      const fs::path in(f->input), out(f->output);
      check_output(in, out, f->force);
      const FormatHandler& h = format_for(in, f->mark.format);
      DIDMARK_EXPECTS(static_cast<bool>(h.embed), unsupported, "format '", h.name, "' cannot embed");
      EmbedJob job;
      job.input = in;
      job.output = out;
      job.owner = owner_from_identity(f->mark.id_file);
      job.options = watermark_options(f->mark);
      job.force = f->force;
      job.globals = &g;
      const EmbedResult r = embed_with_certificate(h, job, f->cert, *cmd);
      if (g.json)
        print_json(r.json);
      else
        std::cout << r.text << std::flush;
      return kExitOk;
    };
  });
}

void register_formats(CLI::App& app, Globals& g, Action& action) {
  CLI::App* cmd = app.add_subcommand("formats", "List the file formats of embed, verify and scan");
  cmd->callback([&g, &action] {
    action = [&g]() -> int {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& h : formats()) {
        if (g.json) {
          all.push_back({{"name", h.name}, {"extensions", h.extensions}, {"description", h.description}});
        } else {
          std::string ext;
          for (const auto& e : h.extensions) ext += (ext.empty() ? "" : " ") + e;
          std::printf("%-12s %-34s %s\n", h.name.c_str(), ext.empty() ? "(--format only)" : ext.c_str(),
                      h.description.c_str());
        }
      }
      if (g.json) print_json(all);
      return kExitOk;
    };
  });
}

DIDMARK_CLI_COMMAND(10, register_embed);
DIDMARK_CLI_COMMAND(13, register_formats);

}  // namespace
}  // namespace didmark::cli
