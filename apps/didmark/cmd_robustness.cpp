// `didmark robustness IN (--id ID.json | --registry REG) [--attacks GRID.json] --json -o REPORT.json`:
// a grid of attacks x strengths, each verified with the owner's key and with N wrong keys.
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "attack_cli.hpp"
#include "cli.hpp"
#include "attack/plot_path.hpp"
#include "common/atomic_file.hpp"
#include "didmark/alignment.hpp"
#include "didmark/attack.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "mark_options.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Cell {
  std::string family, label;
  std::vector<std::string> attacks;  ///< specs, with {original} / {second} filled in
  std::string command;               ///< external attack: "{in}" and "{out}" replaced
  double strength = 0;
};

struct RobustFlags {
  MarkFlags mark;
  std::string input, output, grid, sketch, fidelity, plot, original, format, ids;
  int64_t null_keys = 1000;
  int trials = 1;
  uint64_t seed = 1;
  ArchFlags arch;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

/// Run a shell command; its stdout, and the exit status.
std::pair<std::string, int> run_command(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  DIDMARK_EXPECTS(p != nullptr, io_error, "cannot run '", cmd, "'");
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int st = ::pclose(p);
  return {out, WIFEXITED(st) ? WEXITSTATUS(st) : 128};
}

/// The last number a fidelity command printed.
std::optional<double> last_number(const std::string& text) {
  std::istringstream in(text);
  std::string tok;
  std::optional<double> v;
  while (in >> tok) {
    char* end = nullptr;
    const double x = std::strtod(tok.c_str(), &end);
    if (end && *end == '\0' && end != tok.c_str() && std::isfinite(x)) v = x;
  }
  return v;
}

/// How to run one of the lab's Python modules: the source tree's script when it is there,
/// else the installed package's module.
std::string python_command(const char* script, const char* module) {
  const std::string py = std::getenv("DIDMARK_PYTHON") ? std::getenv("DIDMARK_PYTHON") : "python3";
  std::error_code ec;
  const fs::path p = attack_detail::python_script(script);
  return py + " " + (fs::exists(p, ec) ? shell_quote(p.string()) : std::string("-m ") + module);
}

// ---- grids --------------------------------------------------------------------------------

void family(std::vector<Cell>& g, const std::string& name, const std::string& tmpl, std::initializer_list<double> s) {
  for (double x : s) {
    std::ostringstream v;
    v << x;
    g.push_back({name, replace_all(tmpl, "{}", v.str()), {replace_all(tmpl, "{}", v.str())}, "", x});
  }
}

std::vector<Cell> default_checkpoint_grid(bool have_original, bool structural, bool rescale_exact, bool finetune,
                                          bool channels) {
  std::vector<Cell> g;
  g.push_back({"none", "none", {}, "", 0});
  family(g, "noise", "noise:{}", {0.05, 0.1, 0.2, 0.5, 1.0});
  g.push_back({"cast", "cast:f16", {"cast:f16"}, "", 16});
  g.push_back({"cast", "cast:bf16", {"cast:bf16"}, "", 16});
  g.push_back({"cast", "cast:fp8-e4m3", {"cast:fp8-e4m3"}, "", 8});
  g.push_back({"quant", "quant:int8", {"quant:int8"}, "", 8});
  g.push_back({"quant", "quant:int8-channel", {"quant:int8-channel"}, "", 8});
  g.push_back({"quant", "quant:int4:g128", {"quant:int4:g128"}, "", 4});
  g.push_back({"quant", "quant:int4:g32", {"quant:int4:g32"}, "", 4});
  family(g, "prune", "prune:{}", {0.1, 0.3, 0.5, 0.7, 0.9});
  g.push_back({"prune-2of4", "prune:2of4", {"prune:2of4"}, "", 0.5});
  if (have_original) {
    family(g, "merge", "merge:{original}:{}", {0.25, 0.5, 0.75});
    family(g, "merge-ties", "merge-ties:{original}:{}", {0.25, 0.5, 0.75});
  }
  g.push_back({"remark", "remark (second owner)", {"remark:{second}"}, "", 0.005});
  g.push_back({"rename", "rename:model.", {"rename:model."}, "", 0});
  if (structural) {
    for (const char* w : {"hidden", "ffn", "heads", "all"})
      g.push_back({"permute", std::string("permute:") + w, {std::string("permute:") + w}, "", 0});
    g.push_back({"rescale-attn", "rescale-attn", {"rescale-attn"}, "", 0});
    if (rescale_exact) g.push_back({"rescale", "rescale", {"rescale"}, "", 0});
    g.push_back({"dummy", "dummy:64", {"dummy:64"}, "", 64});
    g.push_back({"permute+quant", "permute:all + quant:int8", {"permute:all", "quant:int8"}, "", 0});
    g.push_back({"permute+prune", "permute:all + prune:0.5", {"permute:all", "prune:0.5"}, "", 0});
  }
  if (channels) {
    g.push_back({"permute", "permute:channels", {"permute:channels"}, "", 0});
    g.push_back({"rescale-channels", "rescale-channels", {"rescale-channels"}, "", 0});
    g.push_back({"permute+rescale", "permute:channels + rescale-channels", {"permute:channels", "rescale-channels"}, "",
                 0});
    g.push_back({"permute+quant", "permute:channels + quant:int8", {"permute:channels", "quant:int8"}, "", 0});
    g.push_back({"permute+prune", "permute:channels + prune:0.5", {"permute:channels", "prune:0.5"}, "", 0});
  }
  if (finetune) {
    // The fine-tuning attack in Python (torch + transformers), 8 x 16 random tokens a step.
    const std::string ft = python_command("finetune.py", "didmark.finetune");
    for (int steps : {25, 100})
      g.push_back({"finetune", "fine-tune " + std::to_string(steps) + " steps", {},
                   ft + " {in} -o {out} --steps " + std::to_string(steps) + " --mode full --seed {seed}",
                   static_cast<double>(steps)});
    g.push_back({"finetune-lora", "LoRA merge 100 steps", {}, ft + " {in} -o {out} --steps 100 --mode lora --seed {seed}",
                 100});
  }
  return g;
}

std::vector<Cell> default_array_grid() {
  std::vector<Cell> g;
  g.push_back({"none", "none", {}, "", 0});
  family(g, "noise", "noise:{}", {0.05, 0.1, 0.2, 0.5});
  g.push_back({"cast", "cast:f16", {"cast:f16"}, "", 16});
  g.push_back({"cast", "cast:bf16", {"cast:bf16"}, "", 16});
  g.push_back({"cast", "cast:fp8-e4m3", {"cast:fp8-e4m3"}, "", 8});
  g.push_back({"quant", "quant:int8-dim", {"quant:int8-dim"}, "", 8});
  g.push_back({"quant", "quant:binary", {"quant:binary"}, "", 1});
  family(g, "subset", "subset:{}", {0.5, 0.2, 0.1});
  family(g, "pca", "pca:{}", {128, 64, 32});
  g.push_back({"permute-dims", "permute-dims", {"permute-dims"}, "", 0});
  g.push_back({"rotate", "rotate", {"rotate"}, "", 0});
  return g;
}

/// A grid file: {"families": [{"name", "template" ("{}" = strength), "strengths": [...]}],
///               "cells": [{"family", "label"?, "attacks": [...] | "command": "...", "strength"?}]}.
std::vector<Cell> read_grid(const std::string& path) {
  json j = json::parse(read_text_file(path, "attack grid"), nullptr, false);
  auto fail = [&](const std::string& what) { DIDMARK_THROW(Errc::invalid_argument, "attack grid '", path, "': ", what); };
  if (j.is_discarded() || !j.is_object()) fail("not a JSON object");
  std::vector<Cell> g;
  if (j.contains("families")) {
    if (!j["families"].is_array()) fail("\"families\" must be an array");
    for (const auto& f : j["families"]) {
      if (!f.is_object() || !f.contains("template") || !f["template"].is_string() || !f.contains("strengths") ||
          !f["strengths"].is_array())
        fail("each family needs \"template\" (a spec with {} for the strength) and \"strengths\" (numbers)");
      const std::string name = f.value("name", f["template"].get<std::string>());
      for (const auto& s : f["strengths"]) {
        if (!s.is_number()) fail("family '" + name + "': strengths must be numbers");
        std::ostringstream v;
        v << s.get<double>();
        const std::string spec = replace_all(f["template"].get<std::string>(), "{}", v.str());
        g.push_back({name, spec, {spec}, "", s.get<double>()});
      }
    }
  }
  if (j.contains("cells")) {
    if (!j["cells"].is_array()) fail("\"cells\" must be an array");
    for (const auto& c : j["cells"]) {
      if (!c.is_object() || !c.contains("family") || !c["family"].is_string())
        fail("each cell needs a \"family\" (string)");
      Cell cell;
      cell.family = c["family"].get<std::string>();
      if (c.contains("attacks")) {
        if (!c["attacks"].is_array()) fail("cell '" + cell.family + "': \"attacks\" must be an array of specs");
        for (const auto& a : c["attacks"]) {
          if (!a.is_string()) fail("cell '" + cell.family + "': \"attacks\" must be an array of specs");
          cell.attacks.push_back(a.get<std::string>());
        }
      }
      if (c.contains("command")) {
        if (!c["command"].is_string()) fail("cell '" + cell.family + "': \"command\" must be a string");
        cell.command = c["command"].get<std::string>();
      }
      cell.strength = c.value("strength", 0.0);
      std::string label;
      for (const auto& a : cell.attacks) label += (label.empty() ? "" : " + ") + a;
      cell.label = c.value("label", label.empty() ? (cell.command.empty() ? "none" : cell.command) : label);
      g.push_back(std::move(cell));
    }
  }
  if (g.empty()) fail("no cells (give \"families\" and/or \"cells\")");
  return g;
}

// ---- running ------------------------------------------------------------------------------

struct Trial {
  uint64_t seed = 0;
  VerifyReport truth;
  std::vector<double> others_z;  ///< other registry owners
  std::vector<double> null_z;
  double relative_change = 0;
  std::optional<double> fidelity, recall;
  std::string error;
};

json null_json(const std::vector<double>& z) {
  json a = json::array();
  for (double v : z) a.push_back(std::round(v * 1e4) / 1e4);
  return a;
}

fs::path temp_dir() {
  std::string t = (fs::temp_directory_path() / "didmark-robustness-XXXXXX").string();
  DIDMARK_EXPECTS(::mkdtemp(t.data()) != nullptr, io_error, "cannot create a temporary folder");
  return t;
}

std::string file_name_for(const TensorSet& s, const fs::path& input) {
  switch (s.format) {
    case CheckpointFormat::safetensors_sharded: return "attacked";
    case CheckpointFormat::torch: return "attacked" + input.extension().string();
    case CheckpointFormat::npy: return "attacked.npy";
    default: return "attacked.safetensors";
  }
}

struct Runner {
  const RobustFlags& f;
  Globals& g;
  std::vector<Owner> owners;
  std::vector<Claim> claims;  ///< owners, then null keys
  WatermarkOptions wopt;
  fs::path tmp;
  fs::path second_id;  ///< the remark attack's second owner
  /// --sketch: every trial (owner, other owners and null keys alike) is tested after
  /// realignment to the owner's alignment sketch, as `didmark verify --sketch` does.
  std::optional<AlignmentSketch> sketch;
  int trials_realigned = 0;  ///< trials whose suspect was transformed and put back

  double fidelity_of(const fs::path& p) {
    const auto [out, rc] = run_command(replace_all(f.fidelity, "{}", shell_quote(p.string())));
    DIDMARK_EXPECTS(rc == 0, invalid_argument, "--fidelity command exited ", rc, " on '", p.string(), "'");
    const auto v = last_number(out);
    DIDMARK_EXPECTS(v.has_value(), invalid_argument, "--fidelity command printed no number for '", p.string(), "'");
    return *v;
  }

  void split_reports(const std::vector<double>& z, Trial& t) {
    for (std::size_t i = 1; i < owners.size(); ++i) t.others_z.push_back(z[i]);
    t.null_z.assign(z.begin() + static_cast<std::ptrdiff_t>(owners.size()), z.end());
  }

  Trial checkpoint_trial(const TensorSet& original, const Cell& c, uint64_t seed) {
    Trial t;
    t.seed = seed;
    TensorSet m;
    if (!c.command.empty()) {
      // The input file itself (a fine-tune needs the config.json beside it).
      fs::path in = original.source;
      if (in.empty()) {
        in = tmp / ("input-" + file_name_for(original, original.source));
        if (!fs::exists(in)) save_tensor_set(original, in, true);
      }
      const fs::path out = tmp / file_name_for(original, original.source);
      fs::remove_all(out);
      std::string cmd = replace_all(replace_all(c.command, "{in}", shell_quote(in.string())), "{out}",
                                    shell_quote(out.string()));
      cmd = replace_all(cmd, "{seed}", std::to_string(seed));
      const auto [text, rc] = run_command(cmd + " 2>&1");
      DIDMARK_EXPECTS(rc == 0, invalid_argument, "attack command of cell '", c.label, "' exited ", rc, ": ",
                      text.substr(text.size() > 400 ? text.size() - 400 : 0));
      m = load_tensor_set(out, original.format);
    } else {
      m = original;
      AttackContext ctx;
      ctx.seed = seed;
      ctx.backend = &g.backend();
      setup_architecture(f.arch, f.input, ctx);
      for (const auto& s : c.attacks) apply_attack(m, parse_attack_spec(s), ctx);
    }
    t.relative_change = relative_weight_change(m, original);
    const auto named = m.named();
    AlignmentReport how;
    const auto reports =
        sketch ? verify_realigned(named, *sketch, claims, wopt, g.backend(), &how) : verify_many(named, claims, wopt, g.backend());
    trials_realigned += how.realigned ? 1 : 0;
    t.truth = reports[0];
    std::vector<double> z;
    for (const auto& r : reports) z.push_back(r.z);
    split_reports(z, t);
    if (!f.fidelity.empty()) {
      const fs::path p = tmp / file_name_for(m, original.source);
      fs::remove_all(p);
      save_tensor_set(m, p, true);
      t.fidelity = fidelity_of(p);
    }
    return t;
  }

  Trial array_trial(const ArrayData& original, const Cell& c, uint64_t seed) {
    Trial t;
    t.seed = seed;
    DIDMARK_EXPECTS(c.command.empty(), invalid_argument, "cell '", c.label, "': commands attack checkpoints only");
    ArrayData a = original;
    for (std::size_t i = 0; i < c.attacks.size(); ++i)
      apply_array_attack(a, parse_array_attack_spec(c.attacks[i]), seed + i);
    ArrayOptions o;
    o.p_threshold = wopt.p_threshold;
    const TensorView v = TensorView::contiguous(a.x.data(), DType::f64, {a.rows, a.dim});
    AlignmentReport how;
    const auto reports = sketch ? verify_array_realigned(v, a.ids, *sketch, claims, o, g.backend(), &how)
                                : verify_array(v, a.ids, claims, o, g.backend());
    trials_realigned += how.realigned ? 1 : 0;
    t.truth.detected = reports[0].detected;
    t.truth.z = reports[0].z;
    t.truth.p_value = reports[0].p_value;
    t.truth.log10_p = reports[0].log10_p;
    t.truth.bits = reports[0].bits;
    t.truth.bit_errors = reports[0].bit_errors;
    std::vector<double> z;
    for (const auto& r : reports) z.push_back(r.z);
    split_reports(z, t);
    // Relative change on the rows both hold (by id), and neighbour preservation.
    if (a.rows == original.rows && a.ids == original.ids) {
      double num = 0, den = 0;
      for (std::size_t i = 0; i < a.x.size(); ++i) {
        num += (a.x[i] - original.x[i]) * (a.x[i] - original.x[i]);
        den += original.x[i] * original.x[i];
      }
      t.relative_change = den > 0 ? std::sqrt(num / den) : 0;
    }
    t.recall = neighbour_recall(original, a, 10, 300, f.seed, nullptr);
    if (!f.fidelity.empty()) {
      const fs::path p = tmp / "attacked.npy";
      fs::remove_all(p);
      write_array_data(a, p, tmp / "attacked.ids.npy", true);
      t.fidelity = fidelity_of(p);
    }
    return t;
  }
};

json cell_json(const Cell& c, const std::vector<Trial>& trials, double p_threshold, const std::vector<Owner>& owners) {
  json j{{"family", c.family}, {"label", c.label}, {"attacks", c.attacks}, {"strength", c.strength}};
  if (!c.command.empty()) j["command"] = c.command;
  std::string error;
  for (const auto& t : trials)
    if (!t.error.empty()) error = t.error;
  if (!error.empty()) {
    j["error"] = error;
    return j;
  }
  // The cell's verdict is its worst trial: the thief's best seed.
  const Trial* worst = &trials.front();
  std::vector<double> pos, nulls;
  double zsum = 0, change = 0, fid = 0, rec = 0;
  for (const auto& t : trials) {
    if (t.truth.z < worst->truth.z) worst = &t;
    pos.push_back(t.truth.z);
    nulls.insert(nulls.end(), t.null_z.begin(), t.null_z.end());
    zsum += t.truth.z;
    change += t.relative_change;
    if (t.fidelity) fid += *t.fidelity;
    if (t.recall) rec += *t.recall;
  }
  const double n = static_cast<double>(trials.size());
  const ErrorRates r = error_rates(nulls, pos, p_threshold);
  j["z"] = worst->truth.z;
  j["z_mean"] = zsum / n;
  j["p_value"] = worst->truth.p_value;
  j["log10_p"] = worst->truth.log10_p;
  j["detected"] = worst->truth.detected;
  j["bit_errors"] = worst->truth.bit_errors;
  j["bits"] = worst->truth.bits;
  j["relative_change"] = change / n;
  if (trials.front().fidelity) j["fidelity"] = fid / n;
  if (trials.front().recall) j["recall_at_10"] = rec / n;
  json tj = json::array();
  for (const auto& t : trials) {
    json x{{"seed", t.seed}, {"z", t.truth.z}, {"p_value", t.truth.p_value}, {"detected", t.truth.detected},
           {"relative_change", t.relative_change}};
    if (t.fidelity) x["fidelity"] = *t.fidelity;
    if (t.recall) x["recall_at_10"] = *t.recall;
    tj.push_back(x);
  }
  j["trials"] = tj;
  j["null"] = {{"count", r.null_count},      {"mean", r.null_mean},
               {"sd", r.null_sd},            {"max", r.null_max},
               {"empirical_fpr", r.empirical_fpr}, {"z", null_json(nulls)}};
  j["tpr"] = {{"fpr_1e-3", {{"bound", r.tpr_bound_1e3}, {"empirical", r.tpr_empirical_1e3}}},
              {"fpr_1e-6", {{"bound", r.tpr_bound_1e6}, {"empirical", r.tpr_empirical_1e6}}}};
  j["thresholds"] = {{"fpr_1e-3", {{"bound", r.z_bound_1e3}, {"empirical", r.z_empirical_1e3},
                                   {"extrapolated", r.extrapolated_1e3}}},
                     {"fpr_1e-6", {{"bound", r.z_bound_1e6}, {"empirical", r.z_empirical_1e6},
                                   {"extrapolated", r.extrapolated_1e6}}}};
  if (owners.size() > 1) {
    json others = json::array();
    for (std::size_t i = 1; i < owners.size(); ++i) others.push_back({{"did", owners[i].did}, {"z", worst->others_z[i - 1]}});
    j["others"] = others;
  }
  return j;
}

void print_table(const json& rep) {
  std::printf("%-34s %9s %10s %9s %8s %9s\n", "attack", "z", "p <=", "detected", "change", "null max");
  for (const auto& c : rep["cells"]) {
    if (c.contains("error")) {
      std::printf("%-34s  error: %s\n", c["label"].get<std::string>().c_str(), c["error"].get<std::string>().c_str());
      continue;
    }
    char p[32];
    const double l = c["log10_p"].get<double>();
    if (l < -300) std::snprintf(p, sizeof p, "1e%.0f", l);
    else std::snprintf(p, sizeof p, "%.2g", c["p_value"].get<double>());
    std::printf("%-34s %9.2f %10s %9s %7.3f%% %9.2f\n", c["label"].get<std::string>().substr(0, 34).c_str(),
                c["z"].get<double>(), p, c["detected"].get<bool>() ? "yes" : "no",
                100 * c["relative_change"].get<double>(), c["null"]["max"].get<double>());
  }
}

/// The plot script: $DIDMARK_PLOT, else the source tree's python/didmark/plot.py (compiled
/// in), else the installed module.
std::string plot_command(const std::string& report, const std::string& png) {
  std::string py = std::getenv("DIDMARK_PYTHON") ? std::getenv("DIDMARK_PYTHON") : "python3";
  std::string script;
  if (const char* e = std::getenv("DIDMARK_PLOT")) script = e;
  std::error_code ec;
  if (script.empty() && fs::exists(attack_detail::plot_script(), ec)) script = attack_detail::plot_script().string();
  const std::string run = script.empty() ? "-m didmark.plot" : shell_quote(script);
  return py + " " + run + " " + shell_quote(report) + " -o " + shell_quote(png) + " 2>&1";
}

int run_robustness(const RobustFlags& f, Globals& g) {
  const auto t0 = std::chrono::steady_clock::now();
  DIDMARK_EXPECTS(f.sketch.empty() || fs::exists(f.sketch), not_found, "--sketch '", f.sketch, "' does not exist");
  Runner r{f, g, {}, {}, watermark_options(f.mark), temp_dir(), {}, {}, 0};
  if (!f.sketch.empty()) r.sketch = AlignmentSketch::read(f.sketch);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{r.tmp};
  auto all = resolve_owners(f.mark);
  // The owner the report is about: --id, --did, or the registry's only entry.
  DIDMARK_EXPECTS(!f.mark.registry.empty() || all.size() == 1, internal, "one owner expected");
  DIDMARK_EXPECTS(f.mark.registry.empty() || !f.mark.did.empty() || all.size() == 1, invalid_argument,
                  "--registry holds ", all.size(), " owners: say whose robustness with --did DID");
  if (!f.mark.registry.empty() && !f.mark.did.empty()) {
    // The rest of the registry rides along: their z's are real-world wrong keys.
    const auto everyone = load_registry(f.mark.registry);
    for (const auto& e : everyone)
      if (e.did != f.mark.did) all.push_back(Owner{e.did, e.key, did_codeword(e.did)});
  }
  r.owners = all;
  for (const auto& o : r.owners) r.claims.push_back({o.key, o.payload});
  for (int64_t i = 0; i < f.null_keys; ++i) r.claims.push_back({null_key(static_cast<uint64_t>(i)), r.owners[0].payload});

  const bool array = is_array_input(f.input, f.format);
  std::vector<Cell> grid;
  TensorSet original;
  ArrayData orig_array;
  json arch = nullptr;
  if (array) {
    orig_array = read_array_data(f.input, f.ids);
    grid = f.grid.empty() ? default_array_grid() : read_grid(f.grid);
  } else {
    std::optional<CheckpointFormat> fmt;
    if (f.format == "pt") fmt = CheckpointFormat::torch;
    original = load_tensor_set(f.input, fmt);
    bool structural = false, rescale = false;
    AttackContext ctx;
    setup_architecture(f.arch, f.input, ctx);
    try {
      const auto named = original.named();
      const ArchitectureMap m = ctx.map ? *ctx.map : recognise_architecture(named, ctx.hints);
      structural = true;
      rescale = !m.layers.empty() && (m.layers[0].ffn.activation == Activation::relu ||
                                      m.layers[0].ffn.activation == Activation::gated);
      arch = {{"family", m.family}, {"hidden", m.hidden}, {"layers", m.layers.size()},
              {"heads", m.layers.empty() ? 0 : m.layers[0].attention.heads}};
    } catch (const Error& e) {
      arch = {{"error", e.what()}};
    }
    const auto named_all = original.named();
    const bool channels = !convolution_channels(named_all).empty();
    if (channels) arch = {{"family", "resnet"}, {"channel_dims", convolution_channels(named_all).size()}};
    // Fine-tuning cells when torch and transformers import and the model has its config.json.
    std::error_code ec;
    const fs::path dir = fs::is_directory(f.input, ec) ? fs::path(f.input) : fs::path(f.input).parent_path();
    const bool torch_ok = original.format == CheckpointFormat::safetensors &&
                          fs::exists((dir.empty() ? fs::path(".") : dir) / "config.json", ec) &&
                          run_command("python3 -c 'import torch, transformers' >/dev/null 2>&1; echo $?").first == "0\n";
    grid = f.grid.empty() ? default_checkpoint_grid(!f.original.empty(), structural, rescale, torch_ok, channels)
                          : read_grid(f.grid);
  }
  // Placeholders: the merge partner and a second owner for remark attacks.
  bool needs_second = false;
  for (auto& c : grid)
    for (auto& a : c.attacks) {
      if (a.find("{original}") != std::string::npos) {
        DIDMARK_EXPECTS(!f.original.empty(), invalid_argument, "attack '", a,
                        "' needs --original (the unmarked model to merge with)");
        a = replace_all(a, "{original}", f.original);
      }
      needs_second = needs_second || a.find("{second}") != std::string::npos;
    }
  for (auto& c : grid) c.label = replace_all(c.label, "{original}", "ORIGINAL");
  if (needs_second) {
    std::array<uint8_t, 32> seed{};
    seed[0] = 0x5e;  // a fixed second owner: the same in every report
    r.second_id = r.tmp / "second.id.json";
    save_identity(Identity::from_seed(seed), r.second_id, true);
    for (auto& c : grid) {
      for (auto& a : c.attacks) a = replace_all(a, "{second}", r.second_id.string());
      c.label = replace_all(c.label, "{second}", "SECOND");
    }
  }
  // Check every spec before the long run.
  for (const auto& c : grid)
    for (const auto& a : c.attacks) array ? (void)parse_array_attack_spec(a) : (void)parse_attack_spec(a);

  json cells = json::array();
  Progress progress(g, "robustness", static_cast<int64_t>(grid.size()));
  for (const auto& c : grid) {
    std::vector<Trial> trials;
    for (int k = 0; k < f.trials; ++k) {
      const uint64_t seed = f.seed + static_cast<uint64_t>(k);
      try {
        trials.push_back(array ? r.array_trial(orig_array, c, seed) : r.checkpoint_trial(original, c, seed));
      } catch (const Error& e) {
        if (e.code() == Errc::unsupported && !f.sketch.empty()) throw;
        Trial t;
        t.error = e.what();
        trials.push_back(t);
      }
    }
    cells.push_back(cell_json(c, trials, r.wopt.p_threshold, r.owners));
    progress.advance();
  }
  progress.done();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json rep{{"path", f.input},
           {"input", f.input},
           {"kind", array ? "array" : "checkpoint"},
           {"format", array ? "npy" : std::string(checkpoint_format_name(original.format))},
           {"sharded", !array && original.format == CheckpointFormat::safetensors_sharded},
           {"did", r.owners[0].did},
           {"owner", r.owners[0].did},
           {"scheme", std::string(scheme_name(r.wopt.scheme))},
           {"p_threshold", r.wopt.p_threshold},
           {"z_threshold", hoeffding_z_threshold(r.wopt.p_threshold)},
           {"null_keys", f.null_keys},
           {"null_key_derivation",
            "HKDF-SHA256(secret = \"didmark/robustness/null-seed/v1.\", info = \"didmark/robustness/null-key/v1/\" + i), "
            "payload = the owner's codeword"},
           {"trials", f.trials},
           {"seed", f.seed},
           {"realigned", r.sketch.has_value()},
           {"sketch", f.sketch.empty() ? json(nullptr) : json(f.sketch)},
           {"trials_realigned", r.trials_realigned},
           {"cells", cells},
           {"seconds", secs},
           {"backend", g.backend().description()}};
  if (!arch.is_null()) rep["architecture"] = arch;
  if (array) {
    rep["rows"] = orig_array.rows;
    rep["dim"] = orig_array.dim;
  } else {
    rep["bytes"] = original.bytes();
    rep["tensors"] = original.tensors.size();
  }
  if (!f.output.empty()) detail::write_file_atomically(f.output, rep.dump(1) + "\n", true);
  if (!f.plot.empty()) {
    DIDMARK_EXPECTS(!f.output.empty(), invalid_argument, "--plot draws from the report: give -o REPORT.json too");
    const auto [text, rc] = run_command(plot_command(f.output, f.plot));
    DIDMARK_EXPECTS(rc == 0, unsupported, "--plot: the plot script failed (it needs python3 with numpy and "
                                          "matplotlib): ", text.substr(text.size() > 600 ? text.size() - 600 : 0));
  }
  if (g.json)
    print_json(rep);
  else
    print_table(rep);
  return kExitOk;
}

void register_robustness(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<RobustFlags>();
  CLI::App* cmd = app.add_subcommand("robustness", "Run a grid of attacks on a marked file and verify each (robustness lab)");
  cmd->add_option("IN", f->input, "Marked checkpoint or N x D .npy array")->required();
  add_owner_options(*cmd, f->mark, true, true);
  cmd->add_option("--scheme", f->mark.scheme, "The scheme the mark was embedded with")
      ->check(CLI::IsMember({"spread-spectrum", "stdm"}))
      ->capture_default_str();
  cmd->add_option("--p-threshold", f->mark.p_threshold, "Detected when the p-value bound is at most this")
      ->capture_default_str();
  cmd->add_option("--tensors", f->mark.tensors, "Verify only tensors matching this regex (as embedded)");
  cmd->add_option("--attacks", f->grid, "Grid file (JSON: families x strengths and/or cells; default: built in)");
  cmd->add_option("--original", f->original, "The unmarked model: merge partner of the merge cells");
  cmd->add_option("--null-keys", f->null_keys, "Wrong keys tested on every attacked file")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000}));
  cmd->add_option("--trials", f->trials, "Attack seeds per cell (TPR is over trials)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--seed", f->seed, "First attack seed")->capture_default_str();
  cmd->add_option("--fidelity", f->fidelity, "Command run on each attacked file ({} = its path); records the last number it prints");
  cmd->add_option("--sketch", f->sketch, "The owner's alignment sketch: every trial is verified after realignment to it (as verify --sketch), so "
                 "structural attacks (permutations, rescaling, dummies) are measured against the real defence");
  cmd->add_option("--format", f->format, "Input format: safetensors, pt, npy (array); default from the name");
  cmd->add_option("--ids", f->ids, "Arrays: the rows' ids (.npy of int64)");
  cmd->add_option("-o,--output", f->output, "Write the report (JSON) here");
  cmd->add_option("--plot", f->plot, "Also draw REPORT.png (python3 with numpy and matplotlib)");
  add_arch_options(*cmd, f->arch);
  cmd->footer(
      "Per cell: z, p_value, detected, relative_change, and the null side: the same attacked file tested with\n"
      "--null-keys wrong keys (HKDF of a fixed public seed, the same in every run), giving the empirical\n"
      "false-positive rate and the TPR at FPR 1e-3 and 1e-6 (Hoeffding bound and empirical thresholds).\n"
      "Default grid: noise, casts, int8/int4, pruning, merges (with --original), a second mark, renames,\n"
      "and when the architecture is recognised permutations, rescaling, dummy neurons and combinations;\n"
      "fine-tuning when python3 can import torch. Schema: docs/json/robustness.schema.json.\n"
      "Exit codes: 0 report written, 2 error.");
  cmd->callback([&g, &action, f] { action = [&g, f] { return run_robustness(*f, g); }; });
}

DIDMARK_CLI_COMMAND(61, register_robustness);

}  // namespace
}  // namespace didmark::cli
