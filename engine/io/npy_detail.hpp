#pragma once
// The .npy header on its own: parsed from bytes (for read_npy, read_row_ids and the fuzzer)
// and written for a little-endian C-order array.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/tensor.hpp"

namespace didmark::detail {

/// What a .npy header says, checked against the file's size.
struct NpyHeader {
  char kind = 'f';           ///< 'f' float, 'i' signed, 'u' unsigned, 'b' bool
  std::size_t item = 4;      ///< bytes per element
  bool big_endian = false;   ///< '>' byte order (only for items of 2 bytes or more)
  bool fortran = false;      ///< fortran_order: True
  std::vector<int64_t> shape;
  std::size_t count = 1;     ///< product of shape
  std::size_t data_offset = 0;
  std::string descr;         ///< as written, for messages (already printable-escaped)
};

/// Parse and check the header of the .npy file held in `file` (normally a mapping): magic,
/// version 1-3, header length <= kNpyMaxHeader, a dict with descr (a simple numeric or bool
/// type of either byte order), fortran_order and a shape of <= kMaxTensorRank dimensions whose
/// element count times the item size is exactly the rest of the file. Errc::corrupt_input or
/// Errc::unsupported naming `name`; file bytes are never echoed unescaped.
NpyHeader parse_npy_header(std::span<const unsigned char> file, std::string_view name);

/// The DType of a header's element type; nullopt for those without one (u16, u32, u64).
std::optional<DType> npy_dtype(const NpyHeader& h) noexcept;

/// The header bytes (magic .. '\n', padded to 64) of a little-endian C-order array.
std::string npy_header_bytes(DType dtype, const std::vector<int64_t>& shape);

}  // namespace didmark::detail
