#pragma once
// An output file written through a shared mapping of an AtomicFile's temporary: size it
// (blocks reserved up front, so a full disk fails here and not as SIGBUS on a page), fill
// the mapping, commit (msync, fsync, rename).
#include <cstddef>
#include <filesystem>
#include <span>

#include "common/atomic_file.hpp"

namespace didmark::detail {

class MappedOutput {
 public:
  MappedOutput(const std::filesystem::path& target, bool overwrite, std::size_t size);
  ~MappedOutput();
  MappedOutput(const MappedOutput&) = delete;
  MappedOutput& operator=(const MappedOutput&) = delete;

  unsigned char* data() const noexcept { return map_; }
  std::size_t size() const noexcept { return size_; }
  const std::filesystem::path& target() const noexcept { return file_.target(); }
  void commit();

 private:
  AtomicFile file_;
  unsigned char* map_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace didmark::detail
