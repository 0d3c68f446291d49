#include "mark_options.hpp"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::cli {

void add_mark_options(CLI::App& cmd, MarkFlags& f, bool verifying) {
  f.verifying = verifying;
  if (verifying)
    cmd.add_option("--scheme", f.scheme,
                   "Scheme to test: auto (default: both in one pass, the report names the one that matched; its "
                   "p-value is doubled for the two tests), spread-spectrum or stdm")
        ->check(CLI::IsMember({"auto", "spread-spectrum", "stdm"}));
  else
    cmd.add_option("--scheme", f.scheme, "Watermark scheme: spread-spectrum (default) or stdm")
        ->check(CLI::IsMember({"spread-spectrum", "stdm"}));
  cmd.add_option("--strength", f.strength,
                 "Relative change ||dw||/||w|| per tensor (default 0.005 spread spectrum, 0.001 STDM); for images, "
                 "the luminance amplitude in 8-bit levels (default 3)")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--max-change", f.max_change,
                 "Refuse to write when a tensor would change by more than this (relative; default "
                 "max(0.01, 2 x strength))")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--p-threshold", f.p_threshold, "A mark is detected when its p-value bound is at most this")
      ->check(CLI::Range(1e-300, 0.5))
      ->capture_default_str();
  cmd.add_option("--tensors", f.tensors,
                 "Only tensors whose name matches this RE2 regular expression (searched) take part; use the same "
                 "value to embed and verify");
  cmd.add_option("--format", f.format, "File format (default: from the file's content and name); see 'didmark formats'");
  cmd.add_option("--key-column", f.key_column,
                 "CSV: column(s) whose text identifies a row, comma-separated (default: a column named id, key, "
                 "uuid, pk or *_id, else the first)");
  cmd.add_option("--columns", f.columns,
                 "CSV: columns that may carry the mark, comma-separated (default: every numeric non-key column)");
  cmd.add_option("--delimiter", f.delimiter,
                 "CSV: field separator: auto (default: detected from the header line), ',', ';', tab or '|'")
      ->check(CLI::IsMember({"auto", ",", ";", "tab", "\t", "|"}))
      ->capture_default_str();
  cmd.add_option("--gamma", f.gamma, "CSV: about 1 row in GAMMA carries a mark")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 30));
  cmd.add_option("--bits", f.bits, "CSV: the mark sits in one of the BITS lowest bits of a number's last digits")
      ->capture_default_str()
      ->check(CLI::Range(1u, kMaxTableBits));
  cmd.add_option("--ids", f.ids,
                 ".npy arrays: a .npy of N integer row identities (keeps subsets and shuffles verifiable; default: "
                 "the sidecar X.ids.npy beside X.npy)");
  cmd.add_flag("--fixed-order", f.fixed_order,
               ".npy arrays: use the row index as the identity (only when rows are never reordered or dropped)");
  if (verifying) {
    cmd.add_option("--sketch", f.sketches,
                   "Alignment sketch of an owner's marked model (repeatable): that owner is tested after undoing "
                   "permutations, rescaling, dummies, renames (verdicts gain 'realigned' and 'alignment')")
        ->expected(1)
        ->take_all();
    cmd.add_option("--fwer", f.fwer,
                   "Family-wise error level: a mark is detected only when its p_family (Sidak over the owners "
                   "tested for this file, 1 - (1 - p)^K) is at most this, on top of --p-threshold; 'off' decides "
                   "on each owner's own p-value alone")
        ->capture_default_str();
    cmd.add_option("--screen", f.screen,
                   "Checkpoints with many owners: score every owner on a key-independent sample first and run the "
                   "full pass only for candidates (auto: from 32 owners; on; off: every owner takes the full pass)")
        ->check(CLI::IsMember({"auto", "on", "off"}))
        ->capture_default_str();
    cmd.add_option("--screen-z", f.screen_z,
                   "Size the screen's sample so that an intact mark at the strength reaches this z on it "
                   "((Z / strength)^2 elements; larger finds weaker marks, costs more)")
        ->check(CLI::Range(1.0, 1e4))
        ->capture_default_str();
    cmd.add_option("--screen-seed", f.screen_seed,
                   "Seed of the screen's sampled blocks (default 0: fresh each run, so uploaders cannot aim at "
                   "them; set to reproduce a screen)");
    cmd.add_option("--realign-z", f.realign_z,
                   "With --sketch: realign tensors (spread over the layers) until an intact mark would reach this "
                   "z; 0 realigns every tensor the sketch covers")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
  } else {
    add_sketch_size_options(cmd, f);
  }
}

void add_sketch_size_options(CLI::App& cmd, MarkFlags& f) {
  cmd.add_flag("--sketch-all", f.sketch_all,
               "Sketch every dimension (default: enough layers for z >= 10 after realignment)");
  cmd.add_option("--sketch-samples", f.sketch_samples,
                 "Sketch signature width (default 32, lowered to stay within 1% of the model)")
      ->check(CLI::Range(1, kMaxSketchSamples));
  cmd.add_option("--sketch-rows", f.sketch_rows,
                 ".npy arrays: sampled rows the sketch keeps (default max(2.5 D, N/100)); a rotated subset needs D + "
                 "8 of them")
      ->check(CLI::PositiveNumber);
}

namespace {
std::vector<std::string> split_names(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t end = std::min(s.find(',', start), s.size());
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}
std::optional<double> parse_fwer(const std::string& s) {
  if (s == "off" || s == "none") return std::nullopt;
  double v = 0;
  std::size_t used = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  DIDMARK_EXPECTS(used == s.size() && v > 0 && v < 1, invalid_argument, "--fwer '", s,
                  "' is not a level in (0, 1) or 'off'");
  return v;
}
}  // namespace

InputOptions input_options(const MarkFlags& f) {
  InputOptions o;
  o.format = f.format;
  o.watermark = watermark_options(f);
  o.table.key_columns = split_names(f.key_column);
  o.table.columns = split_names(f.columns);
  o.table.gamma = f.gamma;
  o.table.bits = f.bits;
  o.table.p_threshold = f.p_threshold;
  o.array.p_threshold = f.p_threshold;
  o.ids = f.ids;
  o.fixed_order = f.fixed_order;
  o.csv.delimiter = f.delimiter == "auto" ? '\0' : (f.delimiter == "tab" || f.delimiter == "\t") ? '\t' : f.delimiter[0];
  o.realign.target_z = f.realign_z;
  o.sketch.all = f.sketch_all;
  o.sketch.samples = f.sketch_samples;
  o.sketch.array_rows = f.sketch_rows;
  if (f.verifying) {
    o.sketches = load_sketches(f.sketches);
    o.fwer = parse_fwer(f.fwer);
    o.screen.mode = parse_screen_mode(f.screen).value_or(ScreenMode::automatic);
    o.screen.z_target = f.screen_z;
    o.screen.seed = f.screen_seed;
  }
  return o;
}

void add_owner_options(CLI::App& cmd, MarkFlags& f, bool with_id, bool with_registry) {
  if (with_id) cmd.add_option("--id", f.id_file, "Identity file of the owner (from 'didmark id new')");
  if (with_registry) {
    cmd.add_option("--registry", f.registry, "Registry of owners' verification keys (JSON Lines of {did, key})");
    cmd.add_option("--did", f.did, "With --registry: only this DID");
  }
}

WatermarkOptions watermark_options(const MarkFlags& f) {
  WatermarkOptions o;
  const std::string name = !f.scheme.empty() ? f.scheme : f.verifying ? "auto" : "spread-spectrum";
  const auto s = parse_scheme(name);
  DIDMARK_EXPECTS(s.has_value(), invalid_argument, "--scheme '", name, "' is not auto, spread-spectrum or stdm");
  o.scheme = *s;
  if (f.strength > 0) o.set_strength(f.strength);
  if (f.max_change > 0) o.max_relative_change = f.max_change;
  o.p_threshold = f.p_threshold;
  o.policy.include_regex = f.tensors;
  return o;
}

void refuse_unused_options(const CLI::App& cmd, const MarkFlags& f, const std::string& input) {
  auto given = [&](const char* flag) {
    const CLI::Option* o = cmd.get_option_no_throw(flag);
    return o != nullptr && o->count() > 0;
  };
  if (f.verifying) {
    DIDMARK_EXPECTS(!given("--max-change"), invalid_argument,
                    "--max-change limits what embed may change; verify changes nothing (drop it)");
    DIDMARK_EXPECTS(!given("--strength") || f.scheme != "spread-spectrum", invalid_argument,
                    "--strength: spread-spectrum verification does not use it (only STDM's lattice does; "
                    "drop it, or test --scheme stdm or auto)");
  }
  std::error_code ec;
  if (!std::filesystem::exists(input, ec)) return;  // the library names the missing file
  const InputFormat fmt = classify_input(input, f.format);
  const std::string what = fmt.kind == InputKind::table   ? "a CSV table"
                           : fmt.kind == InputKind::array ? "a dataset array"
                           : fmt.kind == InputKind::image ? "an image or a folder of images"
                                                          : "a checkpoint";
  const std::string name = "'" + input + "' is " + what;
  if (fmt.kind != InputKind::array)
    for (const char* flag : {"--ids", "--fixed-order", "--sketch-rows"})
      DIDMARK_EXPECTS(!given(flag), invalid_argument, flag, " applies to .npy dataset arrays; ", name,
                      fmt.kind == InputKind::table ? " (its rows are identified by --key-column)" : "");
  if (fmt.kind != InputKind::table)
    for (const char* flag : {"--key-column", "--columns", "--gamma", "--bits"})
      DIDMARK_EXPECTS(!given(flag), invalid_argument, flag, " applies to CSV tables; ", name);
  if (fmt.kind != InputKind::table && given("--delimiter"))
    DIDMARK_THROW(Errc::invalid_argument, "--delimiter applies to CSV tables; ", name);
  if (fmt.kind != InputKind::checkpoint)
    for (const char* flag : {"--tensors", "--max-change"})
      DIDMARK_EXPECTS(!given(flag), invalid_argument, flag, " applies to checkpoints; ", name);
  if (fmt.kind == InputKind::image)
    for (const char* flag : {"--scheme"})
      DIDMARK_EXPECTS(!given(flag), invalid_argument, flag, " applies to checkpoints and arrays; ", name,
                      ", marked by its own image scheme (--strength in 8-bit levels)");
  if (fmt.kind == InputKind::table)
    for (const char* flag : {"--scheme"})
      DIDMARK_EXPECTS(!given(flag), invalid_argument, flag, " applies to checkpoints and arrays; ", name,
                      ", marked by --gamma and --bits");
}

Owner owner_from_identity(const std::string& id_file) { return owner_of(load_identity(id_file)); }

std::vector<Owner> resolve_owners(const MarkFlags& f) {
  DIDMARK_EXPECTS(f.id_file.empty() || f.registry.empty(), invalid_argument,
                  "give --id or --registry, not both");
  if (!f.id_file.empty()) {
    DIDMARK_EXPECTS(f.did.empty(), invalid_argument, "--did selects an entry of --registry; with --id the DID is "
                                                     "the identity's own");
    return {owner_from_identity(f.id_file)};
  }
  DIDMARK_EXPECTS(!f.registry.empty(), invalid_argument, "say whose mark: --id IDFILE or --registry REG.jsonl");
  return owners_of(load_registry(f.registry), f.did, "registry '" + f.registry + "'");
}

}  // namespace didmark::cli
