// `didmark synth checkpoint`: a synthetic transformer-shaped checkpoint.
#include <cstdio>

#include "cli.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark::cli {
namespace {

// ---- didmark synth checkpoint -------------------------------------------------------------

struct SynthFlags {
  std::string output;
  int64_t params = 50'000'000;
  int shards = 1;
  std::string dtype = "f32";
  int64_t hidden = 1024;
  uint64_t seed = 1;
  bool force = false;
};

void register_synth_checkpoint(CLI::App& app, Globals& g, Action& action) {
  CLI::App& synth = command_group(app, "synth", "Make synthetic inputs (checkpoints, tables, arrays)");
  auto f = std::make_shared<SynthFlags>();
  CLI::App* cmd = synth.add_subcommand(
      "checkpoint", "A synthetic transformer-shaped safetensors checkpoint (embedding, attention and MLP "
                    "matrices, biases, norms, an i64 buffer)");
  cmd->add_option("-o,--output", f->output, "Output file (a folder when --shards > 1)")->required();
  cmd->add_option("--params", f->params, "Parameters, at least (rounded up to whole layers)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--shards", f->shards, "Shards (> 1: a sharded checkpoint with an index)")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_option("--dtype", f->dtype, "Weight dtype")->check(CLI::IsMember({"f32", "f16", "bf16"}))->capture_default_str();
  cmd->add_option("--hidden", f->hidden, "Model width (halved for small --params)")->capture_default_str();
  cmd->add_option("--seed", f->seed, "Seed of the weights")->capture_default_str();
  cmd->add_flag("-f,--force", f->force, "Replace existing files");
  cmd->callback([&g, &action, f] {
    action = [&g, f]() -> int {
      SyntheticCheckpointOptions o;
      o.params = f->params;
      o.shards = f->shards;
      o.dtype = *parse_dtype(f->dtype);
      o.hidden = f->hidden;
      o.seed = f->seed;
      o.overwrite = f->force;
      const auto r = write_synthetic_checkpoint(f->output, o);
      nlohmann::json files = nlohmann::json::array();
      for (const auto& p : r.files) files.push_back(p.string());
      if (g.json) {
        // output: the file to pass on (the index of a sharded checkpoint); outputs: all files written.
        const auto& main_file = f->shards > 1 ? r.files.back() : r.files.front();
        print_json({{"output", main_file.string()}, {"outputs", files}, {"files", files}, {"params", r.params},
                    {"tensors", r.tensors}, {"bytes", r.bytes}});
      } else {
        std::printf("wrote %s: %lld parameters in %d tensors, %s\n",
                    (f->shards > 1 ? r.files.back() : r.files.front()).string().c_str(),
                    static_cast<long long>(r.params), r.tensors, human_bytes(static_cast<double>(r.bytes)).c_str());
      }
      return kExitOk;
    };
  });
}

DIDMARK_CLI_COMMAND(80, register_synth_checkpoint);

}  // namespace
}  // namespace didmark::cli
