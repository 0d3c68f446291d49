// Alignment kernels: the same fixed-order sums, gathers and realigned values as the CPU loops
// (engine/backend/cpu/alignment_cpu.cpp), so both give the same bits.
#include <algorithm>

#include "kernels/alignment.cuh"

namespace didmark::kernels {
namespace {

using detail::AlignElem;
constexpr unsigned kFull = 0xFFFFFFFFu;
constexpr int kThreads = 256;

unsigned grid_for(int64_t n, int64_t per_block = kThreads) {
  return static_cast<unsigned>(std::min<int64_t>((n + per_block - 1) / per_block, int64_t{1} << 16));
}

__global__ void row_sumsq_kernel(AlignMatrix w, double* rows) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5); r < w.rows; r += warps) {
    double acc = 0;
    for (int64_t j = lane; j < w.cols; j += detail::kAlignLanes)
      acc = detail::exact_add(acc, detail::align_sq(detail::align_load_f64(w.data, r * w.cols + j, w.type)));
    for (int h = detail::kAlignLanes / 2; h >= 1; h /= 2) acc = detail::exact_add(acc, __shfl_down_sync(kFull, acc, h));
    if (lane == 0) rows[r] = acc;
  }
}

__global__ void col_partials_kernel(AlignMatrix w, double* partial) {
  const int64_t blocks = (w.rows + detail::kAlignColBlock - 1) / detail::kAlignColBlock;
  const int64_t total = blocks * w.cols;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t / w.cols, j = t % w.cols;
    const int64_t r0 = b * detail::kAlignColBlock, r1 = min(w.rows, r0 + detail::kAlignColBlock);
    double acc = 0;
    for (int64_t r = r0; r < r1; ++r)
      acc = detail::exact_add(acc, detail::align_sq(detail::align_load_f64(w.data, r * w.cols + j, w.type)));
    partial[t] = acc;
  }
}

__global__ void col_reduce_kernel(const double* partial, int64_t blocks, int64_t cols, double* out) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t b = 0; b < blocks; ++b) s = detail::exact_add(s, partial[b * cols + j]);
    out[j] = s;
  }
}

__global__ void gather_kernel(AlignMatrix w, int axis, const int64_t* index, int64_t K, float* out) {
  const int64_t len = axis == 0 ? w.cols : w.rows;
  const int64_t total = K * len;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t k = t / len, x = t % len, s = index[k];
    out[t] = s < 0 ? 0.0f : detail::align_load(w.data, axis == 0 ? s * w.cols + x : x * w.cols + s, w.type);
  }
}

__global__ void realign_kernel(RealignArgs a) {
  const int64_t total = a.rows * a.cols;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / a.cols, j = t % a.cols;
    const int64_t r = a.row_src[i], c = a.col_src[j];
    const float rm = a.row_mul[i], cm = a.col_mul[j];
    float v = 0.0f;
    if (r >= 0 && c >= 0 && rm != 0.0f && cm != 0.0f)
      v = detail::realign_value(detail::align_load(a.w.data, a.transposed ? c * a.w.cols + r : r * a.w.cols + c, a.w.type),
                                rm, cm);
    a.out[t] = v;
  }
}

}  // namespace

void launch_align_row_sumsq(const AlignMatrix& w, double* rows, cudaStream_t stream) {
  if (w.rows == 0) return;
  row_sumsq_kernel<<<grid_for(w.rows, kThreads / 32), kThreads, 0, stream>>>(w, rows);
}

void launch_align_col_partials(const AlignMatrix& w, double* partial, cudaStream_t stream) {
  const int64_t blocks = (w.rows + detail::kAlignColBlock - 1) / detail::kAlignColBlock;
  if (blocks * w.cols == 0) return;
  col_partials_kernel<<<grid_for(blocks * w.cols), kThreads, 0, stream>>>(w, partial);
}

void launch_align_col_reduce(const double* partial, int64_t blocks, int64_t cols, double* out, cudaStream_t stream) {
  if (cols == 0) return;
  col_reduce_kernel<<<grid_for(cols), kThreads, 0, stream>>>(partial, blocks, cols, out);
}

void launch_align_gather(const AlignMatrix& w, int axis, const int64_t* index, int64_t K, float* out,
                         cudaStream_t stream) {
  const int64_t total = K * (axis == 0 ? w.cols : w.rows);
  if (total == 0) return;
  gather_kernel<<<grid_for(total), kThreads, 0, stream>>>(w, axis, index, K, out);
}

void launch_align_realign(const RealignArgs& a, cudaStream_t stream) {
  if (a.rows * a.cols == 0) return;
  realign_kernel<<<grid_for(a.rows * a.cols), kThreads, 0, stream>>>(a);
}

}  // namespace didmark::kernels
