#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "common/printable.hpp"
#include "common/regular_file.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  // A FIFO, device or socket is refused before it can block or stream forever.
  const detail::RegularFile f = detail::open_regular_file(path);
  size_ = f.size;
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, f.fd.get(), 0);
    DIDMARK_EXPECTS(p != MAP_FAILED, io_error, "cannot map '", detail::printable(path.native(), 1024), "': ",
                    std::strerror(errno));
    data_ = static_cast<unsigned char*>(p);
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

void MappedFile::advise_sequential() const noexcept {
  if (data_) {
    ::madvise(data_, size_, MADV_SEQUENTIAL);
    ::madvise(data_, size_, MADV_WILLNEED);
  }
}

}  // namespace didmark
