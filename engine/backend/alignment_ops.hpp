#pragma once
// The alignment op table: the passes over tensors that sketching and realignment need,
// implemented once on the CPU (engine/backend/cpu/alignment_cpu.cpp) and once on CUDA
// (engine/backend/cuda/alignment_cuda.cpp + kernels/alignment.cu), both over the formulas of
// include/didmark/detail/alignment_math.hpp. engine/alignment never includes CUDA headers.
//
// Every op takes a rank-2 contiguous view (a rank > 2 tensor is seen as [shape[0], rest]) of
// f32, f64, f16 or bf16, on the host (both tables) or on the device (the CUDA table).
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "didmark/backend.hpp"
#include "didmark/detail/alignment_math.hpp"
#include "didmark/tensor.hpp"

namespace didmark::detail {
class ThreadPool;
}

namespace didmark::alignment {

class AlignmentOps {
 public:
  virtual ~AlignmentOps() = default;
  virtual std::string name() const = 0;

  /// Per-row and per-column sums of squares in the fixed order of alignment_math.hpp.
  /// `rows` has rows entries and `cols` cols entries (either may be empty: not computed).
  virtual void axis_sumsq(const TensorView& w, std::span<double> rows, std::span<double> cols) = 0;

  /// Slices of w as f32, row-major into out (index.size() x the other axis' length):
  /// axis 0: out[k, j] = w[index[k], j]; axis 1: out[k, i] = w[i, index[k]]. An index of -1
  /// gives a slice of zeros.
  virtual void gather(const TensorView& w, int axis, std::span<const int64_t> index, std::span<float> out) = 0;

  /// out (f32, R x C, contiguous, same device kind as w or host) from w:
  ///   out[i, j] = realign_value(w[row_src[i], col_src[j]], row_mul[i], col_mul[j])
  /// (w[col_src[j], row_src[i]] when `transposed`); a source index of -1 gives 0.
  virtual void realign(const TensorView& w, bool transposed, std::span<const int64_t> row_src,
                       std::span<const int64_t> col_src, std::span<const float> row_mul,
                       std::span<const float> col_mul, const TensorView& out) = 0;

  /// out (f32, rows.size() x D, host) = w[rows, :] x q, with q a D x D f32 row-major matrix on
  /// the host: the feature rotation of an array. A GEMM (Eigen / cuBLAS), so CPU and CUDA agree
  /// to rounding, not bit for bit.
  virtual void rotate(const TensorView& w, std::span<const int64_t> rows, std::span<const float> q,
                      std::span<float> out) = 0;
};

/// The element type of a dtype; Errc::unsupported for the non-float ones.
detail::AlignElem align_elem(DType t);
/// [rows, cols] of a view seen as a matrix (rank 1: [1, n]; rank 0: [1, 1]).
std::array<int64_t, 2> matrix_shape(const TensorView& w);

/// The CPU table on `pool` (the CPU backend's; it must outlive the table).
std::unique_ptr<AlignmentOps> make_cpu_alignment_ops(detail::ThreadPool& pool);

}  // namespace didmark::alignment
