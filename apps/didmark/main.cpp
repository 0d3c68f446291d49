// didmark: one binary, a subcommand per capability.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "cli.hpp"
#include "common/regular_file.hpp"
#include "didmark/error.hpp"

namespace didmark::cli {

namespace {
std::vector<std::pair<int, Registrar>>& registry() {
  static std::vector<std::pair<int, Registrar>> r;
  return r;
}
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int register_commands(int order, Registrar r) {
  registry().emplace_back(order, r);
  return 0;
}

Backend& Globals::backend() {
  if (!backend_) backend_ = make_backend(device, "--device");
  return *backend_;
}

std::string read_text_file(const std::string& path, std::string_view what) {
  return detail::read_regular_file(path, what, kMaxTextFile);
}

void print_json(const nlohmann::json& j) {
  const char* compact = std::getenv("DIDMARK_JSON_COMPACT");
  // File names and CSV cells need not be UTF-8: replace bad bytes rather than abort.
  const auto replace = nlohmann::json::error_handler_t::replace;
  std::cout << (compact && *compact ? j.dump(-1, ' ', false, replace) : j.dump(2, ' ', false, replace)) << std::endl;
}

Progress::Progress(const Globals& g, std::string label, int64_t total)
    : enabled_(!g.quiet && isatty(STDERR_FILENO)), label_(std::move(label)), total_(total) {}

Progress::~Progress() { done(); }

void Progress::advance(int64_t n) {
  current_ += n;
  if (!enabled_) return;
  const double t = now_seconds();
  if (t - last_draw_ < 0.1 && current_ < total_) return;
  last_draw_ = t;
  const int width = 30;
  const double frac = total_ > 0 ? std::min(1.0, static_cast<double>(current_) / static_cast<double>(total_)) : 0.0;
  const int filled = static_cast<int>(frac * width);
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld", label_.c_str(), filled, "==============================",
               width - filled, "", static_cast<long long>(current_), static_cast<long long>(total_));
  std::fflush(stderr);
}

void Progress::done() {
  if (enabled_ && last_draw_ >= 0) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
  enabled_ = false;
}

CLI::App& command_group(CLI::App& parent, const std::string& name, const std::string& description) {
  for (CLI::App* existing : parent.get_subcommands([](CLI::App*) { return true; }))
    if (existing->get_name() == name) return *existing;
  CLI::App* g = parent.add_subcommand(name, description);
  g->require_subcommand(1);
  return *g;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace didmark::cli

int main(int argc, char** argv) {
  using namespace didmark::cli;
  CLI::App app{
      "didmark: embed and verify DID-carrying watermarks in model weights and datasets,\n"
      "attribute contributions and split royalties exactly.\n"
      "Exit codes: 0 success (or mark detected), 1 mark not detected, 2 error.",
      "didmark"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "didmark 0.1.0");
  Globals g;
  app.add_flag("--json", g.json, "Machine-readable JSON on stdout");
  app.add_flag("-q,--quiet", g.quiet, "No progress or notes on stderr");
  app.add_flag("-v,--verbose", g.verbose, "More detail (error locations, timings)");
  app.add_option("--device", g.device, "Force a backend: cpu or cuda (default: GPU when present; env DIDMARK_DEVICE)")
      ->check(CLI::IsMember({"cpu", "cuda", "gpu"}));
  app.fallthrough();

  Action action;
  auto& reg = registry();
  std::stable_sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, fn] : reg) fn(app, g, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitError;
  }
  try {
    return action ? action() : kExitError;
  } catch (const didmark::Error& e) {
    if (g.json) {
      print_json({{"error", {{"code", std::string(didmark::errc_name(e.code()))}, {"message", e.what()}}}});
    }
    std::cerr << "didmark: error: " << e.what() << "\n";
    if (g.verbose && !e.where().empty()) std::cerr << "  at " << e.where() << "\n";
    return kExitError;
  } catch (const std::exception& e) {
    if (g.json) print_json({{"error", {{"code", "internal"}, {"message", e.what()}}}});
    std::cerr << "didmark: error: " << e.what() << "\n";
    return kExitError;
  }
}
