#pragma once
/// \file io.hpp
/// File formats: the only place that knows how arrays and checkpoints are laid out on disk.
/// Readers memory-map and hand out TensorViews into the mapping (zero copies); writers go
/// through a temporary file and a rename, so a failed or killed write leaves nothing behind.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "didmark/limits.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

/// A read-only memory mapping of a whole file (empty files map to size 0, data nullptr).
class MappedFile {
 public:
  /// Errc::not_found when missing, Errc::permission / io_error when unreadable,
  /// Errc::invalid_argument for anything but a regular file (a FIFO, device, socket or folder
  /// is refused without blocking: see detail::open_regular_file).
  explicit MappedFile(const std::filesystem::path& path);
  /// Bytes already in memory, read through the same interface (a request's inline file);
  /// `name` stands for the file in messages.
  static std::shared_ptr<MappedFile> in_memory(std::string bytes, std::filesystem::path name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  const std::filesystem::path& path() const noexcept { return path_; }
  /// Hint that the mapping will be read once front to back (madvise SEQUENTIAL + WILLNEED).
  void advise_sequential() const noexcept;

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  std::string owned_;  ///< in_memory(): the bytes (nothing mapped)
};

/// A .npy array (format versions 1.0, 2.0, 3.0), memory-mapped.
struct NpyArray {
  std::shared_ptr<MappedFile> file;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::size_t data_offset = 0;  ///< byte offset of the data in the file
  bool big_endian = false;      ///< the file stores big-endian items (converted in `converted`)
  bool fortran_order = false;   ///< the file stores the array in Fortran order (converted)
  /// For big-endian or Fortran-order files: a private little-endian C-order copy of the data,
  /// which view() shows; null when the mapping is used as it is.
  std::shared_ptr<std::vector<unsigned char>> converted;

  /// A view of the data: into the mapping, or into `converted`. Read-only memory: do not
  /// write through it.
  TensorView view() const;
};

/// Read a .npy file. f64, f32, f16, i64, i32, i16, i8, u8 and bool arrays are accepted, of
/// either byte order and in C or Fortran order: big-endian and Fortran-order data are
/// converted on load to a private little-endian C-order copy (NpyArray::converted; no
/// larger than the file). Object, string and structured arrays, unsigned types wider than a
/// byte, a header longer than kNpyMaxHeader, more than kMaxTensorRank dimensions and a data
/// size that does not match the header are refused (Errc::corrupt_input / unsupported,
/// naming the file and the problem). FIFOs and devices are refused without blocking.
NpyArray read_npy(const std::filesystem::path& path);

/// The .npy 1.0 header (magic, length, dict, padding to 64 bytes) of a C-order array; the
/// data follows it. Errc::unsupported for dtypes numpy has not (bf16).
std::string npy_header(DType dtype, std::span<const int64_t> shape);

/// Row identities for a dataset array, from a .npy of integers of shape (N,) or (N, 1):
/// int16, uint16, int32, uint32, int64 and uint64 (values up to 2^63 - 1), either byte order,
/// converted to int64. Floating, bool and 8-bit arrays are refused (Errc::invalid_argument
/// saying what row ids must be), as is a count other than `expected_rows` (when >= 0).
std::vector<int64_t> read_row_ids(const std::filesystem::path& path, int64_t expected_rows = -1);

/// The .npy bytes of a contiguous host view (header + data). bf16 has no numpy dtype and
/// is refused (Errc::unsupported).
std::string npy_bytes(const TensorView& v);

/// Write a contiguous host view as .npy, atomically; refuses to replace an existing file
/// unless `overwrite`.
void write_npy(const std::filesystem::path& path, const TensorView& v, bool overwrite = false);


// ---- safetensors ---------------------------------------------------------------------
//
// Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian header length
// N, N bytes of JSON, then the data region. The JSON maps tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the data region,
// plus an optional "__metadata__" object of string values.

/// The dtype of a safetensors name ("F32", "BF16", "F8_E4M3", "BOOL", ...); nullopt for
/// names didmark does not carry (U16, U32, U64, F8_E8M0, F4, F6_*, C64, and unknown ones).
std::optional<DType> safetensors_dtype(std::string_view name) noexcept;
/// The safetensors name of a dtype ("F32", ...).
std::string_view safetensors_dtype_name(DType t) noexcept;

/// One tensor entry of a safetensors header.
struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  ///< byte offset in the data region
  uint64_t end = 0;    ///< one past the last byte
  uint64_t nbytes() const noexcept { return end - begin; }
};

/// A validated safetensors header.
struct SafetensorsHeader {
  /// Tensors in data order (ascending offsets), which is also file order.
  std::vector<SafetensorsTensorInfo> tensors;
  /// "__metadata__" entries in the order the file lists them.
  std::vector<std::pair<std::string, std::string>> metadata;
  uint64_t header_length = 0;  ///< N: bytes of JSON (including any padding)

  /// Offset of the data region in the file: 8 + N.
  uint64_t data_offset() const noexcept { return 8 + header_length; }
  /// Sum of the tensors' byte counts (= file size - data_offset()).
  uint64_t data_bytes() const noexcept { return tensors.empty() ? 0 : tensors.back().end; }
};

/// Parse and validate the header of a whole safetensors file held in `file` (normally a
/// mapping). The checks are those of the reference reader, with overflow-checked arithmetic:
///  * at least 8 bytes; N <= kSafetensorsMaxHeader; 8 + N <= file size;
///  * the header is UTF-8 JSON and an object ('{' first), nested at most
///    kSafetensorsMaxDepth deep, with at most kSafetensorsMaxTensors tensors; no duplicate
///    names (found by sorting, O(n log n)); no key twice inside one tensor entry;
///  * `__metadata__`, when present, maps strings to strings (at most
///    kSafetensorsMaxMetadataEntries of them, no key twice);
///  * each tensor has a known dtype, a shape of at most kMaxTensorRank non-negative integers
///    below 2^63 and exactly two
///    data_offsets with begin <= end <= data size;
///  * sorted by offset, tensors start at 0 and each begins where the previous one ends (no
///    gaps, no overlaps), and end - begin = product(shape) x dtype size;
///  * the tensors cover the data region exactly (their total is the file size - 8 - N).
/// Failures throw Errc::corrupt_input (Errc::unsupported for dtypes didmark cannot carry),
/// naming `file_name` and the problem; names from the file are quoted with control
/// characters escaped and bounded in length, and numbers made of the file's own bytes (the
/// header length) are never echoed. The JSON is parsed without recursion and without
/// building a document tree: time and memory are linear in the header (plus a sort).
SafetensorsHeader parse_safetensors_header(std::span<const unsigned char> file, std::string_view file_name);

/// A safetensors file, memory-mapped read-only and validated. Views point into the mapping:
/// nothing is copied, and a file larger than RAM is paged in as it is read.
class SafetensorsFile {
 public:
  /// Map and validate; errors name the file (Errc::not_found, io_error, corrupt_input).
  explicit SafetensorsFile(const std::filesystem::path& path);
  /// Validate a file already mapped or held in memory (MappedFile::in_memory).
  explicit SafetensorsFile(std::shared_ptr<MappedFile> file);

  const std::filesystem::path& path() const noexcept { return file_->path(); }
  const SafetensorsHeader& header() const noexcept { return header_; }
  const std::shared_ptr<MappedFile>& mapping() const noexcept { return file_; }
  /// The header bytes as stored: the 8-byte length and the JSON (data_offset() bytes).
  std::span<const unsigned char> header_bytes() const noexcept;
  /// The view of one tensor of header().tensors. Read-only memory: never write through it.
  /// The pointer is not necessarily aligned for the dtype (the format does not promise it).
  TensorView view(const SafetensorsTensorInfo& t) const;
  /// Every tensor as a named view, in data order.
  std::vector<NamedTensor> tensors() const;
  /// Size of the file in bytes.
  uint64_t size() const noexcept { return file_->size(); }

 private:
  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

/// One tensor to write: its name, dtype and shape.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
};

/// Writes a safetensors file through a memory mapping of a temporary file beside the
/// target, renamed into place by commit() (see AtomicFile): a failed, abandoned or killed
/// write leaves no target behind. Files larger than RAM are written back by the kernel as
/// the mapping fills.
class SafetensorsWriter {
 public:
  /// A new file laid out like the reference writer: tensors sorted by dtype size (largest
  /// first, stable), the JSON header padded with spaces to a multiple of 8 bytes so every
  /// tensor is aligned for its dtype. Tensor contents start as zeros.
  SafetensorsWriter(const std::filesystem::path& target, std::vector<SafetensorsEntry> entries,
                    std::vector<std::pair<std::string, std::string>> metadata, bool overwrite = false);
  /// A file with exactly the layout of `like`: its header bytes are copied verbatim (names,
  /// offsets, `__metadata__` and padding unchanged). Tensor contents start as zeros.
  SafetensorsWriter(const std::filesystem::path& target, const SafetensorsFile& like, bool overwrite = false);
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  const SafetensorsHeader& header() const noexcept;
  /// Writable view of one tensor (possibly unaligned, as for SafetensorsFile::view).
  TensorView view(const SafetensorsTensorInfo& t) const;
  /// Every tensor as a writable named view, in data order.
  std::vector<NamedTensor> tensors() const;
  /// Flush the mapping, fsync, and rename into place. Call once.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Write named contiguous host views as a new safetensors file (see SafetensorsWriter).
void write_safetensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata = {},
                       bool overwrite = false);

/// A sharded checkpoint's index ("model.safetensors.index.json", as model hubs publish
/// them): {"metadata": {...}, "weight_map": {tensor name: shard file name}}.
struct SafetensorsIndex {
  std::filesystem::path path;  ///< the index file
  /// Shard file names (relative to the index's folder), in order of first appearance.
  std::vector<std::string> shards;
  /// weight_map entries in file order.
  std::vector<std::pair<std::string, std::string>> weight_map;
  /// The folder of the index, where the shards are.
  std::filesystem::path folder() const;
};

/// Read and validate an index: a JSON object with a "weight_map" object of strings; shard
/// names must be plain file names in the index's folder (no separators, no "..").
/// Errc::corrupt_input naming the file and the problem. Does not open the shards.
SafetensorsIndex read_safetensors_index(const std::filesystem::path& path);

/// The JSON text of an index in the layout model hubs use: {"metadata": {"total_size": N},
/// "weight_map": {...}} with the weight map sorted by tensor name.
std::string safetensors_index_json(const std::vector<std::pair<std::string, std::string>>& weight_map,
                                   uint64_t total_size);

// ---- PyTorch files (LibTorch) ------------------------------------------------------------

/// True when this build has the LibTorch adapter (CMake DIDMARK_TORCH, libtorch-dev).
bool torch_available() noexcept;

/// A `torch.save` file (zip container with data.pkl, as written by PyTorch >= 1.6 and by
/// LibTorch's pickle_save) loaded into memory through LibTorch. Tensors are found anywhere
/// in nested dicts, lists and tuples and named by their path of keys joined with '.', so a
/// plain state dict gives the usual names ("model.layers.0.mlp.up_proj.weight"), and
/// {"state_dict": sd} gives "state_dict.model.layers...". Python's OrderedDict state dicts
/// (with their `_metadata`) load as plain dicts; the `_metadata` versions are dropped.
///
/// Every other value (numbers, strings, nested containers) is kept and written back.
/// LibTorch lives in the plugin libdidmark_torch.so, loaded on first use (beside the
/// executable, or $DIDMARK_TORCH_PLUGIN). Without it every entry point throws
/// Errc::unsupported saying how to get it.
class TorchCheckpoint {
 public:
  /// Load a file. The whole checkpoint is read into memory once (LibTorch has no mapping
  /// reader); each storage is read straight into its tensor.
  static TorchCheckpoint load(const std::filesystem::path& path);

  TorchCheckpoint(TorchCheckpoint&&) noexcept;
  TorchCheckpoint& operator=(TorchCheckpoint&&) noexcept;
  ~TorchCheckpoint();

  /// Contiguous host views of the tensors didmark can carry (f64, f32, f16, bf16 and the
  /// integer and bool types), writable, in the order the file lists them. Tensors that
  /// share memory with an earlier one (tied weights) appear only once, under the first name.
  const std::vector<NamedTensor>& tensors() const noexcept;
  /// Tensors left out of tensors(), each with the reason (shared storage, dtype).
  const std::vector<std::pair<std::string, std::string>>& withheld() const noexcept;
  /// Write the checkpoint (with any changes made through tensors()) atomically in the same
  /// container format. Refuses to replace an existing file unless `overwrite`.
  void save(const std::filesystem::path& path, bool overwrite = false) const;

  /// Write a plain {name: tensor} dict of contiguous host views as a torch.save file.
  static void save_tensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                           bool overwrite = false);

 private:
  struct Impl;
  explicit TorchCheckpoint(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// One entry of a list of input files (collect_inputs).
struct InputFile {
  std::filesystem::path path;
  std::string error_code;     ///< errc name when the path cannot be used at all; empty when it can
  std::string error_message;
};

/// Decides about one file for collect_inputs: throws didmark::Error when the file is of no known
/// format; otherwise returns the files it stands for (the shards of a sharded index), which are
/// then listed only through it.
using InputClassifier = std::function<std::vector<std::filesystem::path>(const std::filesystem::path& file)>;

/// The files named by `paths`, in a stable order, the way `didmark scan` and the server list
/// them: folders walked recursively (sorted, hidden entries skipped, files the classifier
/// refuses left out); an explicit file the classifier refuses, a missing path and a folder that
/// cannot be listed kept with their error, so that a scan reports them and goes on.
std::vector<InputFile> collect_inputs(std::span<const std::string> paths, const InputClassifier& classify);

}  // namespace didmark
