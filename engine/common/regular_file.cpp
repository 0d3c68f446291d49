#include "common/regular_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/printable.hpp"
#include "didmark/error.hpp"

namespace didmark::detail {
namespace {

std::string named(const std::filesystem::path& path, std::string_view what) {
  std::string s;
  if (!what.empty()) {
    s.append(what);
    s.push_back(' ');
  }
  return s + "'" + printable(path.native(), 1024) + "'";
}

[[noreturn]] void refuse_errno(int e, const std::filesystem::path& path, std::string_view what) {
  DIDMARK_EXPECTS(e != ENOENT && e != ENOTDIR, not_found, named(path, what), " does not exist");
  DIDMARK_EXPECTS(e != EACCES && e != EPERM, permission, named(path, what), " cannot be read: ", std::strerror(e));
  DIDMARK_THROW(Errc::io_error, "cannot open ", named(path, what), ": ", std::strerror(e));
}

void require_regular(mode_t mode, const std::filesystem::path& path, std::string_view what) {
  DIDMARK_EXPECTS(S_ISREG(mode), invalid_argument, named(path, what), " is ", file_kind(mode),
                  ", not a regular file");
}

}  // namespace

FileDescriptor::~FileDescriptor() {
  if (fd_ >= 0) ::close(fd_);
}

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

std::string_view file_kind(mode_t mode) noexcept {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

RegularFile open_regular_file(const std::filesystem::path& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) refuse_errno(errno, path, what);
  require_regular(st.st_mode, path, what);
  RegularFile f;
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) refuse_errno(errno, path, what);
  f.fd = FileDescriptor(fd);
  DIDMARK_EXPECTS(::fstat(fd, &st) == 0, io_error, "cannot stat ", named(path, what), ": ", std::strerror(errno));
  require_regular(st.st_mode, path, what);  // swapped after the stat() above?
  const int flags = ::fcntl(fd, F_GETFL);
  DIDMARK_EXPECTS(flags >= 0 && ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0, io_error, "cannot use ",
                  named(path, what), ": ", std::strerror(errno));
  f.size = static_cast<std::size_t>(st.st_size);
  f.mode = st.st_mode;
  return f;
}

std::string read_regular_file(const std::filesystem::path& path, std::string_view what, std::size_t max_bytes) {
  RegularFile f = open_regular_file(path, what);
  DIDMARK_EXPECTS(f.size <= max_bytes, invalid_argument, named(path, what), " is larger than the limit of ", max_bytes,
                  " bytes", what.empty() ? "" : " for a", what.empty() ? "" : " ", what);
  std::string out;
  out.resize(f.size);
  std::size_t got = 0;
  for (;;) {
    if (got == out.size()) {
      if (out.size() >= max_bytes) break;
      // The file grew after fstat: read on in steps, up to the limit.
      out.resize(std::min(max_bytes, out.size() + (std::size_t{1} << 16)));
    }
    const ssize_t n = ::read(f.fd.get(), out.data() + got, out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    DIDMARK_EXPECTS(n >= 0, io_error, "reading ", named(path, what), " failed: ", std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

void check_replaceable(const std::filesystem::path& target) {
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0) return;  // missing (or a dangling link): nothing is replaced
  DIDMARK_EXPECTS(S_ISREG(st.st_mode), invalid_argument, "output '", printable(target.native(), 1024), "' is ",
                  file_kind(st.st_mode), "; only a regular file is ever replaced");
}

}  // namespace didmark::detail
