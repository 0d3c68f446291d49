#pragma once
// File formats behind `didmark embed`, `didmark verify` and `didmark scan`.
//
// The commands themselves (cmd_embed.cpp, cmd_verify.cpp, cmd_scan.cpp) parse the options
// every format shares (--id, --registry, --did, --strength, --scheme, --force, --json, ...),
// resolve the owners, pick a handler by --format or by the file's extension, and print.
// Each area registers the formats it understands with DIDMARK_CLI_FORMAT from its own
// cmd_<area>.cpp, so checkpoints and datasets never edit each other's files.

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cli.hpp"
#include "didmark/watermark.hpp"

namespace didmark::cli {

/// One owner whose mark is embedded or looked for.
struct Owner {
  std::string did;
  WatermarkKey key;
  Payload payload;  ///< did_codeword(did)
};

struct EmbedJob {
  std::filesystem::path input;
  std::filesystem::path output;
  Owner owner;
  WatermarkOptions options;  ///< strength, scheme, --tensors regex (policy.include_regex)
  bool force = false;        ///< allow replacing an existing output
  Globals* globals = nullptr;
};

struct VerifyJob {
  std::filesystem::path input;
  std::vector<Owner> owners;  ///< one (--id / --did) or all of a registry; read the file once
  WatermarkOptions options;
  Globals* globals = nullptr;
};

/// The verdict for one owner (JSON fields are a contract: did, detected, z, p_value,
/// bit_errors, bits, elements, tensors; handlers may add more under `extra`).
struct Verdict {
  std::string did;
  bool detected = false;
  double z = 0;
  double p_value = 1;
  double log10_p = 0;
  int bit_errors = 0;
  int bits = 0;
  int64_t elements = 0;
  int tensors = 0;
  nlohmann::json extra = nlohmann::json::object();
};
nlohmann::json to_json(const Verdict& v);

/// A Verdict with the fields every verifier's report shares (detected, z, p_value, log10_p,
/// bit_errors, bits); the caller fills in elements, tensors and extra for its format.
template <class Report>
Verdict verdict_base(std::string did, const Report& r) {
  Verdict v;
  v.did = std::move(did);
  v.detected = r.detected;
  v.z = r.z;
  v.p_value = r.p_value;
  v.log10_p = r.log10_p;
  v.bit_errors = r.bit_errors;
  v.bits = r.bits;
  return v;
}

/// What an embed produced: the JSON report and the human table (printed when not --json).
struct EmbedResult {
  nlohmann::json json;
  std::string text;
};

struct FormatHandler {
  std::string name;                     ///< --format value: "safetensors", "csv", ...
  std::vector<std::string> extensions;  ///< ".safetensors", ".csv", ... (lower case)
  std::string description;              ///< one line for --help
  /// Optional: add this format's own options to the embed and verify subcommands.
  std::function<void(CLI::App& embed, CLI::App& verify)> add_options;
  /// Mark job.input into job.output (atomically; never touching the input).
  std::function<EmbedResult(const EmbedJob&)> embed;
  /// Verdicts for every owner of the job, in the job's order.
  std::function<std::vector<Verdict>(const VerifyJob&)> verify;
  /// Optional: true when a path (e.g. a folder or an index file) belongs to this format even
  /// though its extension does not say so.
  std::function<bool(const std::filesystem::path&)> claims;
  /// Optional: the other files that make up the checkpoint at `path` (the shards of an index).
  /// `didmark scan` reports them under `path` and does not scan them on their own.
  std::function<std::vector<std::filesystem::path>(const std::filesystem::path&)> parts;
};

int register_format(FormatHandler h);
const std::vector<FormatHandler>& formats();
/// The handler for `forced` (a --format value) when non-empty, else by extension/claims;
/// Errc::unsupported listing the known formats when nothing fits.
const FormatHandler& format_for(const std::filesystem::path& path, const std::string& forced);

}  // namespace didmark::cli

/// Register a file format from any cmd_<area>.cpp: DIDMARK_CLI_FORMAT(make_handler()).
#define DIDMARK_CLI_FORMAT(handler_expr) \
  static const int DIDMARK_CLI_CONCAT(didmark_cli_fmt_, __LINE__) = ::didmark::cli::register_format(handler_expr)
