#pragma once
// The zip container of a torch.save file, read and checked by our own code before LibTorch
// (miniz) sees it, and the pickle inside validated (pickle_validate.hpp) and rewritten for
// LibTorch 1.13 (torch_pickle.hpp). Pure bytes, no LibTorch: tested and fuzzed on its own.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/pickle_validate.hpp"
#include "io/torch_pickle.hpp"

namespace didmark::detail {

/// One stored entry of the zip.
struct ZipEntry {
  std::string name;
  uint64_t data_offset = 0;  ///< where its bytes start in the file
  uint64_t size = 0;
};

/// The central directory of a zip held in memory, checked:
///  * one end-of-central-directory record ending the file exactly (no trailing bytes), with
///    ZIP64 records where the sizes need them; one disk; at most kTorchMaxZipEntries entries;
///  * every entry stored (method 0, as torch.save writes), not encrypted, compressed size =
///    size, its local header where the directory says, its data inside the file and before
///    the directory; names unique; the entries' sizes add up to at most the file's size (no
///    byte is counted twice: no amplification).
/// Errc::corrupt_input (Errc::unsupported for compressed or encrypted entries) naming `name`.
std::vector<ZipEntry> read_zip_directory(std::span<const unsigned char> file, std::string_view name);

/// A torch.save archive ready for LibTorch.
struct TorchArchive {
  bool legacy = false;            ///< the legacy format (torch_legacy.hpp): no zip entries
  std::vector<ZipEntry> entries;  ///< sorted by name
  std::string prefix;             ///< "<archive>/" (the folder every entry is in)
  PickleCheck check;              ///< what the validator saw in data.pkl
  PickleFixup fixed;              ///< data.pkl rewritten for LibTorch 1.13 (validated again)

  /// The entry `prefix + rel`, or nullptr.
  const ZipEntry* find(std::string_view rel) const;
};

/// Read the zip directory, find data.pkl (at most kPickleMaxBytes), refuse a big-endian
/// `byteorder` record, validate the pickle with its storages checked against the data/<key>
/// records, rewrite it for LibTorch and validate the result as LibTorch will read it.
/// Errc::corrupt_input / unsupported naming `name` and the problem.
TorchArchive open_torch_archive(std::span<const unsigned char> file, std::string_view name);

/// Either format of torch.save: the zip (open_torch_archive) or the legacy stream
/// (_use_new_zipfile_serialization=False, read_legacy_torch), whose object pickle is checked
/// the same way against its storages and rewritten for LibTorch. Every PyTorch file goes
/// through this before anything (LibTorch, or the Python module's torch) loads it.
TorchArchive open_torch_file(std::span<const unsigned char> file, std::string_view name);

}  // namespace didmark::detail
