#pragma once
/// \file checkpoint.hpp
/// Watermarks in checkpoint files, end to end: open any supported format, embed a mark into
/// a new file, verify one or many owners' marks reading the file once.
///
/// Formats:
///  * safetensors: one file, memory-mapped, zero copies; the output has the input's header
///    bytes verbatim (names, offsets, `__metadata__`), untouched tensors byte-identical;
///  * sharded safetensors: a `*.safetensors.index.json` and its shards; the output folder
///    receives the same index and shard names;
///  * PyTorch `torch.save` files (.pt, .pth, .bin) through LibTorch (when built);
///  * .npy: a single array, named "array".
///
/// Example:
/// \code
///   auto fmt = didmark::guess_checkpoint_format("model.safetensors").value();
///   auto r = didmark::embed_checkpoint("model.safetensors", "marked.safetensors", fmt, key, payload, {}, {});
///   auto v = didmark::verify_checkpoint("marked.safetensors", fmt, claims, {});
/// \endcode

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

enum class CheckpointFormat : uint8_t {
  safetensors,          ///< one .safetensors file
  safetensors_sharded,  ///< an index .json (or a folder holding one) and its shards
  torch,                ///< a torch.save zip file, through LibTorch
  npy,                  ///< one .npy array
};

/// "safetensors", "safetensors-sharded", "pt", "npy".
std::string_view checkpoint_format_name(CheckpointFormat f) noexcept;

/// The format a path's name (or, for a folder, its contents) says: ".safetensors",
/// ".safetensors.index.json" or a folder with exactly one such index, ".pt"/".pth"/".bin",
/// ".npy". nullopt when nothing fits.
std::optional<CheckpointFormat> guess_checkpoint_format(const std::filesystem::path& path);

/// For a sharded checkpoint given as a folder: the index file in it (Errc::not_found when
/// there is none, Errc::invalid_argument when there are several). Other paths unchanged.
std::filesystem::path resolve_checkpoint_path(const std::filesystem::path& path, CheckpointFormat format);

/// A checkpoint opened read-only.
class CheckpointReader {
 public:
  /// Open and validate (header checks, shard consistency). Errors name the file.
  static CheckpointReader open(const std::filesystem::path& path, CheckpointFormat format);
  /// A safetensors file held in memory (e.g. a request's inline bytes); `name` stands for it
  /// in messages. Validated like a file.
  static CheckpointReader from_safetensors_bytes(std::string bytes, std::string_view name);

  CheckpointReader(CheckpointReader&&) noexcept;
  CheckpointReader& operator=(CheckpointReader&&) noexcept;
  ~CheckpointReader();

  CheckpointFormat format() const noexcept;
  /// Every tensor as an aligned, contiguous host view: into the file mapping where the file
  /// allows it, else into a private aligned copy (safetensors tensors at offsets that do not
  /// suit their dtype). Read-only: never write through these views.
  std::span<const NamedTensor> tensors() const noexcept;
  /// Tensors the format holds but that are not in tensors(), with the reason.
  const std::vector<std::pair<std::string, std::string>>& withheld() const noexcept;
  /// The files read (the index first for a sharded checkpoint).
  const std::vector<std::filesystem::path>& files() const noexcept;
  /// Total bytes of those files.
  uint64_t bytes() const noexcept;
  /// Hint the kernel to read ahead: the mapped files will be read once, front to back.
  void advise_sequential() const noexcept;

 private:
  struct Impl;
  explicit CheckpointReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct CheckpointWriteOptions {
  /// Replace an existing output (never the input itself: that is always refused).
  bool overwrite = false;
  /// Write a mark that could not be proved: spread spectrum whose expected z (strength x
  /// sqrt(elements marked)) is below the threshold of the p-value asked for. Refused by
  /// default, with the strength that would reach it.
  bool allow_weak = false;
};

struct CheckpointEmbedReport {
  EmbedReport report;          ///< per tensor passed to the watermark
  /// Tensors the format holds but the watermark never saw (CheckpointReader::withheld);
  /// they are written back unchanged.
  std::vector<std::pair<std::string, std::string>> withheld;
  CheckpointFormat format = CheckpointFormat::safetensors;
  std::vector<std::filesystem::path> outputs;  ///< files written (the index last)
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
};

/// Mark `input` into a new `output` with (key, payload). Each output file goes through a
/// temporary file in its target folder, fsync and rename, so a crash leaves no partial
/// output. The input is read once through its mapping and never written. Refused:
///  * an output that is the input (Errc::invalid_argument), or an existing output without
///    `write.overwrite`;
///  * a checkpoint with no tensor the policy makes eligible (Errc::invalid_argument);
///  * a result outside the fidelity budget (report.within_budget false): nothing is
///    written, Errc::invalid_argument naming the worst tensor;
///  * a spread-spectrum mark too weak to prove at options.p_threshold (unless
///    write.allow_weak): Errc::invalid_argument with the strength that would do.
/// For sharded checkpoints `output` is a folder (created when missing) or an index path in
/// it; the shards are written first and the index last.
CheckpointEmbedReport embed_checkpoint(const std::filesystem::path& input, const std::filesystem::path& output,
                                       CheckpointFormat format, const WatermarkKey& key, const Payload& payload,
                                       const WatermarkOptions& options, const CheckpointWriteOptions& write,
                                       Backend& backend = default_backend());

/// verify_many over a checkpoint: every tensor is read once for all claims.
std::vector<VerifyReport> verify_checkpoint(const std::filesystem::path& input, CheckpointFormat format,
                                            std::span<const Claim> claims, const WatermarkOptions& options,
                                            Backend& backend = default_backend());
/// The same over an open checkpoint (with the eligibility its format implies).
std::vector<VerifyReport> verify_checkpoint(const CheckpointReader& reader, std::span<const Claim> claims,
                                            const WatermarkOptions& options, Backend& backend = default_backend());

/// A synthetic transformer-shaped checkpoint for demos, tests and benchmarks.
struct SyntheticCheckpointOptions {
  int64_t params = 50'000'000;  ///< approximate parameter count (at least one layer)
  int shards = 1;               ///< > 1: a sharded safetensors checkpoint in a folder
  DType dtype = DType::f32;     ///< f32, f16 or bf16 for the weights
  int64_t hidden = 1024;        ///< model width; layers follow from params
  uint64_t seed = 1;
  bool overwrite = false;
};

struct SyntheticCheckpointReport {
  std::vector<std::filesystem::path> files;  ///< written (the index last when sharded)
  int64_t params = 0;
  int tensors = 0;
  uint64_t bytes = 0;
};

/// Write a synthetic checkpoint: an embedding table, per layer attention and MLP matrices,
/// biases and norms (Gaussian weights, deterministic in `seed`), and an i64 buffer, as
/// safetensors at `path` (a file, or for shards > 1 a folder that receives
/// model-0000i-of-0000K.safetensors and model.safetensors.index.json). Tensors are
/// generated straight into the output mapping, so the size is not bounded by RAM.
SyntheticCheckpointReport write_synthetic_checkpoint(const std::filesystem::path& path,
                                                     const SyntheticCheckpointOptions& options);

}  // namespace didmark
