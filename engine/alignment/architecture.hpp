#pragma once
// Which axes of which tensors a function-preserving transform must move together: the model's
// dimensions, read from tensor names (BERT, GPT-2 and Llama naming, with any prefix).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace didmark::alignment {

struct TensorShape {
  std::string name;
  std::vector<int64_t> shape;
};

struct ArchDim {
  std::string label;  ///< "hidden", "layers.3.ffn", "vocab", ...
  int64_t size = 0;
  bool anchored = false;
};

struct ArchTensor {
  std::array<int, 2> dims{-1, -1};  ///< per axis (rank 1: dims[0] only)
  int out_axis = 0;                 ///< the storage convention: 0 for [out, in], 1 for [in, out]
  /// How a per-index rescaling by a (or a sign flip) of the axis' dimension reaches this
  /// tensor: +1 its slice is multiplied by a (it produces the index), -1 divided (it consumes
  /// it, or pairs with a producer, as keys with queries), 0 untouched (a gate: SiLU is
  /// neither homogeneous nor odd).
  std::array<int8_t, 2> roles{1, -1};
};

struct ArchMap {
  std::string name;  ///< "bert", "gpt2", "llama", "generic"
  std::vector<ArchDim> dims;
  std::vector<ArchTensor> tensors;  ///< one per input tensor, in order
};

/// Assign dimensions to the tensors' axes. Tensors no rule knows (and tensors whose sizes
/// contradict their rule) get no dimension. Tied dimensions of equal size are merged (Llama's
/// q/k rows when heads equal key/value heads, v rows with o columns).
ArchMap infer_architecture(const std::vector<TensorShape>& tensors);

/// The batch norm (name prefix) that follows a convolution weight in torchvision naming:
/// "x.conv2.weight" -> "x.bn2", "x.downsample.0.weight" -> "x.downsample.1"; "" for others.
std::string batch_norm_of(const std::string& conv_weight);

/// torchvision's BatchNorm eps, for gains weight / sqrt(running_var + eps).
inline constexpr double kBatchNormEps = 1e-5;

/// The layer number in a dimension label ("layers.3.ffn" -> 3), or -1 for global ones.
int layer_of(const std::string& label);

}  // namespace didmark::alignment
