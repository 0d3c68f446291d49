#pragma once
/// \file limits.hpp
/// The bounds every reader applies to files it did not write (uploads, client paths, files a
/// stranger sent). Each reader checks them before it allocates or recurses, so that no input
/// can crash, hang or exhaust the process; going over one is a clear error naming the file,
/// the limit and this constant (docs/security.md lists them with what each reader refuses).
///
/// They are far above what real checkpoints, arrays and tables need (the figures in the
/// comments say by how much), and low enough that the worst input within them costs at most
/// a few hundred MB and a few seconds.

#include <cstddef>
#include <cstdint>

namespace didmark {

// ---- shared ------------------------------------------------------------------------------

/// Most dimensions of a tensor or array (safetensors shapes, .npy shapes, pickled sizes and
/// strides). NumPy allows 64; models use at most 5 or 6.
inline constexpr std::size_t kMaxTensorRank = 64;

// ---- safetensors -------------------------------------------------------------------------

/// Largest JSON header (bytes), as in the reference implementation.
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;
/// Deepest nesting of JSON arrays and objects in a header. The format needs 3 (header object,
/// tensor entry, shape array); values of unknown keys are skipped, but no deeper than this.
/// The parser counts depth itself and never recurses over the input.
inline constexpr std::size_t kSafetensorsMaxDepth = 64;
/// Most tensors in one header (the largest public checkpoints hold ~10^4 per shard).
inline constexpr std::size_t kSafetensorsMaxTensors = std::size_t{1} << 20;
/// Most `__metadata__` entries (files in the wild carry a handful).
inline constexpr std::size_t kSafetensorsMaxMetadataEntries = std::size_t{1} << 16;

// ---- .npy --------------------------------------------------------------------------------

/// Largest .npy header dict (bytes). NumPy's own reader refuses more than 10000 by default;
/// a header of 64 dimensions fits in 2 kB.
inline constexpr std::size_t kNpyMaxHeader = std::size_t{1} << 16;

// ---- PyTorch files (zip + pickle) ----------------------------------------------------------

/// Most entries in a torch.save zip (one per storage plus ~6; 10^5 storages is a very large
/// state dict).
inline constexpr std::size_t kTorchMaxZipEntries = std::size_t{1} << 20;
/// Largest data.pkl (bytes): a state dict costs ~200 bytes of pickle per tensor.
inline constexpr std::size_t kPickleMaxBytes = std::size_t{64} << 20;
/// Most values (every string, number, container, tensor) a pickle may create; also the most
/// elements all its containers hold together and the most values on its stack (a memo GET
/// pushes without creating): each is a 16-byte reference in LibTorch, so at most 128 MB.
inline constexpr std::size_t kPickleMaxValues = std::size_t{1} << 23;
/// Most elements in one list, tuple or dict (counting a dict's keys and values).
inline constexpr std::size_t kPickleMaxContainer = std::size_t{1} << 22;
/// Deepest nesting of containers (a state dict nests 2 to 6 deep).
inline constexpr std::size_t kPickleMaxDepth = 256;
/// Most values reached when the object is walked as a tree (a value shared by memo counts
/// once per place it appears): bounds the work of naming every tensor by its path.
inline constexpr std::size_t kPickleMaxTreeValues = std::size_t{1} << 24;
/// Most bytes of names built while walking the object (a tensor is named by its path of
/// keys, "model.layers.0.weight"): a long key repeated down a deep path cannot cost more.
inline constexpr uint64_t kPickleMaxPathBytes = uint64_t{256} << 20;
/// Tensors may view their storages more than once (tied weights share one), but all tensors
/// together may hold at most this many times the bytes of all storages (plus 1 MiB): a
/// stride-0 or overlapping view cannot turn a small file into gigabytes once made contiguous.
inline constexpr uint64_t kTorchMaxViewFactor = 4;

// ---- CSV ---------------------------------------------------------------------------------

/// Most columns in a CSV header (spreadsheets stop at 16384).
inline constexpr std::size_t kCsvMaxColumns = std::size_t{1} << 16;
/// Longest record (bytes, one line, or several when a quoted field holds line breaks).
inline constexpr std::size_t kCsvMaxRecordBytes = std::size_t{64} << 20;

// ---- tensor selection --------------------------------------------------------------------

/// Longest tensor-selection pattern (--tensors, skip patterns), in bytes.
inline constexpr std::size_t kMaxTensorPatternBytes = 4096;
/// Longest tensor name a pattern is matched against; longer names are never eligible.
inline constexpr std::size_t kMaxTensorNameBytes = std::size_t{1} << 16;

}  // namespace didmark
