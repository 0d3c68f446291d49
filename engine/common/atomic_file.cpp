#include "common/atomic_file.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/regular_file.hpp"
#include "didmark/error.hpp"

namespace didmark::detail {

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

AtomicFile::AtomicFile(std::filesystem::path target, bool overwrite, mode_t mode)
    : target_(std::move(target)), overwrite_(overwrite) {
  DIDMARK_EXPECTS(!target_.filename().empty(), invalid_argument, "output path '", target_.string(),
                  "' names no file");
  if (!overwrite_)
    DIDMARK_EXPECTS(!std::filesystem::exists(target_), invalid_argument, "output '", target_.string(),
                    "' already exists (use --force to overwrite)");
  else
    check_replaceable(target_);  // --force replaces a file, never a device, FIFO or folder
  const auto dir = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
#if defined(O_TMPFILE)
  fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd_ >= 0) {
    unnamed_ = true;
    return;
  }
  // EOPNOTSUPP / EISDIR / EINVAL: the filesystem has no unnamed files; use a named one.
#endif
  std::string leaf(".");
  leaf += target_.filename().string();
  leaf += ".didmark-tmp-XXXXXX";
  const std::string tmpl = (dir / leaf).string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  DIDMARK_EXPECTS(fd_ >= 0, io_error, "cannot create a temporary file in '", dir.string(), "': ", errno_text());
  temp_ = buf.data();
  if (::fchmod(fd_, mode) != 0) {
    const std::string why = errno_text();
    ::close(fd_);
    ::unlink(temp_.c_str());
    DIDMARK_THROW(Errc::io_error, "cannot set the mode of '", temp_.string(), "': ", why);
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !unnamed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::link_into(const std::filesystem::path& name) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd_);
  if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) != 0) {
    const int e = errno;
    DIDMARK_EXPECTS(e != EEXIST, invalid_argument, "output '", target_.string(),
                    "' already exists (use --force to overwrite)");
    DIDMARK_THROW(Errc::io_error, "cannot create '", name.string(), "': ", std::strerror(e));
  }
}

void AtomicFile::write(const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    DIDMARK_EXPECTS(n > 0, io_error, "writing '", target_.string(), "' failed: ", errno_text());
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void AtomicFile::resize(std::size_t size) {
  DIDMARK_EXPECTS(::ftruncate(fd_, static_cast<off_t>(size)) == 0, io_error, "cannot size '", target_.string(),
                  "' to ", size, " bytes: ", errno_text());
}

void AtomicFile::commit() {
  DIDMARK_ASSERT(!committed_);
  DIDMARK_EXPECTS(::fsync(fd_) == 0, io_error, "fsync of '", target_.string(), "' failed: ", errno_text());
  if (unnamed_) {
    if (!overwrite_) {
      link_into(target_);  // fails if the target appeared meanwhile: never clobber it
    } else {
      // Name it beside the target for an instant, then rename over the target atomically.
      const auto dir = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
      std::string leaf(".");
      leaf += target_.filename().string();
      leaf += ".didmark-tmp-" + std::to_string(::getpid()) + "-" + std::to_string(fd_);
      temp_ = dir / leaf;
      check_replaceable(target_);
      ::unlink(temp_.c_str());
      link_into(temp_);
      unnamed_ = false;
      if (::rename(temp_.c_str(), target_.c_str()) != 0) {
        const std::string why = errno_text();
        ::unlink(temp_.c_str());
        DIDMARK_THROW(Errc::io_error, "cannot rename into '", target_.string(), "': ", why);
      }
    }
    ::close(fd_);
    fd_ = -1;
    committed_ = true;
    sync_folder();
    return;
  }
  ::close(fd_);
  fd_ = -1;
  if (overwrite_) {
    check_replaceable(target_);
    DIDMARK_EXPECTS(::rename(temp_.c_str(), target_.c_str()) == 0, io_error, "cannot rename into '",
                    target_.string(), "': ", errno_text());
  } else {
    // link() fails if the target appeared meanwhile: never clobber a file we were told to keep.
    if (::link(temp_.c_str(), target_.c_str()) != 0) {
      const int e = errno;
      DIDMARK_EXPECTS(e != EEXIST, invalid_argument, "output '", target_.string(),
                      "' already exists (use --force to overwrite)");
      // Filesystems without hard links: fall back to a checked rename.
      DIDMARK_EXPECTS(!std::filesystem::exists(target_), invalid_argument, "output '", target_.string(),
                      "' already exists (use --force to overwrite)");
      DIDMARK_EXPECTS(::rename(temp_.c_str(), target_.c_str()) == 0, io_error, "cannot rename into '",
                      target_.string(), "': ", std::strerror(errno));
    } else {
      ::unlink(temp_.c_str());
    }
  }
  committed_ = true;
  sync_folder();
}

void AtomicFile::sync_folder() const {
  const auto dir = target_.has_parent_path() ? target_.parent_path() : std::filesystem::path(".");
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void write_file_atomically(const std::filesystem::path& target, const std::string& contents, bool overwrite,
                           mode_t mode) {
  AtomicFile f(target, overwrite, mode);
  f.write(contents);
  f.commit();
}

}  // namespace didmark::detail
