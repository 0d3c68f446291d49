// Row-keyed array marks: one warp per row, lanes over the row's elements in the fixed order
// of array_math.hpp, so the embed step (and every embedded value) equals the CPU's.
#include <algorithm>

#include "kernels/cuda_check.cuh"
#include "kernels/dataset_array.cuh"

namespace didmark::kernels {
namespace {

using dataset::ElemType;
constexpr int kWarpsPerBlock = 8;
constexpr unsigned kFull = 0xFFFFFFFFu;

/// The fixed-order sum of squares of a row: lane l adds elements l, l+32, ... then the tree.
template <ElemType T>
__device__ double warp_row_sum_sq(const typename dataset::Elem<T>::storage* x, int64_t dim, int lane) {
  double acc = 0;
  for (int64_t j = lane; j < dim; j += dataset::kLanes) {
    const double v = dataset::Elem<T>::load(x, j);
    acc = dataset::exact_add(acc, dataset::exact_mul(v, v));
  }
  for (int h = dataset::kLanes / 2; h >= 1; h /= 2) acc = dataset::exact_add(acc, __shfl_down_sync(kFull, acc, h));
  return __shfl_sync(kFull, acc, 0);
}

__device__ double warp_sum(double v) {
  for (int h = 16; h >= 1; h /= 2) v += __shfl_xor_sync(kFull, v, h);
  return v;
}

template <ElemType T>
__global__ void array_embed_kernel(ArrayEmbedArgs a) {
  using S = typename dataset::Elem<T>::storage;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); r < a.rows; r += warps) {
    const S* x = static_cast<const S*>(a.src) + r * a.dim;
    S* y = static_cast<S*>(a.dst) + r * a.dim;
    dataset::RowEmbedStats st{};
    st.src_sq = warp_row_sum_sq<T>(x, a.dim, lane);
    if (!dataset::is_finite(st.src_sq) || !(st.src_sq > 0)) {
      st.status = dataset::is_finite(st.src_sq) ? dataset::kRowZero : dataset::kRowNonFinite;
      if (x != y)
        for (int64_t j = lane; j < a.dim; j += 32) y[j] = x[j];
      if (lane == 0) a.stats[r] = st;
      continue;
    }
    const float alpha = dataset::row_alpha(st.src_sq, a.dim, a.strength);
    const detail::CarrierSpec c = a.specs[r];
    double dst_sq = 0, dot = 0;
    for (int64_t first = 0; first < a.dim; first += detail::kCarrierBlock) {
      const uint64_t g = static_cast<uint64_t>(first / detail::kCarrierBlock);
      const detail::u32x4 rnd = detail::carrier_signs(c, g);
      const float step = alpha * a.bit_signs[detail::carrier_bit_index(c, g)];
      for (int e = lane; e < detail::kCarrierBlock && first + e < a.dim; e += 32) {
        const S v = x[first + e];
        const S w = dataset::embed_elem<T>(v, step, rnd, static_cast<uint32_t>(e));
        y[first + e] = w;
        const double av = dataset::Elem<T>::load(&v, 0), bv = dataset::Elem<T>::load(&w, 0);
        dst_sq += bv * bv;
        dot += av * bv;
      }
    }
    st.dst_sq = warp_sum(dst_sq);
    st.dot = warp_sum(dot);
    if (lane == 0) a.stats[r] = st;
  }
}

template <ElemType T>
__global__ void array_correlate_kernel(ArrayCorrelateArgs a) {
  using S = typename dataset::Elem<T>::storage;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  const double full_weight = static_cast<double>(detail::kCarrierBlock) / static_cast<double>(a.dim);
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); r < a.rows; r += warps) {
    if (a.use && !a.use[r]) continue;
    const S* x = static_cast<const S*>(a.x) + r * a.dim;
    const double ss = warp_row_sum_sq<T>(x, a.dim, lane);
    if (!dataset::is_finite(ss) || !(ss > 0)) {
      if (lane == 0) atomicAdd(a.counts + 1, 1ull);
      continue;
    }
    if (lane == 0) atomicAdd(a.counts, 1ull);
    const double inv = 1.0 / sqrt(ss);
    for (uint32_t k = 0; k < a.claims; ++k) {
      const detail::CarrierSpec c = a.specs[static_cast<int64_t>(k) * a.spec_stride + r];
      double t = 0;
      for (int64_t first = 0; first < a.dim; first += detail::kCarrierBlock) {
        const uint64_t g = static_cast<uint64_t>(first / detail::kCarrierBlock);
        const detail::u32x4 rnd = detail::carrier_signs(c, g);
        double s = 0;
        for (int e = lane; e < detail::kCarrierBlock && first + e < a.dim; e += 32) {
          const double v = dataset::Elem<T>::load(x, first + e);
          s += detail::carrier_sign_bit(rnd, static_cast<uint32_t>(e)) ? -v : v;
        }
        s = warp_sum(s) * inv;
        if (lane == 0) {
          const uint32_t b = detail::carrier_bit_index(c, g);
          const int64_t n = a.dim - first < detail::kCarrierBlock ? a.dim - first : detail::kCarrierBlock;
          atomicAdd(a.bit_sums + k * a.num_bits + b, s);
          atomicAdd(a.bit_weight + k * a.num_bits + b,
                    n == detail::kCarrierBlock ? full_weight : static_cast<double>(n) / static_cast<double>(a.dim));
          t += static_cast<double>(a.bit_signs[k * a.num_bits + b]) * s;
        }
      }
      if (lane == 0) atomicAdd(a.t + k, t);
    }
  }
}

unsigned grid_for(int64_t rows) {
  const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

}  // namespace

void launch_array_embed(const ArrayEmbedArgs& a, cudaStream_t stream) {
  if (a.rows <= 0 || a.dim <= 0) return;
  const unsigned grid = grid_for(a.rows);
  switch (a.type) {
    case ElemType::f32: array_embed_kernel<ElemType::f32><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
    case ElemType::f64: array_embed_kernel<ElemType::f64><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
    case ElemType::f16: array_embed_kernel<ElemType::f16><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
    case ElemType::bf16: array_embed_kernel<ElemType::bf16><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
  }
  DIDMARK_CUDA_CHECK_LAUNCH("array_embed");
}

void launch_array_correlate(const ArrayCorrelateArgs& a, cudaStream_t stream) {
  if (a.rows <= 0 || a.dim <= 0 || a.claims == 0) return;
  const unsigned grid = grid_for(a.rows);
  switch (a.type) {
    case ElemType::f32: array_correlate_kernel<ElemType::f32><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
    case ElemType::f64: array_correlate_kernel<ElemType::f64><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
    case ElemType::f16: array_correlate_kernel<ElemType::f16><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
    case ElemType::bf16: array_correlate_kernel<ElemType::bf16><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a); break;
  }
  DIDMARK_CUDA_CHECK_LAUNCH("array_correlate");
}

}  // namespace didmark::kernels
