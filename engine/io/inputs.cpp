// collect_inputs: the file list of a scan, shared by the CLI and the server.
#include <algorithm>
#include <set>
#include <system_error>

#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {

namespace fs = std::filesystem;

namespace {

bool hidden(const fs::path& p) {
  const std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

}  // namespace

std::vector<InputFile> collect_inputs(std::span<const std::string> paths, const InputClassifier& classify) {
  std::vector<InputFile> items;
  std::set<fs::path> parts;
  auto consider = [&](const fs::path& p, bool explicit_path) {
    std::vector<fs::path> stands_for;
    try {
      stands_for = classify(p);
    } catch (const Error& e) {
      // A folder holds other files too; only a file the caller named is worth an error.
      if (explicit_path) items.push_back({p, std::string(errc_name(e.code())), e.what()});
      return;
    }
    for (const auto& q : stands_for) parts.insert(fs::weakly_canonical(q));
    items.push_back({p, {}, {}});
  };
  for (const auto& s : paths) {
    const fs::path p(s);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> files;
      auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
      for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        if (hidden(it->path())) {
          if (it->is_directory(ec)) it.disable_recursion_pending();
          continue;
        }
        if (it->is_regular_file(ec)) files.push_back(it->path());
      }
      if (ec) items.push_back({p, "io_error", "cannot list '" + p.string() + "': " + ec.message()});
      std::sort(files.begin(), files.end());
      for (const auto& file : files) consider(file, false);
    } else if (fs::exists(p, ec)) {
      consider(p, true);
    } else {
      items.push_back({p, "not_found", "'" + p.string() + "' does not exist"});
    }
  }
  // Shards are verified as part of their index, not again on their own.
  std::erase_if(items, [&](const InputFile& i) {
    return i.error_code.empty() && parts.count(fs::weakly_canonical(i.path)) > 0;
  });
  return items;
}

}  // namespace didmark
