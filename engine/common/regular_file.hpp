#pragma once
// Opening files that a user, a client or another file names. Such a name may point at a FIFO
// (open() would block until a writer comes, forever), a device (reads never end, or opening
// has side effects), a socket or a folder. Every reader of a named file goes through
// open_regular_file, which never blocks and refuses anything but a regular file.
#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

namespace didmark::detail {

/// An open file descriptor, closed when destroyed.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  ~FileDescriptor();
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.release()) {}
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;

  int get() const noexcept { return fd_; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

/// A regular file opened read-only, with what fstat said about it.
struct RegularFile {
  FileDescriptor fd;
  std::size_t size = 0;  ///< st_size at open
  mode_t mode = 0;       ///< st_mode at open (permission bits included)
};

/// What a file is, in words, for messages: "a folder", "a FIFO (named pipe)", "a character
/// device", "a block device", "a socket", "a symbolic link", "a regular file".
std::string_view file_kind(mode_t mode) noexcept;

/// Open `path` read-only when it is a regular file (symbolic links followed); never blocks.
/// The path is checked with stat() first (so a device is never opened), then opened with
/// O_RDONLY | O_NONBLOCK | O_CLOEXEC, checked again with fstat() on the descriptor (the file
/// cannot be swapped between the two), and O_NONBLOCK is cleared for reading.
/// `what` names the file in messages ("identity file", "registry"; empty: just the path).
/// Errors: Errc::not_found (missing), Errc::permission (EACCES/EPERM), Errc::invalid_argument
/// (not a regular file: "'x' is a FIFO (named pipe), not a regular file"), Errc::io_error.
RegularFile open_regular_file(const std::filesystem::path& path, std::string_view what = {});

/// The whole content of a regular file opened as above. A file larger than `max_bytes` is
/// refused (Errc::invalid_argument, "'x' is larger than the limit of N bytes for <what>")
/// before anything is read; the read stops at `max_bytes` even if the file grows meanwhile.
std::string read_regular_file(const std::filesystem::path& path, std::string_view what = {},
                              std::size_t max_bytes = std::numeric_limits<std::size_t>::max());

/// Refuse to replace `target` unless it is missing or a regular file (a symbolic link is
/// judged by what it points to): an output never replaces a device, FIFO, socket or folder.
/// Errc::invalid_argument naming the target and what it is.
void check_replaceable(const std::filesystem::path& target);

}  // namespace didmark::detail
