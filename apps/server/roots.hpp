#pragma once
// The folders a client may name (--root DIR, repeatable): every path in a request is
// resolved, symlinks included, and must lie under one of them.
//
// A path outside every root is refused with PERMISSION_DENIED and one fixed message that
// names only the request field: not the path, not whether it exists, not what it is. So the
// port is no oracle for the rest of the filesystem. Paths under a root may be named in
// errors (they are the client's to see).
//
// What resolution cannot close: a component under a root replaced by a symlink between the
// check and the read. Keep roots writable only by the server and trusted parties; files the
// API itself creates (uploads, embed outputs) are regular files with names the server checks.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/error.hpp"

namespace didmark::server {

/// A path a request named, resolved and confined.
struct ConfinedPath {
  std::filesystem::path resolved;  ///< absolute, symlinks resolved, under a root
  std::string given;               ///< as the client wrote it (for responses)
};

/// Thrown for a path outside every root; the service maps it to PERMISSION_DENIED.
class OutsideRoots : public Error {
 public:
  explicit OutsideRoots(std::string_view field);
};

/// Thrown when a request names a path and the server was started without --root; the
/// service maps it to FAILED_PRECONDITION.
class NoRoots : public Error {
 public:
  explicit NoRoots(std::string_view field);
};

class Roots {
 public:
  Roots() = default;
  /// Canonical forms of `dirs`, each an existing folder (didmark::Error naming the one that
  /// is not). Nested roots are kept (harmless).
  explicit Roots(const std::vector<std::string>& dirs);

  bool empty() const noexcept { return roots_.empty(); }
  const std::vector<std::filesystem::path>& list() const noexcept { return roots_; }

  /// Resolve `given` (request field `field`): relative paths are taken from the first root;
  /// every existing component's symlinks are followed (weakly_canonical), the rest is
  /// normalised. Throws OutsideRoots when the result is not under a root, invalid_argument
  /// for an empty path, one with a NUL byte or one over kMaxPathBytes, NoRoots when the
  /// server has no roots.
  ConfinedPath resolve(std::string_view field, const std::string& given) const;

  /// Whether an already absolute path (e.g. a shard or sidecar the library will read)
  /// resolves under a root.
  bool contains(const std::filesystem::path& p) const;

  /// Throws OutsideRoots(field) unless contains(p).
  void require(std::string_view field, const std::filesystem::path& p) const;

 private:
  std::vector<std::filesystem::path> roots_;
};

/// Longest path a request may name.
inline constexpr std::size_t kMaxPathBytes = 4096;

}  // namespace didmark::server
