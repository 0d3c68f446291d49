#pragma once
// Pieces shared by sketching and realignment.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backend/alignment_ops.hpp"
#include "didmark/alignment.hpp"

namespace didmark::alignment {

/// Quantiles per descriptor profile.
inline constexpr int kQuantiles = 16;

/// `count` indices spread evenly over [0, n): floor((2k + 1) n / (2 count)). They depend on
/// the sizes only, never on values, so which slices are held out cannot depend on the mark.
std::vector<int64_t> spread_indices(int64_t n, int64_t count);

/// kQuantiles quantiles (midpoints of equal bins) of sqrt(sums / len), divided by `rms`.
std::vector<float> rms_quantiles(std::span<const double> sums, int64_t len, double rms);

/// Layers 0..L-1 in an order that spreads any prefix over the depth: 0, L-1, L/2, L/4, 3L/4, ...
std::vector<int> spread_layers(int L);

/// Rows read for a tensor's descriptors (a spread sample of larger tensors).
inline constexpr int64_t kDescriptorRows = 1024;

/// A tensor's descriptors: rms and per-axis RMS quantiles, from at most kDescriptorRows rows.
struct Descriptors {
  double rms = 0;
  std::vector<float> row_q, col_q;
};
Descriptors describe_tensor(AlignmentOps& ops, const TensorView& v);

/// Mean |log| ratio of two quantile profiles (large when either is missing).
double profile_distance(const std::vector<float>& a, const std::vector<float>& b);

/// f32 memory for realigned tensors (every element is written), in one mapping: huge pages
/// when the kernel gives them, and the last released mapping is reused, so that large outputs
/// do not pay for page faults and page zeroing on every call.
class Arena {
 public:
  Arena() = default;
  explicit Arena(std::size_t floats);
  ~Arena();
  Arena(Arena&& o) noexcept;
  Arena& operator=(Arena&& o) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  /// The next `n` floats (64-byte aligned).
  float* take(std::size_t n);

 private:
  void* base_ = nullptr;
  std::size_t bytes_ = 0, used_ = 0;
};

/// A rank-1 float tensor's values as f32.
std::vector<float> vector_values(AlignmentOps& ops, const TensorView& v);

/// Per output channel of convolution `conv`, its batch norm's signed gain
/// weight / sqrt(running_var + eps) read from `tensors` (empty when there is none that fits).
std::vector<float> batch_norm_gains(AlignmentOps& ops, std::span<const NamedTensor> tensors, const std::string& conv,
                                    int64_t channels);

/// Unmap the mapping Arena keeps for reuse (release_realignment_buffers).
void release_spare_arena() noexcept;

/// Elements of a view seen as a matrix.
inline int64_t rows_of(const std::vector<int64_t>& shape) { return shape.empty() ? 1 : shape[0]; }
int64_t cols_of(const std::vector<int64_t>& shape);
/// Matrix columns per index of axis 1 (product of the axes after the second; 1 for rank <= 2).
inline int64_t group_of(const std::vector<int64_t>& shape) {
  int64_t g = 1;
  for (std::size_t a = 2; a < shape.size(); ++a) g *= shape[a];
  return g;
}
/// Where matrix column e of a tensor whose axis 1 has `group` columns per index is in a
/// suspect whose indices moved by `src` (-1: not there): a channel's kernel taps move together.
inline int64_t column_of(int64_t e, int64_t group, const std::vector<int64_t>& src) {
  const int64_t c = src[static_cast<std::size_t>(e / group)];
  return c < 0 ? -1 : c * group + e % group;
}

}  // namespace didmark::alignment
