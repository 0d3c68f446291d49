#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    DIDMARK_EXPECTS(e != ENOENT, not_found, "'", path.string(), "' does not exist");
    DIDMARK_THROW(Errc::io_error, "cannot open '", path.string(), "': ", std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    DIDMARK_THROW(Errc::io_error, "cannot stat '", path.string(), "': ", std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    DIDMARK_THROW(Errc::invalid_argument, "'", path.string(), "' is not a regular file");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      DIDMARK_THROW(Errc::io_error, "cannot map '", path.string(), "': ", std::strerror(e));
    }
    data_ = static_cast<unsigned char*>(p);
  }
  ::close(fd);
}

std::shared_ptr<MappedFile> MappedFile::in_memory(std::string bytes, std::filesystem::path name) {
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = std::move(name);
  f->owned_ = std::move(bytes);
  f->size_ = f->owned_.size();
  f->data_ = f->size_ ? reinterpret_cast<unsigned char*>(f->owned_.data()) : nullptr;
  return f;
}

MappedFile::~MappedFile() {
  if (data_ && owned_.empty()) ::munmap(data_, size_);
}

void MappedFile::advise_sequential() const noexcept {
  if (data_ && owned_.empty()) {
    ::madvise(data_, size_, MADV_SEQUENTIAL);
    ::madvise(data_, size_, MADV_WILLNEED);
  }
}

}  // namespace didmark
