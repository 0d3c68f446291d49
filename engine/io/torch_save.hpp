#pragma once
// A torch.save writer of our own: the zip archive and the protocol-2 pickle that current
// PyTorch writes, from a small value tree. Pure bytes, no LibTorch, so .pt/.bin outputs need
// no plugin and open with torch.load(path) under its default weights_only=True: the only
// globals emitted are torch._utils._rebuild_tensor_v2, torch.<T>Storage and
// collections.OrderedDict, all on the weights-only unpickler's allow list (LibTorch's own
// writer adds torch.jit._pickle.restore_type_tag and build_*list, which it refuses).
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark::detail {

/// One storage of the archive: `numel` elements of `item_size` bytes at `data` (host
/// memory, alive while the file is written), pickled as torch.<type_name>. Written as the
/// record data/<index>.
struct TorchStorage {
  std::string type_name;  ///< "FloatStorage", "BFloat16Storage", ...
  std::size_t item_size = 0;
  const void* data = nullptr;
  uint64_t numel = 0;
};

/// The storage torch.save writes for `numel` elements of `dtype`; Errc::unsupported for the
/// dtypes that have no torch storage class (f8).
TorchStorage torch_storage(DType dtype, const void* data, uint64_t numel);

/// A value of the pickled object. Dicts hold keys and values alternately in `items`.
struct TorchValue {
  enum class Kind { none, boolean, integer, real, string, tuple, list, dict, ordered_dict, tensor };
  Kind kind = Kind::none;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string string;
  std::vector<TorchValue> items;
  // Tensors: a view of storages[storage], as torch._utils._rebuild_tensor_v2 takes it.
  std::size_t storage = 0;
  int64_t offset = 0;  ///< in elements
  std::vector<int64_t> sizes, strides;
  bool requires_grad = false;

  static TorchValue none_value() { return {}; }
  static TorchValue of(bool b);
  static TorchValue of(int64_t i);
  static TorchValue of(double d);
  static TorchValue of(std::string s);
  static TorchValue container(Kind kind, std::vector<TorchValue> items = {});
  /// A contiguous tensor over the whole of storages[storage].
  static TorchValue tensor(std::size_t storage, std::vector<int64_t> sizes);
};

/// The pickle (data.pkl) of `root`. Errc::invalid_argument for a tensor whose storage index
/// or extent is out of range, or for nesting deeper than 1000.
std::string torch_pickle(const TorchValue& root, std::span<const TorchStorage> storages);

/// Write `root` as a torch.save zip archive (records <archive>/data.pkl, byteorder,
/// data/<i>, version; every record's data 64-byte aligned as PyTorch writes it; ZIP64 where
/// sizes need it; CRC-32 of every record), atomically.
void write_torch_file(const std::filesystem::path& path, const TorchValue& root,
                      std::span<const TorchStorage> storages, bool overwrite);

/// Write {name: tensor} as torch.save(state_dict) does (an OrderedDict; one storage per
/// tensor). The views must be contiguous host views.
void write_torch_state_dict(const std::filesystem::path& path, std::span<const NamedTensor> tensors, bool overwrite);

/// CRC-32 (ISO-HDLC, as zip uses) of `n` bytes, continuing from `crc` (0 to start).
uint32_t crc32(const void* data, std::size_t n, uint32_t crc = 0) noexcept;

}  // namespace didmark::detail
