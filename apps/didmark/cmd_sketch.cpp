// `didmark sketch MODEL -o SKETCH --did DID`: the alignment sketch of an already-marked model
// or array (embed writes one with --sketch; verify and scan read them with --sketch).
#include <iostream>

#include "cli.hpp"
#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "mark_options.hpp"
#include "render.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;

// ---- didmark sketch MODEL -o SKETCH --did DID ---------------------------------------------

struct SketchFlags {
  MarkFlags mark;
  std::string input, output;
  bool force = false;
};

void register_sketch(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<SketchFlags>();
  CLI::App* cmd = app.add_subcommand("sketch", "Write the alignment sketch of an already-marked model or array");
  cmd->add_option("MODEL", f->input, "Marked checkpoint (file or folder of a sharded one) or .npy array")->required();
  cmd->add_option("-o,--output", f->output, "Sketch file to write (atomically)")->required();
  cmd->add_option("--did", f->mark.did, "The DID of the owner whose mark the model carries")->required();
  add_mark_options(*cmd, f->mark);  // also --ids / --fixed-order and the --sketch-* sizes
  cmd->add_flag("-f,--force", f->force, "Replace an existing sketch");
  cmd->footer(
      "A sketch lets a verifier undo function-preserving transforms (permuted hidden size, FFN neurons\n"
      "and heads, rescaled or sign-flipped neurons, dummy neurons, transposed or renamed tensors; for\n"
      "arrays a rotation of the features) before the blind test, without the original weights and\n"
      "without the key: `didmark verify SUSPECT --id ID.json --sketch SKETCH`. Give the --scheme,\n"
      "--strength and --tensors the model was marked with. Exit codes: 0 written, 2 error.");
  cmd->callback([&g, &action, f] {
    action = [&g, f]() -> int {
      const fs::path in(f->input), out(f->output);
      std::error_code ec;
      DIDMARK_EXPECTS(!fs::is_directory(out, ec), invalid_argument, "sketch output '", out.string(), "' is a folder");
      DIDMARK_EXPECTS(f->force || !fs::exists(out, ec), invalid_argument, "sketch output '", out.string(),
                      "' already exists (use --force to overwrite)");
      const AlignmentSketch sk = sketch_input(in, f->mark.did, input_options(f->mark), g.backend());
      sk.write(out, f->force);
      const nlohmann::json j = as_json(sketch_json(out, sk));
      if (g.json)
        print_json(j);
      else
        std::cout << sketch_text(j) << std::flush;
      return kExitOk;
    };
  });
}

DIDMARK_CLI_COMMAND(14, register_sketch);

}  // namespace
}  // namespace didmark::cli
