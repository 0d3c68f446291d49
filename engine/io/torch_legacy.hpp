#pragma once
// torch.save's legacy format (_use_new_zipfile_serialization=False, and every file before
// PyTorch 1.6): five pickles in a row (magic number, protocol version 1001, system info,
// the object, the sorted storage keys) and then each storage as an 8-byte element count and
// its raw bytes. Pure bytes, no LibTorch: parsed here into what the zip format holds (the
// object's pickle and one record per storage), so the rest of the reader is shared.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>

namespace didmark::detail {

/// True when `file` starts with the legacy format's magic-number pickle.
bool is_legacy_torch(std::span<const unsigned char> file) noexcept;

struct LegacyTorch {
  /// The object's pickle with each persistent id cut to the zip format's five fields
  /// ('storage', torch.<T>Storage, key, location, numel): the sixth, a None view_metadata,
  /// is dropped.
  std::string pickle;
  /// Storage key -> its bytes inside `file` (numel x item size).
  std::map<std::string, std::span<const unsigned char>, std::less<>> records;
};

/// Parse a legacy torch.save file held in memory. Errc::corrupt_input naming `name` for a
/// malformed or truncated stream, a storage whose count disagrees with the object's pickle,
/// or bytes after the last storage; Errc::unsupported for a big-endian file or a storage
/// view (view_metadata other than None, written only by PyTorch < 0.4).
LegacyTorch read_legacy_torch(std::span<const unsigned char> file, std::string_view name);

}  // namespace didmark::detail
