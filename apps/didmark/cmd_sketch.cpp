// `didmark sketch MODEL -o SKETCH --did DID`: the alignment sketch of an already-marked model,
// and the --sketch options of embed, verify and scan (sketch_hooks.hpp).
#include <cstdio>
#include <iostream>
#include <mutex>
#include <sstream>

#include "cli.hpp"
#include "didmark/alignment.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "formats.hpp"
#include "mark_options.hpp"
#include "sketch_hooks.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;

struct State {
  Globals* globals = nullptr;
  // embed
  std::string embed_sketch;
  bool all = false;
  int samples = 0;
  int64_t array_rows = 0;
  bool force = false;
  CLI::App* embed_cmd = nullptr;
  // verify / scan (one command runs per process)
  std::vector<std::string> sketches;
  double realign_z = RealignOptions{}.target_z;
  CLI::App* verify_cmd = nullptr;
  CLI::App* scan_cmd = nullptr;
  // sketches read once, shared by scan's workers
  std::once_flag loaded_once;
  std::vector<std::pair<std::string, AlignmentSketch>> loaded;
};

State& state() {
  static State s;
  return s;
}

Backend& backend_of(Globals* g) { return g ? g->backend() : default_backend(); }

bool is_array_format(const std::string& format) { return format == "npy"; }

std::optional<CheckpointFormat> checkpoint_format(const std::string& format, const fs::path& p) {
  if (format == "safetensors") {
    const auto g = guess_checkpoint_format(p);
    return g == CheckpointFormat::safetensors_sharded ? *g : CheckpointFormat::safetensors;
  }
  if (format == "pt") return CheckpointFormat::torch;
  if (format == "npy-tensor") return CheckpointFormat::npy;
  return std::nullopt;
}

/// Row ids of an array from a command's --ids / --fixed-order (empty: row index).
std::vector<int64_t> array_ids(CLI::App* cmd, int64_t rows) {
  CLI::Option* ids_opt = cmd ? cmd->get_option_no_throw("--ids") : nullptr;
  CLI::Option* fixed = cmd ? cmd->get_option_no_throw("--fixed-order") : nullptr;
  const bool have_ids = ids_opt && ids_opt->count() > 0;
  DIDMARK_EXPECTS(have_ids || (fixed && fixed->count() > 0), invalid_argument,
                  "an array needs row identities for its sketch: --ids FILE or --fixed-order");
  if (!have_ids) return {};
  const std::string path = ids_opt->as<std::string>();
  const NpyArray a = read_npy(path);
  const TensorView v = a.view();
  DIDMARK_EXPECTS(v.numel() == rows && (v.dtype == DType::i64 || v.dtype == DType::i32), invalid_argument, "--ids '",
                  path, "' must hold ", rows, " int64 (or int32) ids");
  std::vector<int64_t> out(static_cast<std::size_t>(rows));
  for (int64_t i = 0; i < rows; ++i)
    out[static_cast<std::size_t>(i)] =
        v.dtype == DType::i64 ? static_cast<const int64_t*>(v.data)[i] : static_cast<const int32_t*>(v.data)[i];
  return out;
}

TensorView array_view(const NpyArray& a, const fs::path& p) {
  TensorView v = a.view();
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, "'", p.string(), "' holds ", v.describe(),
                  "; a dataset array must be N x D (rows x features)");
  return v;
}

/// Sketch a marked file of `format` (a checkpoint or a .npy array).
AlignmentSketch sketch_file(const fs::path& path, const std::string& format, const std::string& did,
                            const WatermarkOptions& options, CLI::App* cmd, Globals* g) {
  SketchOptions so;
  so.all = state().all;
  so.samples = state().samples;
  so.array_rows = state().array_rows;
  so.watermark = options;
  if (is_array_format(format)) {
    const NpyArray a = read_npy(path);
    const TensorView v = array_view(a, path);
    const auto ids = array_ids(cmd, v.shape[0]);
    if (!so.watermark.strength) so.watermark.strength = kDefaultArrayStrength;
    return make_array_sketch(v, ids, did, so, backend_of(g));
  }
  const auto fmt = checkpoint_format(format, path);
  DIDMARK_EXPECTS(fmt.has_value(), unsupported, "alignment sketches are for checkpoints and .npy arrays, not '", format,
                  "' files");
  return sketch_checkpoint(resolve_checkpoint_path(path, *fmt), *fmt, did, so, backend_of(g));
}

nlohmann::json sketch_json(const fs::path& path, const AlignmentSketch& sk) {
  int dims = 0;
  for (const auto& d : sk.dims) dims += !d.anchored && d.width() > 0 ? 1 : 0;
  const uint64_t bytes = sk.bytes();
  return {{"path", path.string()},
          {"kind", std::string(sketch_kind_name(sk.kind))},
          {"did", sk.did},
          {"architecture", sk.architecture},
          {"bytes", bytes},
          {"model_bytes", sk.model_bytes},
          {"fraction", sk.model_bytes ? static_cast<double>(bytes) / static_cast<double>(sk.model_bytes) : 0.0},
          {"dimensions", dims},
          {"samples", sk.samples},
          {"all", sk.all},
          {"rows", sk.kind == SketchKind::array ? sk.array.ids.size() : 0}};
}

std::string sketch_text(const nlohmann::json& j) {
  char buf[512];
  if (j["kind"] == "array")
    std::snprintf(buf, sizeof buf, "sketch %s: %zu sampled rows, %s (%.2f%% of the array)\n",
                  j["path"].get<std::string>().c_str(), j["rows"].get<std::size_t>(),
                  human_bytes(j["bytes"].get<double>()).c_str(), 100 * j["fraction"].get<double>());
  else
    std::snprintf(buf, sizeof buf, "sketch %s: %s, %d dimensions%s, signature width %d, %s (%.3f%% of the model)\n",
                  j["path"].get<std::string>().c_str(), j["architecture"].get<std::string>().c_str(),
                  j["dimensions"].get<int>(), j["all"].get<bool>() ? " (all)" : "", j["samples"].get<int>(),
                  human_bytes(j["bytes"].get<double>()).c_str(), 100 * j["fraction"].get<double>());
  return buf;
}

void check_sketch_output(const fs::path& out, bool force) {
  std::error_code ec;
  DIDMARK_EXPECTS(!fs::is_directory(out, ec), invalid_argument, "sketch output '", out.string(), "' is a folder");
  DIDMARK_EXPECTS(force || !fs::exists(out, ec), invalid_argument, "sketch output '", out.string(),
                  "' already exists (use --force to overwrite)");
}

// ---- verify / scan ------------------------------------------------------------------------

const std::vector<std::pair<std::string, AlignmentSketch>>& loaded_sketches() {
  State& s = state();
  std::call_once(s.loaded_once, [&s] {
    for (const auto& p : s.sketches) s.loaded.emplace_back(p, AlignmentSketch::read(p));
  });
  return s.loaded;
}

nlohmann::json alignment_json(const AlignmentReport& r, const std::string& sketch) {
  return {{"tensors_matched", r.tensors_matched},
          {"rows_moved", r.rows_moved},
          {"rows_dropped", r.rows_dropped},
          {"rows_held_out", r.rows_held_out},
          {"sign_flips", r.sign_flips},
          {"rescaled", r.rescaled},
          {"dims_recovered", r.dims_recovered},
          {"dims_failed", r.dims_failed},
          {"seconds", r.seconds},
          {"sketch", sketch.empty() ? nlohmann::json(nullptr) : nlohmann::json(sketch)}};
}

}  // namespace

EmbedResult embed_with_sketch(const EmbedJob& job, const std::string& format, const std::function<EmbedResult()>& embed) {
  State& s = state();
  if (s.embed_sketch.empty()) {
    DIDMARK_EXPECTS(!s.all && s.samples == 0 && s.array_rows == 0, invalid_argument,
                    "--sketch-all, --sketch-samples and --sketch-rows need --sketch SKETCH");
    return embed();
  }
  const fs::path out(s.embed_sketch);
  DIDMARK_EXPECTS(is_array_format(format) || checkpoint_format(format, job.input).has_value(), unsupported,
                  "--sketch: alignment sketches are for checkpoints and .npy arrays, not '", format, "' files");
  check_sketch_output(out, job.force);
  EmbedResult r = embed();
  const AlignmentSketch sk = sketch_file(job.output, format, job.owner.did, job.options, s.embed_cmd, job.globals);
  sk.write(out, job.force);
  const nlohmann::json j = sketch_json(out, sk);
  r.json["sketch"] = j;
  r.text += sketch_text(j);
  return r;
}

std::vector<Verdict> realign_verdicts(const VerifyJob& job, const std::string& format, std::vector<Verdict> verdicts) {
  State& s = state();
  if (s.sketches.empty()) return verdicts;
  const auto& sketches = loaded_sketches();
  std::string registry;
  for (CLI::App* c : {s.verify_cmd, s.scan_cmd})
    if (c && c->parsed())
      if (CLI::Option* o = c->get_option_no_throw("--registry"); o && o->count() > 0) registry = o->as<std::string>();
  for (const auto& [path, sk] : sketches) {
    bool known = false;
    for (const auto& o : job.owners) known = known || o.did == sk.did;
    DIDMARK_EXPECTS(known, not_found, "sketch '", path, "' is for an owner who is not ",
                    registry.empty() ? std::string("the one being verified (--id)")
                                     : "in registry '" + registry + "' (or not the --did asked for)");
  }
  const bool array = is_array_format(format);
  const auto fmt = checkpoint_format(format, job.input);
  // The suspect, read once for every owner with a sketch.
  std::optional<CheckpointReader> reader;
  std::optional<NpyArray> npy;
  std::vector<int64_t> ids;
  for (std::size_t i = 0; i < job.owners.size(); ++i) {
    const Owner& o = job.owners[i];
    Verdict& v = verdicts[i];
    v.extra["realigned"] = false;
    AlignmentReport none;
    v.extra["alignment"] = alignment_json(none, "");
    std::vector<const std::pair<std::string, AlignmentSketch>*> mine;
    for (const auto& e : sketches)
      if (e.second.did == o.did && (e.second.kind == SketchKind::array) == array) mine.push_back(&e);
    if (mine.empty() || (!array && !fmt)) continue;
    const Claim claim{o.key, o.payload};
    // Several sketches of one owner: the one the suspect fits best (most tensors realigned),
    // chosen from the sketches and the suspect alone.
    const std::pair<std::string, AlignmentSketch>* best = nullptr;
    AlignmentReport best_how;
    std::vector<VerifyReport> best_report;
    std::vector<ArrayVerifyReport> best_array;
    for (const auto* e : mine) {
      AlignmentReport how;
      try {
        if (array) {
          if (!npy) {
            npy.emplace(read_npy(job.input));
            ids = array_ids(s.verify_cmd, array_view(*npy, job.input).shape[0]);
          }
          ArrayOptions ao;
          ao.p_threshold = job.options.p_threshold;
          auto rep = verify_array_realigned(array_view(*npy, job.input), ids, e->second, std::span(&claim, 1), ao,
                                            backend_of(job.globals), &how);
          if (!best || how.tensors_matched > best_how.tensors_matched) {
            best = e, best_how = how, best_array = std::move(rep);
          }
        } else {
          if (!reader) reader.emplace(CheckpointReader::open(resolve_checkpoint_path(job.input, *fmt), *fmt));
          RealignOptions ro;
          ro.target_z = s.realign_z;
          auto rep = verify_realigned(reader->tensors(), e->second, std::span(&claim, 1), job.options,
                                      backend_of(job.globals), &how, ro);
          if (!best || how.tensors_matched > best_how.tensors_matched) {
            best = e, best_how = how, best_report = std::move(rep);
          }
        }
      } catch (const Error& err) {
        DIDMARK_THROW(err.code(), "sketch '", e->first, "': ", err.what());
      }
    }
    if (!best) continue;
    if (best_how.realigned) {
      Verdict nv;
      if (array) {
        const ArrayVerifyReport& r = best_array[0];
        nv = verdict_base(o.did, r);
        nv.elements = r.rows * r.dim;
        nv.tensors = 1;
        nv.extra = v.extra;
        nv.extra["rows"] = r.rows;
      } else {
        nv = verdict_of(o, best_report[0]);
      }
      nv.extra["format"] = v.extra.value("format", format);
      v = std::move(nv);
    }
    v.extra["realigned"] = best_how.realigned;
    v.extra["alignment"] = alignment_json(best_how, best->first);
    if (job.globals && !job.globals->json && !job.globals->quiet)
      std::fprintf(stderr, "didmark: %s for %s with sketch %s: %s, %d tensors, %lld rows moved, %lld dropped\n",
                   job.input.string().c_str(), o.did.c_str(), best->first.c_str(),
                   best_how.realigned ? "realigned" : "already aligned (ordinary test)", best_how.tensors_matched,
                   static_cast<long long>(best_how.rows_moved), static_cast<long long>(best_how.rows_dropped));
  }
  return verdicts;
}

namespace {

// ---- didmark sketch MODEL -o SKETCH --did DID ---------------------------------------------

struct SketchFlags {
  MarkFlags mark;
  std::string input, output, ids;
  bool force = false, fixed_order = false;
};

void register_sketch(CLI::App& app, Globals& g, Action& action) {
  State& s = state();
  s.globals = &g;
  auto f = std::make_shared<SketchFlags>();
  CLI::App* cmd = app.add_subcommand("sketch", "Write the alignment sketch of an already-marked model or array");
  cmd->add_option("MODEL", f->input, "Marked checkpoint (file or folder of a sharded one) or .npy array")->required();
  cmd->add_option("-o,--output", f->output, "Sketch file to write (atomically)")->required();
  cmd->add_option("--did", f->mark.did, "The DID of the owner whose mark the model carries")->required();
  add_mark_options(*cmd, f->mark);
  cmd->add_flag("--sketch-all", s.all, "Sketch every dimension (default: enough layers for z >= 10 after realignment)");
  cmd->add_option("--sketch-samples", s.samples, "Signature width (default 32, lowered to stay within 1% of the model)")
      ->check(CLI::Range(1, kMaxSketchSamples));
  cmd->add_option("--sketch-rows", s.array_rows,
                  ".npy arrays: sampled rows kept (default max(2.5 D, N/100)); a rotated subset needs D + 8 of them")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ids", f->ids, ".npy arrays: the row ids (.npy of N int64)");
  cmd->add_flag("--fixed-order", f->fixed_order, ".npy arrays: the row index is the identity");
  cmd->add_flag("-f,--force", f->force, "Replace an existing sketch");
  cmd->footer(
      "A sketch lets a verifier undo function-preserving transforms (permuted hidden size, FFN neurons\n"
      "and heads, rescaled or sign-flipped neurons, dummy neurons, transposed or renamed tensors; for\n"
      "arrays a rotation of the features) before the blind test, without the original weights and\n"
      "without the key: `didmark verify SUSPECT --id ID.json --sketch SKETCH`. Give the --scheme,\n"
      "--strength and --tensors the model was marked with. Exit codes: 0 written, 2 error.");
  cmd->callback([&g, &action, f, cmd] {
    action = [&g, f, cmd]() -> int {
      const fs::path in(f->input), out(f->output);
      std::error_code ec;
      DIDMARK_EXPECTS(fs::exists(in, ec), not_found, "'", in.string(), "' does not exist");
      check_sketch_output(out, f->force);
      const FormatHandler& h = format_for(in, f->mark.format);
      const AlignmentSketch sk = sketch_file(in, h.name, f->mark.did, watermark_options(f->mark), cmd, &g);
      sk.write(out, f->force);
      const nlohmann::json j = sketch_json(out, sk);
      if (g.json)
        print_json(j);
      else
        std::cout << sketch_text(j) << std::flush;
      return kExitOk;
    };
  });

  // --sketch on embed, verify and scan (registered before this, at orders 10-12).
  for (CLI::App* c : app.get_subcommands([](CLI::App*) { return true; })) {
    const std::string& name = c->get_name();
    if (name == "embed") {
      s.embed_cmd = c;
      c->add_option("--sketch", s.embed_sketch,
                    "Also write the alignment sketch of OUT here (checkpoints and .npy arrays; see 'didmark sketch')");
      c->add_flag("--sketch-all", s.all, "With --sketch: sketch every dimension");
      c->add_option("--sketch-samples", s.samples, "With --sketch: signature width")->check(CLI::Range(1, kMaxSketchSamples));
      c->add_option("--sketch-rows", s.array_rows, "With --sketch, .npy arrays: sampled rows kept")->check(CLI::PositiveNumber);
    } else if (name == "verify" || name == "scan") {
      (name == "verify" ? s.verify_cmd : s.scan_cmd) = c;
      c->add_option("--sketch", s.sketches,
                    "Alignment sketch of an owner's marked model (repeatable): that owner is tested after undoing "
                    "permutations, rescaling, dummies, renames (verdicts gain 'realigned' and 'alignment')")
          ->expected(1)
          ->take_all();
      c->add_option("--realign-z", s.realign_z,
                    "With --sketch: realign tensors (spread over the layers) until an intact mark would reach this "
                    "z; 0 realigns every tensor the sketch covers")
          ->check(CLI::NonNegativeNumber)
          ->capture_default_str();
    }
  }
}

DIDMARK_CLI_COMMAND(14, register_sketch);

}  // namespace
}  // namespace didmark::cli
