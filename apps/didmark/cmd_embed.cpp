// `didmark embed IN -o OUT --id IDFILE`: mark a copy of a checkpoint or dataset; and
// `didmark formats`: the file formats embed, verify and scan understand.
#include <iostream>

#include "certificate_hooks.hpp"
#include "cli.hpp"
#include "didmark/error.hpp"
#include "mark_options.hpp"
#include "render.hpp"

namespace didmark::cli {
namespace {

struct EmbedFlags {
  MarkFlags mark;
  std::string input, output, sketch;
  bool force = false, allow_weak = false;
  CertificateFlags cert;
};

void register_embed(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<EmbedFlags>();
  CLI::App* cmd = app.add_subcommand("embed", "Embed an owner's mark into a copy of a checkpoint or dataset");
  cmd->add_option("IN", f->input, "Input file (or folder of a sharded checkpoint, or folder of images)")->required();
  cmd->add_option("-o,--output", f->output, "Output file (written atomically; a folder for sharded checkpoints and folders of images)")
      ->required();
  add_owner_options(*cmd, f->mark, true, false);
  add_mark_options(*cmd, f->mark);
  cmd->add_option("--sketch", f->sketch,
                  "Also write the alignment sketch of OUT here (checkpoints and .npy arrays; see 'didmark sketch')");
  add_embed_certificate_option(*cmd, f->cert);
  cmd->add_flag("-f,--force", f->force, "Replace an existing output (never the input)");
  cmd->add_flag("--allow-weak", f->allow_weak,
                "Write a mark even when it could not be proved at --p-threshold (too few elements, cells or rows "
                "for its strength); refused by default, with what would do");
  cmd->footer(
      "The output is written to a temporary file beside it, synced and renamed into place: a crash or\n"
      "kill leaves no partial output, and the input is only read. A mark that could not be proved at\n"
      "--p-threshold (too few elements, cells or rows for its strength) is refused unless --allow-weak.\n"
      "Prints a per-tensor table (or JSON with --json, whose \"warnings\" lists what to know; schema:\n"
      "docs/json/embed.schema.json).\n"
      "Exit codes: 0 written, 2 error.");
  cmd->callback([&g, &action, f, cmd] {
    action = [&g, f, cmd]() -> int {
      refuse_unused_options(*cmd, f->mark, f->input);
      DIDMARK_EXPECTS(!f->mark.id_file.empty(), invalid_argument,
                      "embed needs --id IDFILE: the identity of the owner whose mark is embedded");
      const Identity identity = load_identity(f->mark.id_file);
      const Owner owner = owner_of(identity);
      DIDMARK_EXPECTS(!f->sketch.empty() || (!f->mark.sketch_all && f->mark.sketch_samples == 0 && f->mark.sketch_rows == 0),
                      invalid_argument, "--sketch-all, --sketch-samples and --sketch-rows need --sketch SKETCH");
      InputOptions o = input_options(f->mark);
      o.sketch_output = f->sketch;
      o.watermark.progress = element_progress(g, "embed");
      check_certificate_output(f->cert, f->input, f->output, f->force);
      const InputEmbedReport r = embed_input(f->input, f->output, owner, o, {f->force, f->allow_weak}, g.backend());
      nlohmann::json json = as_json(embed_report_json(r, owner));
      std::string text = embed_text(r, owner);
      certify_embedded(r, identity, o, f->cert, f->force, g.backend(), json, text);
      if (g.json)
        print_json(json);
      else
        std::cout << text << std::flush;
      return kExitOk;
    };
  });
}

void register_formats(CLI::App& app, Globals& g, Action& action) {
  CLI::App* cmd = app.add_subcommand("formats", "List the file formats of embed, verify and scan");
  cmd->callback([&g, &action] {
    action = [&g]() -> int {
      nlohmann::json all = nlohmann::json::array();
      for (const auto& h : input_formats()) {
        if (g.json) {
          all.push_back({{"name", h.name},
                         {"kind", std::string(input_kind_name(h.kind))},
                         {"extensions", h.extensions},
                         {"description", h.description}});
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
