#pragma once
/// \file io.hpp
/// File formats: the only place that knows how arrays and checkpoints are laid out on disk.
/// Readers memory-map and hand out TensorViews into the mapping (zero copies); writers go
/// through a temporary file and a rename, so a failed or killed write leaves nothing behind.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "didmark/tensor.hpp"

namespace didmark {

/// A read-only memory mapping of a whole file (empty files map to size 0, data nullptr).
class MappedFile {
 public:
  /// Errc::not_found when missing, Errc::io_error when unreadable.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  /// Hint that the mapping will be read once front to back (madvise SEQUENTIAL + WILLNEED).
  void advise_sequential() const noexcept;

 private:
  std::filesystem::path path_;
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A .npy array (format versions 1.0, 2.0, 3.0), memory-mapped.
struct NpyArray {
  std::shared_ptr<MappedFile> file;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::size_t data_offset = 0;  ///< byte offset of the data in the file

  /// A view into the mapping. Read-only memory: do not write through it.
  TensorView view() const;
};

/// Read a .npy file. Little-endian C-order arrays of f64, f32, f16, i64, i32, i16, i8, u8
/// and bool are accepted; Fortran order, big-endian data, object arrays and a data size
/// that does not match the header are refused (Errc::corrupt_input / unsupported, naming
/// the file and the problem).
NpyArray read_npy(const std::filesystem::path& path);

/// The .npy bytes of a contiguous host view (header + data). bf16 has no numpy dtype and
/// is refused (Errc::unsupported).
std::string npy_bytes(const TensorView& v);

/// Write a contiguous host view as .npy, atomically; refuses to replace an existing file
/// unless `overwrite`.
void write_npy(const std::filesystem::path& path, const TensorView& v, bool overwrite = false);

}  // namespace didmark
