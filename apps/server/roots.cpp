#include "roots.hpp"

#include <algorithm>
#include <system_error>

namespace didmark::server {

namespace fs = std::filesystem;

OutsideRoots::OutsideRoots(std::string_view field)
    : Error(Errc::permission, detail::concat(field, " names a path outside the folders this server may read ",
                                             "(its --root folders)")) {}

NoRoots::NoRoots(std::string_view field)
    : Error(Errc::invalid_argument,
            detail::concat(field, " names a path, and this server reads no paths (start didmarkd with --root DIR)")) {}

Roots::Roots(const std::vector<std::string>& dirs) {
  for (const auto& d : dirs) {
    std::error_code ec;
    DIDMARK_EXPECTS(!d.empty(), invalid_argument, "--root is empty");
    const fs::path c = fs::canonical(d, ec);
    DIDMARK_EXPECTS(!ec, not_found, "--root '", d, "' cannot be resolved: ", ec.message());
    DIDMARK_EXPECTS(fs::is_directory(c, ec), invalid_argument, "--root '", d, "' is not a folder");
    if (std::find(roots_.begin(), roots_.end(), c) == roots_.end()) roots_.push_back(c);
  }
}

bool Roots::contains(const fs::path& p) const {
  std::error_code ec;
  const fs::path r = fs::weakly_canonical(p, ec);
  if (ec || !r.is_absolute()) return false;
  for (const auto& root : roots_) {
    // Component-wise prefix: /data/models2 is not under /data/models.
    auto [a, b] = std::mismatch(root.begin(), root.end(), r.begin(), r.end());
    if (a == root.end()) return true;
  }
  return false;
}

void Roots::require(std::string_view field, const fs::path& p) const {
  if (!contains(p)) throw OutsideRoots(field);
}

ConfinedPath Roots::resolve(std::string_view field, const std::string& given) const {
  DIDMARK_EXPECTS(!given.empty(), invalid_argument, field, " is empty");
  DIDMARK_EXPECTS(given.size() <= kMaxPathBytes, invalid_argument, field, " is longer than ", kMaxPathBytes,
                  " bytes");
  DIDMARK_EXPECTS(given.find('\0') == std::string::npos, invalid_argument, field, " holds a NUL byte");
  if (roots_.empty()) throw NoRoots(field);
  fs::path p(given);
  if (p.is_relative()) p = roots_.front() / p;
  std::error_code ec;
  fs::path r = fs::weakly_canonical(p, ec);
  if (ec || !contains(r)) throw OutsideRoots(field);
  return {std::move(r), given};
}

}  // namespace didmark::server
