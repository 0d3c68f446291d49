// Checkpoint formats for `didmark embed` / `verify` / `scan` (safetensors, sharded
// safetensors, PyTorch files, single .npy weight arrays) and `didmark synth checkpoint`.
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "formats.hpp"
#include "mark_options.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;

Backend& backend_of(Globals* g) { return g ? g->backend() : default_backend(); }

std::string str(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

EmbedResult embed_result(const EmbedJob& job, const CheckpointEmbedReport& r) {
  const EmbedReport& e = r.report;
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& t : e.tensors) {
    nlohmann::json j{{"name", t.name},
                     {"dtype", std::string(dtype_name(t.dtype))},
                     {"elements", t.elements},
                     {"marked", t.used}};
    if (t.used)
      j["relative_change"] = t.relative_change;
    else
      j["skip_reason"] = t.skip_reason;
    tensors.push_back(std::move(j));
  }
  nlohmann::json withheld = nlohmann::json::array();
  for (const auto& [name, why] : r.withheld) withheld.push_back({{"name", name}, {"reason", why}});
  nlohmann::json outputs = nlohmann::json::array();
  for (const auto& o : r.outputs) outputs.push_back(o.string());
  const double mbps = e.seconds > 0 ? static_cast<double>(r.bytes_read) / e.seconds / 1e6 : 0;

  EmbedResult out;
  out.json = {{"input", job.input.string()},
              {"output", job.output.string()},
              {"outputs", outputs},
              {"format", std::string(checkpoint_format_name(r.format))},
              {"did", job.owner.did},
              {"scheme", std::string(scheme_name(e.scheme))},
              {"strength", e.strength},
              {"tensors", tensors},
              {"withheld", withheld},
              {"tensors_total", e.tensors.size() + r.withheld.size()},
              {"tensors_marked", e.tensors_marked},
              {"elements_marked", e.elements_marked},
              {"relative_change", e.relative_change},
              {"max_tensor_change", e.max_tensor_change},
              {"within_budget", e.within_budget},
              {"expected_z", e.expected_z},
              {"bytes", r.bytes_read},
              {"seconds", e.seconds},
              {"backend", e.backend}};

  std::ostringstream s;
  s << "embed " << job.input.string() << " -> " << job.output.string() << " (" << checkpoint_format_name(r.format)
    << ", " << human_bytes(static_cast<double>(r.bytes_read)) << ")\n";
  s << "owner " << job.owner.did << ", " << scheme_name(e.scheme) << " at strength " << str("%.4g", e.strength)
    << "\n\n";
  std::size_t w = 6;
  for (const auto& t : e.tensors) w = std::max(w, t.name.size());
  for (const auto& [name, why] : r.withheld) w = std::max(w, name.size());
  w = std::min<std::size_t>(w, 72);
  char line[512];
  std::snprintf(line, sizeof line, "%-*s  %-7s %12s  %s\n", static_cast<int>(w), "tensor", "dtype", "elements",
                "relative change");
  s << line;
  for (const auto& t : e.tensors) {
    const std::string what = t.used ? str("%.4f%%", 100 * t.relative_change) : "skipped: " + t.skip_reason;
    std::snprintf(line, sizeof line, "%-*s  %-7s %12lld  %s\n", static_cast<int>(w), t.name.c_str(),
                  std::string(dtype_name(t.dtype)).c_str(), static_cast<long long>(t.elements), what.c_str());
    s << line;
  }
  for (const auto& [name, why] : r.withheld) {
    std::snprintf(line, sizeof line, "%-*s  %-7s %12s  not read: %s\n", static_cast<int>(w), name.c_str(), "-", "-",
                  why.c_str());
    s << line;
  }
  s << "\ntotal: " << e.tensors_marked << " of " << e.tensors.size() + r.withheld.size() << " tensors marked, "
    << e.elements_marked << " elements, relative change " << str("%.4f%%", 100 * e.relative_change) << " (max "
    << str("%.4f%%", 100 * e.max_tensor_change) << ")";
  if (e.scheme == Scheme::spread_spectrum) s << ", expected z " << str("%.1f", e.expected_z);
  s << "\n       " << str("%.2f", e.seconds) << " s, " << str("%.0f", mbps) << " MB/s on " << e.backend << "\n";
  s << "wrote";
  for (const auto& o : r.outputs) s << " " << o.string();
  s << "\n";
  if (e.scheme == Scheme::spread_spectrum && e.expected_z < hoeffding_z_threshold(job.options.p_threshold))
    s << "warning: expected z " << str("%.1f", e.expected_z) << " is below the detection threshold "
      << str("%.2f", hoeffding_z_threshold(job.options.p_threshold))
      << ": too few elements at this strength for a claim at p <= " << str("%.0e", job.options.p_threshold) << "\n";
  out.text = s.str();
  return out;
}

std::vector<Verdict> verdicts(const VerifyJob& job, CheckpointFormat fmt) {
  std::vector<Claim> claims;
  for (const auto& o : job.owners) claims.push_back({o.key, o.payload});
  const auto reports = verify_checkpoint(job.input, fmt, claims, job.options, backend_of(job.globals));
  std::vector<Verdict> out;
  for (std::size_t i = 0; i < reports.size(); ++i) out.push_back(verdict_of(job.owners[i], reports[i]));
  return out;
}

FormatHandler handler_for(std::string name, std::vector<std::string> ext, std::string description,
                          std::function<CheckpointFormat(const fs::path&)> which) {
  FormatHandler h;
  h.name = std::move(name);
  h.extensions = std::move(ext);
  h.description = std::move(description);
  h.embed = [which](const EmbedJob& job) {
    const CheckpointFormat fmt = which(job.input);
    const auto r = embed_checkpoint(job.input, job.output, fmt, job.owner.key, job.owner.payload, job.options,
                                    {job.force}, backend_of(job.globals));
    return embed_result(job, r);
  };
  h.verify = [which](const VerifyJob& job) { return verdicts(job, which(job.input)); };
  return h;
}

CheckpointFormat safetensors_kind(const fs::path& p) {
  const auto g = guess_checkpoint_format(p);
  return g == CheckpointFormat::safetensors_sharded ? *g : CheckpointFormat::safetensors;
}

FormatHandler safetensors_handler() {
  FormatHandler h = handler_for("safetensors", {".safetensors", ".safetensors.index.json"},
                                "safetensors checkpoint, or a sharded one (*.safetensors.index.json or its folder)",
                                safetensors_kind);
  h.claims = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec) && guess_checkpoint_format(p) == CheckpointFormat::safetensors_sharded;
  };
  h.parts = [](const fs::path& p) {
    std::vector<fs::path> out;
    if (safetensors_kind(p) != CheckpointFormat::safetensors_sharded) return out;
    const auto idx = read_safetensors_index(resolve_checkpoint_path(p, CheckpointFormat::safetensors_sharded));
    for (const auto& s : idx.shards) out.push_back(idx.folder() / s);
    return out;
  };
  return h;
}

FormatHandler torch_handler() {
  return handler_for("pt", {".pt", ".pth", ".bin"},
                     torch_available() ? "PyTorch torch.save file (state dict), through LibTorch"
                                       : "PyTorch torch.save file (needs a build with -DDIDMARK_TORCH=ON)",
                     [](const fs::path&) { return CheckpointFormat::torch; });
}

FormatHandler npy_tensor_handler() {
  return handler_for("npy-tensor", {},
                     "one weight array in a .npy file, marked as a single tensor (.npy files default to the "
                     "dataset format 'npy')",
                     [](const fs::path&) { return CheckpointFormat::npy; });
}

DIDMARK_CLI_FORMAT(safetensors_handler());
DIDMARK_CLI_FORMAT(torch_handler());
DIDMARK_CLI_FORMAT(npy_tensor_handler());

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
        print_json({{"files", files}, {"params", r.params}, {"tensors", r.tensors}, {"bytes", r.bytes}});
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
