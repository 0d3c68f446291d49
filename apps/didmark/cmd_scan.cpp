// `didmark scan PATH... --registry REG.jsonl`: many files against many registered owners,
// each file read once for all of them; JSON Lines out, one line per file.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "cli.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "formats.hpp"
#include "mark_options.hpp"
#include "sketch_hooks.hpp"

namespace didmark::cli {
namespace {

namespace fs = std::filesystem;

struct ScanFlags {
  MarkFlags mark;
  std::vector<std::string> paths;
  int jobs = 1;
};

using Item = InputFile;

// The files to scan, in a stable order (collect_inputs), with the formats of this CLI: files of
// no known format left out of folders, the parts of a multi-file checkpoint scanned under it.
std::vector<Item> collect(const std::vector<std::string>& paths, const std::string& forced) {
  return collect_inputs(paths, [&](const fs::path& p) {
    const FormatHandler& h = format_for(p, forced);
    std::vector<fs::path> parts;
    if (h.parts) {
      try {
        parts = h.parts(p);
      } catch (const Error&) {
        // reported when the file itself is scanned
      }
    }
    return parts;
  });
}

nlohmann::json error_line(const std::string& path, const std::string& code, const std::string& message) {
  return {{"path", path}, {"error", {{"code", code}, {"message", message}}}};
}

void register_scan(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<ScanFlags>();
  CLI::App* cmd = app.add_subcommand("scan", "Scan files and folders for the marks of every registered owner");
  cmd->add_option("PATH", f->paths, "Files and folders (walked recursively)")->required();
  add_owner_options(*cmd, f->mark, false, true);
  add_mark_options(*cmd, f->mark);
  cmd->add_option("-j,--jobs", f->jobs, "Files verified in parallel")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->footer(
      "Writes JSON Lines on stdout, one line per file in path order:\n"
      "  {\"path\", \"format\", \"detected\": [DIDs], \"verdicts\": [{did, detected, z, p_value, ...}], \"seconds\"}\n"
      "  {\"path\", \"error\": {\"code\", \"message\"}} for a file that cannot be read; the scan goes on.\n"
      "Each file is read once for all owners. In folders, files of no known format and hidden files\n"
      "are skipped, and the shards of a sharded checkpoint are scanned under its index.\n"
      "Exit codes: 0 at least one mark detected, 1 none detected, 2 some file failed (or bad usage).");
  cmd->callback([&g, &action, f] {
    action = [&g, f]() -> int {
      DIDMARK_EXPECTS(!f->mark.registry.empty(), invalid_argument, "scan needs --registry REG.jsonl");
      const auto owners = resolve_owners(f->mark);
      const WatermarkOptions options = watermark_options(f->mark);
      const auto items = collect(f->paths, f->mark.format);
      g.backend();  // made once, before the workers share it

      std::vector<std::optional<nlohmann::json>> lines(items.size());
      std::mutex mu;
      std::size_t next_print = 0;
      int failed = 0, detected_files = 0;
      Progress progress(g, "scan", static_cast<int64_t>(items.size()));
      auto emit_ready = [&] {  // under mu: print finished lines in path order
        while (next_print < lines.size() && lines[next_print]) {
          std::cout << lines[next_print]->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n'
                    << std::flush;
          lines[next_print].reset();
          ++next_print;
        }
      };
      std::atomic<std::size_t> next{0};
      auto worker = [&] {
        for (std::size_t i; (i = next.fetch_add(1)) < items.size();) {
          const Item& it = items[i];
          const std::string path = it.path.string();
          nlohmann::json line;
          bool ok = false, hit = false;
          if (!it.error_code.empty()) {
            line = error_line(path, it.error_code, it.error_message);
          } else {
            try {
              const auto t0 = std::chrono::steady_clock::now();
              const FormatHandler& h = format_for(it.path, f->mark.format);
              DIDMARK_EXPECTS(static_cast<bool>(h.verify), unsupported, "format '", h.name, "' cannot verify");
              VerifyJob job;
              job.input = it.path;
              job.owners = owners;
              job.options = options;
              job.globals = &g;
              const auto vs = realign_verdicts(job, h.name, h.verify(job));
              line = verified_file_json(path, h.name, vs);
              line["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
              ok = true;
              hit = !line["detected"].empty();
            } catch (const Error& e) {
              line = error_line(path, std::string(errc_name(e.code())), e.what());
            } catch (const std::exception& e) {
              line = error_line(path, "internal", e.what());
            }
          }
          std::lock_guard<std::mutex> lock(mu);
          failed += ok ? 0 : 1;
          detected_files += hit ? 1 : 0;
          lines[i] = std::move(line);
          emit_ready();
          progress.advance();
        }
      };
      const int n = std::max(1, std::min<int>(f->jobs, static_cast<int>(items.size())));
      std::vector<std::thread> threads;
      for (int t = 1; t < n; ++t) threads.emplace_back(worker);
      worker();
      for (auto& t : threads) t.join();
      progress.done();
      if (!g.quiet)
        std::fprintf(stderr, "didmark scan: %zu file%s, %d with a detected mark, %d failed, %zu owner%s\n",
                     items.size(), items.size() == 1 ? "" : "s", detected_files, failed, owners.size(),
                     owners.size() == 1 ? "" : "s");
      if (failed > 0) return kExitError;
      return detected_files > 0 ? kExitOk : kExitNotDetected;
    };
  });
}

DIDMARK_CLI_COMMAND(12, register_scan);

}  // namespace
}  // namespace didmark::cli
