#pragma once
/// \file attack.hpp
/// The robustness lab: what a thief does to a marked checkpoint or embedding array, as a
/// library. Attacks work on a checkpoint held in memory (owned tensors of any floating
/// dtype), are deterministic under a seed, and are written back in the input's format.
///
/// Three kinds:
///  * structural, function-preserving (the model computes the same function, up to a fixed
///    permutation of its output embedding): permutations of the hidden (residual) dimension,
///    of FFN neurons and of attention heads; per-neuron rescaling where the activation
///    allows it; dummy neurons with zero outgoing weights. They need an ArchitectureMap that
///    says which tensors share which dimension: recognised from BERT, GPT-2 and Llama names
///    (with any prefix), or given as JSON (docs/robustness.md has the schema). Renaming and
///    layer truncation change names and layers;
///  * value attacks: Gaussian noise, casts, int8/int4 quantization, magnitude and N:M
///    pruning, linear and TIES merges with a partner, a second owner's mark on top;
///  * array attacks on row-keyed N x D arrays: noise, casts, quantization, a random rotation,
///    a permutation of the dimensions, PCA, a shuffled row subset.
///
/// Attacks are named by a spec string (`noise:0.05`, `permute:all`, `quant:int4:g128`, ...):
/// parse_attack_spec lists them. Which tensors a value attack touches is the thief's choice,
/// not the marker's policy: every floating tensor, except that quantization and pruning
/// leave vectors (norms, biases) in float as the real tools do.
///
/// Example:
/// \code
///   auto model = didmark::load_tensor_set("marked.safetensors");
///   didmark::AttackContext ctx;
///   ctx.seed = 7;
///   for (auto s : {"permute:all", "quant:int8"})
///     didmark::apply_attack(model, didmark::parse_attack_spec(s), ctx);
///   didmark::save_tensor_set(model, "stolen.safetensors");
/// \endcode

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

// ---- Checkpoints held in memory ---------------------------------------------------------

/// A tensor that owns its bytes (C-contiguous, in its own dtype).
struct OwnedTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  OwnedTensor() = default;
  OwnedTensor(std::string name, DType dtype, std::vector<int64_t> shape);  ///< zero-filled
  /// A copy of a contiguous host view.
  static OwnedTensor copy_of(std::string name, const TensorView& v);

  int64_t numel() const noexcept;
  TensorView view() const;  ///< writable view of the bytes
  bool is_floating() const noexcept;  ///< f64, f32, f16, bf16, f8_e4m3, f8_e5m2
  /// The values as f64 (floating dtypes only).
  std::vector<double> values() const;
  /// Store values (size numel()), rounded to nearest even in this tensor's dtype.
  void assign(std::span<const double> values);
};

/// A checkpoint in memory, with what is needed to write it back in its own format.
struct TensorSet {
  std::vector<OwnedTensor> tensors;
  /// safetensors `__metadata__` entries (kept on output).
  std::vector<std::pair<std::string, std::string>> metadata;
  /// Where it came from (save_tensor_set writes the same format; .pt keeps its container
  /// when names, shapes and dtypes are unchanged).
  std::filesystem::path source;
  CheckpointFormat format = CheckpointFormat::safetensors;
  /// Sharded: the shard file name of each tensor at load time, by tensor name.
  std::vector<std::pair<std::string, std::string>> shard_of;
  /// Tensors the reader withheld (not carried: written back only where the container allows).
  std::vector<std::pair<std::string, std::string>> withheld;

  OwnedTensor* find(std::string_view name);
  const OwnedTensor* find(std::string_view name) const;
  /// Named views of every tensor (valid while the set is not changed).
  std::vector<NamedTensor> named() const;
  uint64_t bytes() const noexcept;
};

/// Read a checkpoint (safetensors, sharded safetensors, .pt, .npy) into memory. The format
/// is guessed from the path when not given.
TensorSet load_tensor_set(const std::filesystem::path& path, std::optional<CheckpointFormat> format = {});

struct SaveReport {
  std::vector<std::filesystem::path> outputs;  ///< files written (an index last)
  /// How a .pt was written: "container" (the input's, values replaced) or "state dict"
  /// (a plain {name: tensor} dict, when names, shapes or dtypes changed); empty otherwise.
  std::string torch_layout;
  uint64_t bytes = 0;
};

/// Write a set in its format (set.format) atomically: safetensors (metadata kept), sharded
/// safetensors (`out` a folder or an index path in one; each tensor goes to the shard of its
/// origin, the index last), .pt, .npy (one tensor). The input files are never replaced.
SaveReport save_tensor_set(const TensorSet& set, const std::filesystem::path& out, bool overwrite = false);

/// ||a - b|| / ||b|| over the floating tensors that exist in both under the same name and
/// shape (the relative change an attack made); 0 when none match.
double relative_weight_change(const TensorSet& attacked, const TensorSet& original);

// ---- Architecture maps ------------------------------------------------------------------

enum class Activation : uint8_t {
  unknown,
  relu,    ///< ReLU family (positively homogeneous): rescaling is exact
  gelu,    ///< GELU (BERT, GPT-2): rescaling is not function-preserving
  silu,    ///< SiLU / Swish without a gate
  gated,   ///< act(gate) * up (SwiGLU, GeGLU): scaling up rows and down columns is exact
};
std::string_view activation_name(Activation a) noexcept;
/// "relu", "gelu", "gelu_new", "silu", "swish", "swiglu", "gated", ...; nullopt when unknown.
std::optional<Activation> parse_activation(std::string_view s) noexcept;

/// One axis of one tensor that runs along a dimension: elements [offset, offset + size)
/// of `axis` (offset is non-zero for fused tensors such as GPT-2's c_attn).
struct AxisRef {
  std::string tensor;
  int axis = 0;
  int64_t offset = 0;
};

struct AttentionMap {
  int64_t heads = 0;     ///< query heads; 0 when not known (no head permutation then)
  int64_t kv_heads = 0;  ///< key/value heads (GQA: fewer than heads)
  int64_t head_dim = 0;
  /// Query rows (weights and biases): heads * head_dim.
  std::vector<AxisRef> q;
  /// Key and value rows: kv_heads * head_dim.
  std::vector<AxisRef> k, v;
  /// The output projection's input axis: heads * head_dim.
  std::vector<AxisRef> o;
  int64_t q_size = 0;   ///< heads * head_dim (known from shapes even when heads is not)
  int64_t kv_size = 0;
  /// Rotary position embeddings (Llama): dims d and d + head_dim/2 of a head rotate together,
  /// so a per-dimension rescale must give both the same factor.
  bool rope = false;
};

struct FfnMap {
  int64_t size = 0;  ///< intermediate size (neurons)
  Activation activation = Activation::unknown;
  /// Axes that make each neuron's input: W1 / up rows and their bias (scaled by rescale).
  std::vector<AxisRef> in;
  /// Gated MLPs: the gate rows (permuted with the neurons, never scaled).
  std::vector<AxisRef> gate;
  /// The down projection's input axis (columns of W2 / down).
  std::vector<AxisRef> out;
};

struct LayerMap {
  int index = 0;
  std::vector<std::string> tensors;  ///< every tensor of the layer (truncate drops them)
  AttentionMap attention;
  FfnMap ffn;
};

/// Which tensors share which dimension.
struct ArchitectureMap {
  std::string family;  ///< "bert", "gpt2", "llama", or the JSON's "family"
  int64_t hidden = 0;
  std::vector<AxisRef> hidden_axes;  ///< every axis of every tensor on the residual stream
  std::vector<LayerMap> layers;
  /// Floating tensors the map does not cover: permuting the hidden dimension leaves them as
  /// they are (a head on top of the model then sees permuted inputs).
  std::vector<std::string> unmapped;
};

/// What the file cannot say: head counts and the activation. Fill from config.json with
/// architecture_hints_from_config, or by hand.
struct ArchitectureHints {
  int64_t heads = 0;     ///< 0: unknown
  int64_t kv_heads = 0;  ///< 0: same as heads
  std::optional<Activation> activation;
};

/// Hints from a Hugging Face config.json (num_attention_heads / n_head,
/// num_key_value_heads, hidden_act / activation_function). Errc::corrupt_input naming the
/// file when it is not a JSON object.
ArchitectureHints architecture_hints_from_config(const std::filesystem::path& config_json);

/// Recognise BERT (`encoder.layer.N.attention.self.query.weight`, ...), GPT-2 (`h.N.attn.c_attn.weight`,
/// Conv1D layout) or Llama (`model.layers.N.self_attn.q_proj.weight`, GQA, SwiGLU) names, with
/// any prefix. Errc::invalid_argument when no family fits, naming what was looked for.
ArchitectureMap recognise_architecture(std::span<const NamedTensor> tensors, const ArchitectureHints& hints = {});

/// The convolution channel dimensions `permute:channels` moves, as (label, channels): a
/// stage's residual stream ("res2") or a block's inner channels ("layers.5.c1"). Empty when the
/// names are not a known CNN's (torchvision ResNet: conv1, bn1, layerS.B.convK, bnK,
/// downsample, fc). The verifier's realignment reads the same table.
std::vector<std::pair<std::string, int64_t>> convolution_channels(std::span<const NamedTensor> tensors);

/// A map from JSON (schema in docs/robustness.md), checked against nothing yet.
/// Errc::invalid_argument naming `source` and the field that is wrong.
ArchitectureMap parse_architecture_map(std::string_view json, std::string_view source = "<map>");
/// The JSON of a map (parse_architecture_map reads it back).
std::string architecture_map_json(const ArchitectureMap& map);
/// Check a map against tensors: every tensor exists, every axis is in range and has room
/// for its dimension. Errc::invalid_argument naming the tensor and the axis.
void check_architecture_map(const ArchitectureMap& map, std::span<const NamedTensor> tensors);

// ---- Attacks on checkpoints -------------------------------------------------------------

/// A parsed attack spec: `kind` and its arguments as written.
struct AttackSpec {
  std::string text;               ///< as given, for messages and reports
  std::string kind;               ///< "noise", "permute", "merge", ...
  std::vector<std::string> args;  ///< the parts after the kind
  double strength = 0;            ///< the numeric strength where there is one (for plots)
};

/// Parse and check a spec (unknown kinds, missing or out-of-range arguments are
/// Errc::invalid_argument naming the spec). Checkpoint attacks:
///   noise:REL  cast:f16|bf16|fp8-e4m3  quant:int8  quant:int8-channel  quant:int4:gG
///   prune:FRAC  prune:NofM  merge:OTHER:ALPHA  merge-ties:OTHER:ALPHA[:DENSITY]
///   permute:hidden|ffn|heads|channels|all  rescale[:force]  rescale-attn  dummy:N  rename:PREFIX
///   truncate:LAYERS  remark:ID.json[:STRENGTH]
/// Array attacks (parse_array_attack_spec):
///   noise:REL  cast:f16|bf16|fp8-e4m3  quant:int8-dim  quant:binary  rotate  permute-dims
///   pca:K  subset:FRAC
AttackSpec parse_attack_spec(std::string_view spec);
AttackSpec parse_array_attack_spec(std::string_view spec);

/// What one applies with.
struct AttackContext {
  uint64_t seed = 1;
  /// The architecture: set it to use a given map; when empty the first structural attack
  /// recognises one (with `hints`). Structural attacks keep it up to date (renames, dummy
  /// neurons, dropped layers).
  std::optional<ArchitectureMap> map;
  ArchitectureHints hints;
  /// Value attacks touch only tensors whose name matches this (ECMAScript regex, searched);
  /// empty: every floating tensor.
  std::string tensors_regex;
  /// Options of the watermark a remark attack embeds (scheme, strength).
  WatermarkOptions remark_options;
  Backend* backend = nullptr;  ///< remark: the backend to embed with (default_backend())
  int applied = 0;             ///< attacks applied so far (each gets its own random stream)
};

struct AttackReport {
  std::string spec;
  int tensors_changed = 0;   ///< tensors whose values, shape or name changed
  bool function_preserving = false;
  std::vector<std::string> notes;  ///< what was done (map recognised, dims permuted, ...)
};

/// Apply one attack to `model` in place. Errors leave `model` in an unspecified state
/// (the CLI writes nothing then).
AttackReport apply_attack(TensorSet& model, const AttackSpec& spec, AttackContext& ctx);

// ---- Attacks on embedding arrays ----------------------------------------------------------

/// A row-keyed N x D array in memory (f64 values; `dtype` is what the file held).
struct ArrayData {
  int64_t rows = 0, dim = 0;
  DType dtype = DType::f32;
  std::vector<double> x;    ///< rows * dim, row-major
  std::vector<int64_t> ids; ///< one per row (empty: row index)
};

struct ArrayAttackReport {
  std::string spec;
  int64_t rows_in = 0, rows_out = 0, dim_out = 0;
  /// Neighbour preservation: mean recall@10 of the attacked rows' 10 nearest neighbours
  /// (cosine) against the original's, on `queries` sampled rows (shared rows only).
  double recall_at_10 = 0;
  int64_t queries = 0;
  std::vector<std::string> notes;
};

/// Read an N x D .npy array (f64, f32 or f16) and, when `ids` is not empty, its row ids
/// (.npy of N int64 or int32). Errors name the file.
ArrayData read_array_data(const std::filesystem::path& npy, const std::filesystem::path& ids = {});
/// Write the array (in a.dtype: f32, f64 or f16) and, when `ids_out` is not empty, its ids
/// (int64; row indexes when a.ids is empty), atomically.
void write_array_data(const ArrayData& a, const std::filesystem::path& out, const std::filesystem::path& ids_out,
                      bool overwrite = false);

/// Apply an array attack in place. `dtype` may change (cast stores f16 where .npy can).
ArrayAttackReport apply_array_attack(ArrayData& a, const AttackSpec& spec, uint64_t seed);

/// Mean recall@k of the k nearest neighbours (cosine) of `queries` sampled rows of
/// `attacked` against those of `original`, matching rows by id (attacked rows are a subset).
double neighbour_recall(const ArrayData& original, const ArrayData& attacked, int k, int64_t queries, uint64_t seed,
                        int64_t* queries_used = nullptr);

// ---- Error rates ------------------------------------------------------------------------

/// The i-th wrong key of the null side: HKDF-SHA256 of a fixed public seed with info
/// "didmark/robustness/null-key/v1/" + i (derive_watermark_key). Deterministic: every lab
/// run tests the same wrong keys.
WatermarkKey null_key(uint64_t i);

/// Empirical and bound error rates from null z's (wrong keys) and positive z's (true key).
struct ErrorRates {
  int64_t null_count = 0;
  double null_mean = 0, null_sd = 0, null_max = 0;
  /// Fraction of null z's >= the detection threshold (z for p_threshold).
  double empirical_fpr = 0;
  /// Threshold z for FPR 1e-3 and 1e-6: bound = Hoeffding (sqrt(2 ln 1/FPR)); empirical =
  /// the null sample's (1-FPR) quantile when the sample has >= 10/FPR values, else the
  /// Gaussian fit mean + sd * Phi^-1(1-FPR) (flagged in `extrapolated`).
  double z_bound_1e3 = 0, z_bound_1e6 = 0, z_empirical_1e3 = 0, z_empirical_1e6 = 0;
  bool extrapolated_1e3 = false, extrapolated_1e6 = false;
  /// Fraction of positives at or above each threshold.
  double tpr_bound_1e3 = 0, tpr_bound_1e6 = 0, tpr_empirical_1e3 = 0, tpr_empirical_1e6 = 0;
};
ErrorRates error_rates(std::span<const double> null_z, std::span<const double> positive_z, double p_threshold);

/// Phi^-1(p) for 0 < p < 1 (Acklam's rational approximation refined by a Newton step).
double normal_quantile(double p) noexcept;

}  // namespace didmark
