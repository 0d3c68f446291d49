#pragma once
// Outputs are written to a temporary file in the target's folder and renamed into place
// only when complete, so a crash or kill leaves either the old state or the new one, never
// a half-written file. Every writer of user-visible files (checkpoints, tables, identity
// files, statements) goes through this.

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string>

namespace didmark::detail {

class AtomicFile {
 public:
  /// Create an unnamed temporary file (O_TMPFILE) in `target`'s folder, so a process
  /// killed before commit leaves nothing behind; where the filesystem lacks O_TMPFILE, a
  /// hidden ".<name>.didmark-tmp-XXXXXX" instead. With overwrite=false the commit fails
  /// (Errc::invalid_argument) if `target` exists by then.
  explicit AtomicFile(std::filesystem::path target, bool overwrite = false, mode_t mode = 0644);
  ~AtomicFile();  // removes the temporary unless committed
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  int fd() const noexcept { return fd_; }
  /// The temporary's name; empty while it is unnamed (O_TMPFILE).
  const std::filesystem::path& temp_path() const noexcept { return temp_; }
  const std::filesystem::path& target() const noexcept { return target_; }

  /// Append bytes (loops over short writes; Errc::io_error naming the file on failure).
  void write(const void* data, std::size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }
  /// Set the file size (for writers that then mmap fd()).
  void resize(std::size_t size);
  /// fsync, rename over the target, fsync the folder.
  void commit();

 private:
  std::filesystem::path target_, temp_;
  void link_into(const std::filesystem::path& name);  // O_TMPFILE: give the file a name
  void sync_folder() const;

  int fd_ = -1;
  bool overwrite_;
  bool unnamed_ = false;
  bool committed_ = false;
};

/// Whole-file convenience: AtomicFile + write + commit.
void write_file_atomically(const std::filesystem::path& target, const std::string& contents, bool overwrite = true,
                           mode_t mode = 0644);

}  // namespace didmark::detail
