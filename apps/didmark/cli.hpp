#pragma once
// Shared pieces of the didmark CLI. Each capability lives in its own cmd_<area>.cpp and
// registers its subcommands through DIDMARK_CLI_COMMAND, so areas never edit main.cpp.
//
// Exit codes (a contract): 0 success / mark detected, 1 verified and not detected,
// 2 error (bad input, unreadable file, device failure), 3 verified but nothing in the input
// could carry a mark (no eligible tensor, no marked cell, no row).

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "didmark/backend.hpp"

namespace didmark::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitNotDetected = 1;
inline constexpr int kExitError = 2;
inline constexpr int kExitNoData = 3;

/// Options every subcommand sees (set on the root command).
struct Globals {
  bool json = false;     ///< machine output on stdout
  bool quiet = false;    ///< no progress or notes on stderr
  bool verbose = false;  ///< error locations, timings
  std::string device;    ///< "", "cpu" or "cuda"

  /// The backend chosen by --device / DIDMARK_DEVICE / auto, made once.
  Backend& backend();

 private:
  std::shared_ptr<Backend> backend_;
};

/// A subcommand's work: returns the exit code.
using Action = std::function<int()>;

/// Called at start-up for every registered command group: add subcommands to `app`, and
/// set `action` from their callbacks.
using Registrar = void (*)(CLI::App& app, Globals& g, Action& action);

int register_commands(int order, Registrar r);

/// Print a JSON value on stdout (pretty unless DIDMARK_JSON_COMPACT) with a newline.
void print_json(const nlohmann::json& j);

/// A progress line on stderr, shown only when stderr is a terminal and not --quiet.
class Progress {
 public:
  Progress(const Globals& g, std::string label, int64_t total);
  ~Progress();
  void advance(int64_t n = 1);
  void done();

 private:
  bool enabled_;
  std::string label_;
  int64_t total_, current_ = 0;
  double last_draw_ = -1;
};

/// The subcommand `name` of `parent`, created (with `description`) if it does not exist
/// yet: lets several areas add commands under one group, e.g. `didmark synth ...`.
CLI::App& command_group(CLI::App& parent, const std::string& name, const std::string& description);

/// "12.3 MB", "4.0 GB" (decimal units).
std::string human_bytes(double bytes);

/// The text of a file a flag names (a statement, a grid, names, verdicts, a map): a regular
/// file only (never a FIFO or device), at most kMaxTextFile bytes; errors name `what` and the
/// path, never the content.
inline constexpr std::size_t kMaxTextFile = std::size_t{256} << 20;
std::string read_text_file(const std::string& path, std::string_view what);

}  // namespace didmark::cli

#define DIDMARK_CLI_CONCAT2(a, b) a##b
#define DIDMARK_CLI_CONCAT(a, b) DIDMARK_CLI_CONCAT2(a, b)
/// Register a command group; `order` sorts the groups in --help.
#define DIDMARK_CLI_COMMAND(order, fn) \
  static const int DIDMARK_CLI_CONCAT(didmark_cli_reg_, __LINE__) = ::didmark::cli::register_commands(order, fn)
