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
