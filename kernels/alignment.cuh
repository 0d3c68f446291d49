#pragma once
// Host launchers for the alignment kernels (kernels/alignment.cu): grid loops over the formulas
// of include/didmark/detail/alignment_math.hpp. Only engine/backend/cuda includes this. All
// pointers are device pointers; launches go on `stream`; the caller checks the launch.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/detail/alignment_math.hpp"

namespace didmark::kernels {

/// A rank-2 view of a device buffer.
struct AlignMatrix {
  const void* data = nullptr;
  detail::AlignElem type = detail::AlignElem::f32;
  int64_t rows = 0, cols = 0;
};

/// rows[r] = fixed-order sum of squares of row r (one warp per row).
void launch_align_row_sumsq(const AlignMatrix& w, double* rows, cudaStream_t stream);
/// partial[b * cols + j] = sum of squares of column j over rows [256 b, 256 b + 256), in order.
void launch_align_col_partials(const AlignMatrix& w, double* partial, cudaStream_t stream);
/// cols[j] = sum over b < blocks of partial[b * cols + j], in order.
void launch_align_col_reduce(const double* partial, int64_t blocks, int64_t cols, double* out, cudaStream_t stream);
/// out (K x len, f32): slices of w along `axis` at index[k] (-1: zeros).
void launch_align_gather(const AlignMatrix& w, int axis, const int64_t* index, int64_t K, float* out,
                         cudaStream_t stream);

struct RealignArgs {
  AlignMatrix w;
  bool transposed = false;
  const int64_t* row_src = nullptr;  ///< R entries (-1: none)
  const int64_t* col_src = nullptr;  ///< C entries
  const float* row_mul = nullptr;
  const float* col_mul = nullptr;
  int64_t rows = 0, cols = 0;        ///< of the output
  float* out = nullptr;
};
void launch_align_realign(const RealignArgs& a, cudaStream_t stream);

}  // namespace didmark::kernels
