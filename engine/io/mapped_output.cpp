#include "io/mapped_output.hpp"

#include <fcntl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "didmark/error.hpp"

namespace didmark::detail {

MappedOutput::MappedOutput(const std::filesystem::path& target, bool overwrite, std::size_t size)
    : file_(target, overwrite), size_(size) {
  if (size_ == 0) return;
  const int rc = ::posix_fallocate(file_.fd(), 0, static_cast<off_t>(size_));
  if (rc == EOPNOTSUPP || rc == ENOSYS || rc == EINVAL) {
    file_.resize(size_);  // filesystems without fallocate: sparse, as before
  } else {
    DIDMARK_EXPECTS(rc == 0, io_error, "cannot reserve ", size_, " bytes for '", target.string(), "': ",
                    std::strerror(rc));
  }
  void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, file_.fd(), 0);
  DIDMARK_EXPECTS(p != MAP_FAILED, io_error, "cannot map '", file_.target().string(), "' for writing: ",
                  std::strerror(errno));
  map_ = static_cast<unsigned char*>(p);
}

MappedOutput::~MappedOutput() {
  if (map_) ::munmap(map_, size_);
}

void MappedOutput::commit() {
  if (map_) {
    DIDMARK_EXPECTS(::msync(map_, size_, MS_SYNC) == 0, io_error, "writing '", target().string(), "' failed: ",
                    std::strerror(errno));
    ::munmap(map_, size_);
    map_ = nullptr;
  }
  file_.commit();
}

}  // namespace didmark::detail
