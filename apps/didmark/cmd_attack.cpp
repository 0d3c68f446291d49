// `didmark attack IN -o OUT --attack SPEC [--attack SPEC ...]`: what a thief does to a marked
// checkpoint or embedding array, written back in the input's format.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "attack_cli.hpp"
#include "cli.hpp"
#include "didmark/attack.hpp"
#include "didmark/error.hpp"

namespace didmark::cli {

namespace fs = std::filesystem;

void add_arch_options(CLI::App& cmd, ArchFlags& f) {
  cmd.add_option("--arch", f.arch, "Architecture map as JSON (default: recognised from BERT, GPT-2 or Llama names)");
  cmd.add_option("--config", f.config,
                 "Hugging Face config.json for the head count and activation (default: config.json beside IN)");
  cmd.add_option("--heads", f.heads, "Attention heads (overrides config.json)")->check(CLI::PositiveNumber);
  cmd.add_option("--kv-heads", f.kv_heads, "Key/value heads for grouped-query attention")->check(CLI::PositiveNumber);
}

void setup_architecture(const ArchFlags& f, const fs::path& input, AttackContext& ctx) {
  fs::path config = f.config;
  if (config.empty()) {
    std::error_code ec;
    const fs::path dir = fs::is_directory(input, ec) ? input : input.parent_path();
    const fs::path guess = (dir.empty() ? fs::path(".") : dir) / "config.json";
    if (fs::exists(guess, ec)) config = guess;
  }
  if (!config.empty()) ctx.hints = architecture_hints_from_config(config);
  if (f.heads > 0) ctx.hints.heads = f.heads;
  if (f.kv_heads > 0) ctx.hints.kv_heads = f.kv_heads;
  if (!f.arch.empty()) {
    ctx.map = parse_architecture_map(read_text_file(f.arch, "architecture map"), f.arch);
  }
}

bool is_array_input(const fs::path& in, const std::string& format) {
  if (!format.empty()) return format == "npy";
  std::string ext = in.extension().string();
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".npy";
}

fs::path default_ids_out(const fs::path& out) {
  fs::path p = out;
  p.replace_extension(".ids.npy");
  return p;
}

nlohmann::json report_json(const AttackReport& r) {
  return {{"spec", r.spec},
          {"tensors_changed", r.tensors_changed},
          {"function_preserving", r.function_preserving},
          {"notes", r.notes}};
}

nlohmann::json report_json(const ArrayAttackReport& r) {
  return {{"spec", r.spec}, {"rows_in", r.rows_in}, {"rows_out", r.rows_out}, {"dim", r.dim_out}, {"notes", r.notes}};
}

namespace {

struct AttackFlags {
  std::string input, output, format, tensors, ids, ids_out;
  std::vector<std::string> attacks;
  uint64_t seed = 1;
  bool force = false, show_map = false;
  int64_t recall_queries = 500;
  ArchFlags arch;
};

int run_array(const AttackFlags& f, Globals& g) {
  std::vector<AttackSpec> specs;
  for (const auto& s : f.attacks) specs.push_back(parse_array_attack_spec(s));
  const ArrayData original = read_array_data(f.input, f.ids);
  ArrayData a = original;
  nlohmann::json reports = nlohmann::json::array();
  for (std::size_t i = 0; i < specs.size(); ++i)
    reports.push_back(report_json(apply_array_attack(a, specs[i], f.seed + i)));
  int64_t used = 0;
  const double recall = neighbour_recall(original, a, 10, f.recall_queries, f.seed, &used);
  bool subset = false;
  for (const auto& s : specs) subset = subset || s.kind == "subset";
  fs::path ids_out = f.ids_out;
  if (ids_out.empty() && (!f.ids.empty() || subset)) ids_out = default_ids_out(f.output);
  write_array_data(a, f.output, ids_out, f.force);
  if (g.json) {
    print_json({{"path", f.input},
                {"input", f.input},
                {"output", f.output},
                {"ids", ids_out.string()},
                {"format", "npy"},
                {"seed", f.seed},
                {"rows", a.rows},
                {"dim", a.dim},
                {"dtype", std::string(dtype_name(a.dtype))},
                {"attacks", reports},
                {"recall_at_10", recall},
                {"recall_queries", used}});
  } else {
    std::printf("attacked %s -> %s (%lld x %lld %s)%s%s\n", f.input.c_str(), f.output.c_str(),
                static_cast<long long>(a.rows), static_cast<long long>(a.dim), std::string(dtype_name(a.dtype)).c_str(),
                ids_out.empty() ? "" : ", ids in ", ids_out.string().c_str());
    for (const auto& r : reports) std::printf("  %s\n", r["spec"].get<std::string>().c_str());
    std::printf("neighbour preservation: recall@10 %.4f on %lld queries\n", recall, static_cast<long long>(used));
  }
  return kExitOk;
}

int run_checkpoint(const AttackFlags& f, Globals& g) {
  std::vector<AttackSpec> specs;
  for (const auto& s : f.attacks) specs.push_back(parse_attack_spec(s));
  std::optional<CheckpointFormat> fmt;
  if (f.format == "safetensors") fmt = guess_checkpoint_format(f.input).value_or(CheckpointFormat::safetensors);
  else if (f.format == "pt") fmt = CheckpointFormat::torch;
  else if (f.format == "npy-tensor") fmt = CheckpointFormat::npy;
  else DIDMARK_EXPECTS(f.format.empty(), invalid_argument, "--format '", f.format,
                       "': attacks read safetensors, pt, npy-tensor (checkpoints) or npy (arrays)");
  AttackContext ctx;
  ctx.seed = f.seed;
  ctx.tensors_regex = f.tensors;
  ctx.backend = &g.backend();
  setup_architecture(f.arch, f.input, ctx);
  const TensorSet original = load_tensor_set(f.input, fmt);
  if (f.show_map) {
    if (!ctx.map) {
      const auto named = original.named();
      ctx.map = recognise_architecture(named, ctx.hints);
    }
    std::printf("%s\n", architecture_map_json(*ctx.map).c_str());
    return kExitOk;
  }
  DIDMARK_EXPECTS(!f.output.empty(), invalid_argument, "say where the attacked copy goes: -o OUT");
  DIDMARK_EXPECTS(!specs.empty(), invalid_argument, "say which attacks: --attack SPEC (see --help)");
  TensorSet model = original;
  nlohmann::json reports = nlohmann::json::array();
  bool preserving = true;
  for (const auto& s : specs) {
    const AttackReport r = apply_attack(model, s, ctx);
    preserving = preserving && r.function_preserving;
    reports.push_back(report_json(r));
  }
  const double change = relative_weight_change(model, original);
  const SaveReport saved = save_tensor_set(model, f.output, f.force);
  nlohmann::json outputs = nlohmann::json::array();
  for (const auto& o : saved.outputs) outputs.push_back(o.string());
  if (g.json) {
    nlohmann::json j{{"path", f.input},
                     {"input", f.input},
                     {"output", f.output},
                     {"outputs", outputs},
                     {"format", std::string(checkpoint_format_name(model.format))},
                     {"sharded", model.format == CheckpointFormat::safetensors_sharded},
                     {"seed", f.seed},
                     {"attacks", reports},
                     {"function_preserving", preserving},
                     {"relative_change", change},
                     {"tensors", model.tensors.size()},
                     {"bytes", saved.bytes}};
    if (!saved.torch_layout.empty()) j["torch_layout"] = saved.torch_layout;
    if (ctx.map) j["architecture"] = ctx.map->family;
    print_json(j);
  } else {
    std::printf("attacked %s -> %s (%s, %s)\n", f.input.c_str(), f.output.c_str(),
                std::string(checkpoint_format_name(model.format)).c_str(),
                human_bytes(static_cast<double>(saved.bytes)).c_str());
    for (const auto& r : reports) {
      std::printf("  %-28s %d tensors changed%s\n", r["spec"].get<std::string>().c_str(),
                  r["tensors_changed"].get<int>(), r["function_preserving"].get<bool>() ? ", function preserved" : "");
      for (const auto& n : r["notes"]) std::printf("      %s\n", n.get<std::string>().c_str());
    }
    std::printf("relative weight change %.4g (tensors of unchanged name and shape)%s\n", change,
                saved.torch_layout == "state dict" ? "; written as a plain state dict" : "");
  }
  return kExitOk;
}

void register_attack(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<AttackFlags>();
  CLI::App* cmd = app.add_subcommand("attack", "Attack a checkpoint or embedding array as a thief would (robustness lab)");
  cmd->add_option("IN", f->input, "Checkpoint (.safetensors, sharded index or folder, .pt) or N x D .npy array")
      ->required();
  cmd->add_option("-o,--output", f->output, "Attacked copy (same format; a folder or index for sharded input)");
  cmd->add_option("--attack", f->attacks, "Attack SPEC, applied in order (repeatable)");
  cmd->add_option("--seed", f->seed, "Seed: the same seed gives the same bytes")->capture_default_str();
  cmd->add_option("--tensors", f->tensors, "Value attacks touch only tensors matching this regex (default: all floating)");
  cmd->add_option("--format", f->format, "Input format: safetensors, pt, npy-tensor, npy (array); default from the name");
  cmd->add_option("--ids", f->ids, "Arrays: the rows' ids (.npy of int64); they follow the rows into --ids-out");
  cmd->add_option("--ids-out", f->ids_out, "Arrays: where the attacked rows' ids go (default OUT.ids.npy)");
  cmd->add_option("--recall-queries", f->recall_queries, "Arrays: queries sampled for recall@10")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_arch_options(*cmd, f->arch);
  cmd->add_flag("--show-map", f->show_map, "Print the architecture map (JSON) and exit");
  cmd->add_flag("-f,--force", f->force, "Replace an existing output");
  cmd->footer(
      "Checkpoint attacks (SPEC):\n"
      "  noise:REL               Gaussian noise, REL x each tensor's RMS (0 < REL <= 10)\n"
      "  cast:f16|bf16|fp8-e4m3  round to the type; f16/bf16 stored as such, fp8 stored back in the file's dtype\n"
      "  quant:int8              per tensor, symmetric, round to nearest, dequantized\n"
      "  quant:int8-channel      per output row\n"
      "  quant:int4:gG           GPTQ/AWQ storage: groups of G inputs, scale + zero point, dequantized\n"
      "  prune:FRAC | prune:NofM magnitude pruning per tensor, or keep N of every M (2of4)\n"
      "  merge:OTHER:ALPHA       (1-ALPHA) w + ALPHA w_other (OTHER: same architecture)\n"
      "  merge-ties:OTHER:ALPHA[:DENSITY]  TIES with OTHER as base: OTHER + (1-ALPHA) trim(w - OTHER), DENSITY 0.2\n"
      "  permute:hidden|ffn|heads|all      function-preserving permutations (architecture map)\n"
      "  permute:channels                  convolution channels of a CNN (ResNet naming; all = this on CNNs)\n"
      "  rescale[:force]         MLP neurons x a / (1/a): exact for ReLU and gated (SwiGLU) MLPs only\n"
      "  rescale-attn            value/output and query/key dims x a / (1/a): exact for every model\n"
      "  rescale-channels        conv channels x +-a, folded into their batch norms: exact in eval mode\n"
      "  dummy:N                 N neurons per FFN with zero outgoing weights, shuffled in\n"
      "  rename:PREFIX           prefix every tensor name\n"
      "  truncate:LAYERS         keep the first LAYERS layers\n"
      "  remark:ID.json[:S]      a second owner's mark on top (strength S)\n"
      "Value attacks touch every floating tensor (quant and prune: matrices only, as the real tools).\n"
      "Array attacks (.npy, --ids): noise:REL, cast:f16|bf16|fp8-e4m3, quant:int8-dim, quant:binary, rotate,\n"
      "  permute-dims, pca:K, subset:FRAC; the JSON reports recall@10 against the input.\n"
      "Nothing is written when a spec is wrong or an attack fails. Exit codes: 0 written, 2 error.");
  cmd->callback([&g, &action, f] {
    action = [&g, f]() -> int {
      if (is_array_input(f->input, f->format)) {
        DIDMARK_EXPECTS(!f->output.empty(), invalid_argument, "say where the attacked copy goes: -o OUT");
        DIDMARK_EXPECTS(!f->attacks.empty(), invalid_argument, "say which attacks: --attack SPEC (see --help)");
        return run_array(*f, g);
      }
      return run_checkpoint(*f, g);
    };
  });
}

}  // namespace

DIDMARK_CLI_COMMAND(60, register_attack);

}  // namespace didmark::cli
