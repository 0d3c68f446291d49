#pragma once
/// \file alignment.hpp
/// Alignment sketches: ownership that survives structural attacks.
///
/// A weight mark is tied to element positions. A thief can move the positions for free without
/// changing what the model computes: permute the hidden (residual) dimension, the FFN neurons
/// or the attention heads, rescale ReLU neurons, flip signs, add dummy neurons, store a matrix
/// transposed, rename tensors. Each of these takes the blind test to noise. An alignment sketch,
/// recorded when the model is marked, lets a verifier put the positions back without the
/// original weights and without the key:
///
///  * The model's axes are grouped into *dimensions* (the hidden size shared by every tensor
///    that touches the residual stream, each layer's FFN neurons, each layer's attention
///    space...) from the tensor names (BERT, GPT-2 and Llama naming). Dimensions fixed by the
///    model's inputs or outputs (vocabulary, positions) are *anchored*: they cannot move.
///  * For every other dimension the sketch keeps a *signature*: the values of one source
///    tensor at a few sampled indices of its other axis (S slices, int8 per index), plus the
///    unmarked vectors along that dimension (norm weights, biases). Once the other axis is
///    aligned, matching the suspect's signature rows against the sketch's recovers the
///    permutation, the sign and the scale of every index; indices with no good match
///    (dummies, removed neurons) are dropped.
///  * Dimensions are recovered in the sketch's order, starting from anchored ones, so the
///    hidden dimension is found once (from the token embedding and the norm weights) and
///    propagated to every tensor that has it.
///
/// Honest p-values. The matching reads the sketch and the suspect, never the key. The sketch
/// holds marked values only in the sampled slices of each source tensor; those slices are
/// left out of the test (set to zero in the realigned tensor). Every other element's carrier
/// is independent of everything the realignment used, so under "not marked with this key" the
/// realigned statistic keeps its Hoeffding bound (tests/alignment/test_null.cpp).
///
/// Arrays (N x D, row-keyed): the sketch holds a key-independent sample of marked rows
/// (bottom-m by a public hash of the row id). Orthogonal Procrustes on the sampled rows that a
/// suspect still has recovers a rotation or signed permutation of the D features; the
/// sampled rows are left out of the test.
///
/// Example:
/// \code
///   auto sk = didmark::make_sketch(marked_tensors, owner_did, {});
///   sk.write("model.sketch");
///   ...
///   auto sketch = didmark::AlignmentSketch::read("model.sketch");
///   didmark::AlignmentReport how;
///   auto v = didmark::verify_realigned(suspect_tensors, sketch, claims, options, backend, &how);
///   if (v[0].detected && how.realigned) ...
/// \endcode

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/dataset.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

enum class SketchKind : uint8_t { checkpoint, array };
std::string_view sketch_kind_name(SketchKind k) noexcept;

/// Version of the sketch file format this build writes and reads.
inline constexpr uint32_t kSketchVersion = 1;
/// Sampled slices per dimension signature unless SketchOptions::samples says otherwise.
inline constexpr int kDefaultSketchSamples = 32;
/// Largest signature width a sketch file may hold.
inline constexpr int kMaxSketchSamples = 1024;

/// One dimension of the model: a set of tensor axes that a function-preserving transform
/// must permute together (e.g. the rows of an FFN's up projection and the columns of its down
/// projection).
struct SketchDim {
  std::string label;      ///< "hidden", "layers.3.ffn", "vocab", ...
  int64_t size = 0;       ///< indices in the marked model
  bool anchored = false;  ///< order fixed by the model's inputs/outputs: never moves
  /// The tensor whose sampled slices make the signature (index into AlignmentSketch::tensors),
  /// or -1 when the signature is made of vectors alone (or there is none).
  int source = -1;
  int source_axis = 0;            ///< the source's axis that lies in this dimension
  std::vector<int64_t> samples;   ///< sampled indices along the source's other axis (original order)
  std::vector<int8_t> signature;  ///< size x samples.size(): source values, row i quantized by scales[i]
  std::vector<float> scales;      ///< size: value = signature * scale / 127
  /// Unmarked rank-1 tensors along this dimension (norm weights, biases) whose values are kept
  /// (indices into AlignmentSketch::tensors), and their values (size x vectors.size()).
  std::vector<int> vectors;
  std::vector<float> vector_values;

  int width() const noexcept { return static_cast<int>(samples.size() + vectors.size()); }
  /// True when a verifier can recover this dimension (anchored, or a signature exists).
  bool recoverable() const noexcept { return anchored || width() > 0; }
};

/// One tensor of the marked model as the sketch knows it.
struct SketchTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;   ///< as stored; rank >= 2 is seen as [shape[0], rest]
  std::array<int, 2> dims{-1, -1};  ///< dimension of each axis (index into dims), -1: none
  /// Storage convention: the output axis (PyTorch Linear [out, in]: 0; GPT-2 Conv1D: 1).
  int out_axis = 0;
  /// Per axis, how a thief's per-index rescaling by a (ReLU-family neurons, query/key pairs)
  /// or sign flip reaches this tensor: +1 the slice is multiplied by a, -1 divided by a, 0 left
  /// alone (a gate projection: SiLU allows neither).
  std::array<int8_t, 2> roles{1, -1};
  bool marked = false;  ///< eligible under the watermark policy the sketch was made with
  float rms = 0;        ///< sqrt(mean w^2)
  /// Descriptors for matching by content when names do not match: 16 quantiles of the
  /// per-row RMS and 16 of the per-column RMS, relative to `rms` (permutation-invariant).
  std::vector<float> row_quantiles, col_quantiles;
  /// A convolution followed by a batch norm: per output channel the norm's signed gain
  /// weight / sqrt(running_var + 1e-5) (empty otherwise). A thief may scale a channel's rows by
  /// s*a (s = +-1) and fold it into the norm; the gain then reads s/a, so comparing the
  /// suspect's gain with this one undoes the flip and the scale without the key.
  std::vector<float> bn_gain;

  int64_t rows() const noexcept { return shape.empty() ? 1 : shape[0]; }
  int64_t cols() const noexcept;
  int64_t numel() const noexcept;
  /// Matrix columns per index of axis 1: a convolution [out, in, kh, kw] has kh*kw columns per
  /// input channel, so a channel permutation moves them as a block (1 for rank <= 2).
  int64_t group() const noexcept;
};

/// Array sketch: a key-independent sample of marked rows.
struct ArraySketch {
  int64_t rows = 0, dim = 0;     ///< of the marked array
  std::vector<int64_t> ids;      ///< sampled row ids (bottom-m by sketch_row_hash)
  std::vector<int8_t> values;    ///< ids.size() x dim, row r quantized by scales[r]
  std::vector<float> scales;
};

struct AlignmentSketch {
  SketchKind kind = SketchKind::checkpoint;
  std::string did;               ///< the owner whose mark the sketched model carries
  std::string scheme;            ///< watermark scheme name ("spread-spectrum", "stdm")
  double strength = 0;
  std::string architecture;      ///< "bert", "gpt2", "llama", "generic"; "array" for arrays
  int samples = 0;               ///< signature width S
  uint64_t model_bytes = 0;      ///< bytes of the sketched model's tensors
  bool all = false;              ///< every recoverable dimension sketched (--sketch-all)
  std::vector<SketchTensor> tensors;
  std::vector<SketchDim> dims;   ///< in recovery order
  ArraySketch array;

  /// Read and validate a sketch file (magic, version, checksum, bounded sizes, internal
  /// consistency) before anything is allocated from its numbers. Errc::corrupt_input (or
  /// unsupported for a newer version) naming the file.
  static AlignmentSketch read(const std::filesystem::path& path);
  /// The same from bytes; `source` names them in errors.
  static AlignmentSketch parse(std::span<const unsigned char> bytes, std::string_view source);
  /// The file's bytes (deterministic for a given sketch).
  std::string serialize() const;
  /// Write atomically (temporary file, fsync, rename); refuses an existing file unless
  /// `overwrite`.
  void write(const std::filesystem::path& path, bool overwrite = false) const;
  /// Size of serialize(), and its share of the model (bytes / model_bytes).
  uint64_t bytes() const;
  double fraction() const;
  /// Index of the tensor named `name`, or -1.
  int find_tensor(std::string_view name) const noexcept;
};

struct SketchOptions {
  /// Signature width S (sampled slices per dimension). 0: kDefaultSketchSamples, lowered when
  /// needed to stay within max_fraction.
  int samples = 0;
  /// Largest sketch as a share of the model's bytes (when samples = 0).
  double max_fraction = 0.01;
  /// Sketch every recoverable dimension. Otherwise just enough layers for target_z.
  bool all = false;
  /// The expected z after realignment (strength * sqrt(realignable marked elements, held-out
  /// slices excluded)) that the default subset must reach: 12 leaves room for the host's own
  /// +-1 and a 10% loss to quantization or pruning above z = 10.
  double target_z = 12;
  /// The options the mark was embedded with: which tensors are marked, at what strength.
  WatermarkOptions watermark;
  /// Arrays: rows kept (0: the largest of 2.5 D, 1% of the rows and 64, capped at the rows).
  /// A suspect needs D + 8 of them to be realigned, so this bounds the smallest subset that
  /// can still be realigned (about 40% of a 6,000-row array of 384 features; 1% of a large one).
  int64_t array_rows = 0;
};

/// Sketch a marked model: reads at most 1,024 spread rows of each tensor (descriptors) and the
/// sampled slices of each dimension's source.
/// Throws Errc::invalid_argument when no tensor is marked under options.watermark.
AlignmentSketch make_sketch(std::span<const NamedTensor> marked, std::string did, const SketchOptions& options = {},
                            Backend& backend = default_backend());

/// Sketch a marked N x D array whose rows have the identities `ids` (empty: row index).
AlignmentSketch make_array_sketch(const TensorView& marked, std::span<const int64_t> ids, std::string did,
                                  const SketchOptions& options = {}, Backend& backend = default_backend());

/// The public, key-independent hash that picks an array's sampled rows.
uint64_t sketch_row_hash(int64_t id) noexcept;

/// What realignment found.
struct AlignmentReport {
  /// The suspect was transformed and was put back (some index moved, a sign or scale was
  /// undone, a tensor was renamed or transposed, something was dropped). False when it was
  /// already in the sketch's layout, or when nothing could be matched.
  bool realigned = false;
  /// Marked tensors paired with the sketch's whose dimensions were recovered: realigned (and
  /// tested) when `realigned`, found already in place otherwise.
  int tensors_matched = 0;
  /// Slices (rows or columns) of the tested tensors now at another position.
  int64_t rows_moved = 0;
  /// Slices left out because they had no match: original slices the suspect lacks, and the
  /// suspect's extra (dummy) slices.
  int64_t rows_dropped = 0;
  /// Slices left out because the sketch holds their marked values (sampled slices).
  int64_t rows_held_out = 0;
  int dims_recovered = 0, dims_failed = 0;
  int tensors_renamed = 0, tensors_transposed = 0;
  int64_t sign_flips = 0;   ///< indices whose sign was undone
  bool rescaled = false;    ///< a per-index rescaling was undone
  double seconds = 0;
  /// One line per dimension: label, size, matched, median score (for --verbose and docs).
  std::vector<std::string> notes;
};

/// The suspect brought back to the sketch's layout: tensors under their ORIGINAL names and
/// shapes (f32 where they had to be rebuilt, the suspect's own views where nothing changed),
/// with unmatched and held-out slices set to zero.
class RealignedTensors {
 public:
  RealignedTensors();
  RealignedTensors(RealignedTensors&&) noexcept;
  RealignedTensors& operator=(RealignedTensors&&) noexcept;
  ~RealignedTensors();

  std::span<const NamedTensor> tensors() const noexcept;
  const AlignmentReport& report() const noexcept;

  struct Impl;  ///< opaque: the buffers behind the views
  Impl& impl() noexcept { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

struct RealignOptions {
  /// Realign marked tensors, global ones first and then layers spread over the depth, until
  /// the expected z of an intact mark (strength * sqrt(elements)) reaches this; 0: every
  /// tensor the sketch covers. The choice reads the sketch and the suspect only (the test
  /// stays honest). z = 30 is p <= 1e-195 and keeps realigned verification of a large
  /// model to a fraction of one pass over it; a model whose whole mark is below z = 30 is
  /// realigned entirely.
  double target_z = 30;
};

/// Realignment keeps the memory of its largest output for the next call (fresh pages cost as
/// much as the work); this returns it to the system.
void release_realignment_buffers() noexcept;

/// Realign `suspect` to an owner's checkpoint sketch (see the file comment). Uses the sketch
/// and the suspect only. When nothing moved (report().realigned false) the result holds the
/// suspect's own tensors as they are. Errc::invalid_argument when the sketch is an array sketch or shares
/// no tensor with the suspect ("a sketch for another architecture").
RealignedTensors realign_for_owner(std::span<const NamedTensor> suspect, const AlignmentSketch& sketch,
                                   const WatermarkOptions& options, Backend& backend = default_backend(),
                                   const RealignOptions& how = {});

/// verify_many after realignment: when the realignment moved something, the ordinary blind
/// test runs on the realigned tensors; otherwise (already aligned, or nothing matched) on the
/// suspect as it is. `how` receives the AlignmentReport.
std::vector<VerifyReport> verify_realigned(std::span<const NamedTensor> suspect, const AlignmentSketch& sketch,
                                           std::span<const Claim> claims, const WatermarkOptions& options,
                                           Backend& backend = default_backend(), AlignmentReport* how = nullptr,
                                           const RealignOptions& realign = {});

/// Checkpoint files: open `input` and run verify_realigned.
std::vector<VerifyReport> verify_checkpoint_realigned(const std::filesystem::path& input, CheckpointFormat format,
                                                      const AlignmentSketch& sketch, std::span<const Claim> claims,
                                                      const WatermarkOptions& options,
                                                      Backend& backend = default_backend(),
                                                      AlignmentReport* how = nullptr,
                                                      const RealignOptions& realign = {});

/// Sketch a marked checkpoint file.
AlignmentSketch sketch_checkpoint(const std::filesystem::path& input, CheckpointFormat format, std::string did,
                                  const SketchOptions& options = {}, Backend& backend = default_backend());

/// A realigned array: rows whose ids are in the sketch's sample are removed.
struct RealignedArray {
  std::vector<float> data;       ///< rows x dim, f32
  std::vector<int64_t> ids;      ///< identities of the kept rows
  TensorView view;               ///< over data
  AlignmentReport report;
};

/// Undo a rotation / signed permutation of the features of a row-keyed array (orthogonal
/// Procrustes on the sampled rows the suspect shares with the sketch). `ids` empty: row index.
/// Errc::invalid_argument when the sketch is a checkpoint sketch or the widths differ.
RealignedArray realign_array_for_owner(const TensorView& suspect, std::span<const int64_t> ids,
                                       const AlignmentSketch& sketch, Backend& backend = default_backend());

/// verify_array after realignment (as verify_realigned: the plain test when nothing moved).
std::vector<ArrayVerifyReport> verify_array_realigned(const TensorView& suspect, std::span<const int64_t> ids,
                                                      const AlignmentSketch& sketch, std::span<const Claim> claims,
                                                      const ArrayOptions& options,
                                                      Backend& backend = default_backend(),
                                                      AlignmentReport* how = nullptr);

}  // namespace didmark
