// scan_inputs: many files against many owners, one driver for `didmark scan`, the server's
// Scan and Python.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "didmark/io.hpp"

namespace didmark {

namespace fs = std::filesystem;

std::size_t scan_inputs(std::span<const std::string> paths, std::span<const Owner> owners, const InputOptions& options,
                        const ScanOptions& scan, Backend& backend, const std::function<bool(ScanItem&&)>& on_item) {
  DIDMARK_EXPECTS(scan.jobs >= 1, invalid_argument, "jobs must be at least 1, got ", scan.jobs);
  const std::vector<InputFile> files = collect_inputs(paths, [&](const fs::path& p) {
    const InputFormat f = classify_input(p, options.format);
    try {
      return input_parts(p, f);
    } catch (const Error&) {
      return std::vector<fs::path>{};  // reported when the input itself is verified
    }
  });
  const std::size_t total = files.size();

  std::vector<std::optional<ScanItem>> done(total);
  std::mutex mu;
  std::size_t next_emit = 0;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr callback_error;
  auto emit_ready = [&] {  // under mu: hand finished items over in path order
    while (!stop && next_emit < total && done[next_emit]) {
      ScanItem item = std::move(*done[next_emit]);
      done[next_emit].reset();
      ++next_emit;
      try {
        if (!on_item(std::move(item))) stop = true;
      } catch (...) {
        callback_error = std::current_exception();
        stop = true;
      }
    }
  };
  auto worker = [&] {
    for (std::size_t i; !stop && (i = next.fetch_add(1)) < total;) {
      if (scan.cancelled && scan.cancelled()) {
        stop = true;
        break;
      }
      const InputFile& f = files[i];
      ScanItem item;
      item.index = i;
      item.total = total;
      item.path = f.path;
      item.error_code = f.error_code;
      item.error_message = f.error_message;
      if (item.error_code.empty()) {
        try {
          item.verdicts = verify_input(f.path, owners, options, backend);
        } catch (const Error& e) {
          item.error_code = std::string(errc_name(e.code()));
          item.error_message = e.what();
        } catch (const std::bad_alloc&) {
          item.error_code = "io_error";
          item.error_message = "out of memory reading '" + f.path.string() + "'";
        } catch (const std::exception& e) {
          item.error_code = "internal";
          item.error_message = e.what();
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      done[i] = std::move(item);
      emit_ready();
    }
  };
  const int n = std::max(1, std::min<int>(scan.jobs, static_cast<int>(std::max<std::size_t>(total, 1))));
  std::vector<std::thread> threads;
  for (int t = 1; t < n; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (callback_error) std::rethrow_exception(callback_error);
  return total;
}

}  // namespace didmark
