// KNN-Shapley on the GPU: distance keys, a stable segmented sort per query (CUB), the
// recursion of attribution_math.hpp as a backward block scan, and in-order accumulation.
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include "didmark/detail/attribution_math.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/attribution_knn.cuh"

namespace didmark::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

template <class T>
__global__ void knn_keys_kernel(const T* __restrict__ neg2dots, const T* __restrict__ norms,
                                const int32_t* __restrict__ canonical, int64_t m, int64_t n, T* __restrict__ keys,
                                int32_t* __restrict__ idx) {
  const int64_t total = m * n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t q = i / n, j = i - q * n;
    const int64_t c = canonical ? canonical[j] : j;
    keys[i] = norms[c] + neg2dots[q * n + c];
    idx[i] = static_cast<int32_t>(j);
  }
}

struct RunningPrefix {
  double total;
  __device__ double operator()(double block_sum) {
    const double old = total;
    total += block_sum;
    return old;
  }
};

// Position r = 0, 1, ... walks the ranks backwards (rank i = n - r, 1-based): the inclusive
// scan of the terms gives s_i = s_n + sum_{j >= i} step_j.
__global__ void __launch_bounds__(kThreads) knn_recursion_kernel(const int32_t* __restrict__ order,
                                                                 const int64_t* __restrict__ train_labels,
                                                                 const int64_t* __restrict__ query_labels, int64_t n,
                                                                 int k, double* __restrict__ values) {
  using Scan = cub::BlockScan<double, kThreads>;
  __shared__ typename Scan::TempStorage temp;
  const int64_t q = blockIdx.x;
  const int32_t* ord = order + q * n;
  double* out = values + q * n;
  const int64_t label = query_labels[q];
  RunningPrefix prefix{0.0};
  constexpr int64_t kTile = static_cast<int64_t>(kThreads) * kItems;
  for (int64_t base = 0; base < n; base += kTile) {
    double items[kItems];
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      const int64_t r = base + static_cast<int64_t>(threadIdx.x) * kItems + e;
      double v = 0.0;
      if (r < n) {
        const int64_t i = n - r;
        const bool cur = train_labels[ord[i - 1]] == label;
        v = r == 0 ? attribution::knn_shapley_last(cur, n, k)
                   : attribution::knn_shapley_step(cur, train_labels[ord[i]] == label, i, k);
      }
      items[e] = v;
    }
    Scan(temp).InclusiveSum(items, items, prefix);
    __syncthreads();
#pragma unroll
    for (int e = 0; e < kItems; ++e) {
      const int64_t r = base + static_cast<int64_t>(threadIdx.x) * kItems + e;
      if (r < n) out[ord[n - r - 1]] = items[e];
    }
  }
}

__global__ void knn_accumulate_kernel(const double* __restrict__ values, int64_t m, int64_t n,
                                      double* __restrict__ acc) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double a = acc[j];
    for (int64_t q = 0; q < m; ++q) a += values[q * n + j];
    acc[j] = a;
  }
}

}  // namespace

template <class T>
void launch_knn_keys(const T* neg2dots, const T* norms, const int32_t* canonical, int64_t m, int64_t n, T* keys,
                     int32_t* idx, cudaStream_t stream) {
  knn_keys_kernel<T><<<grid_for(m * n), kThreads, 0, stream>>>(neg2dots, norms, canonical, m, n, keys, idx);
  DIDMARK_CUDA_CHECK_LAUNCH("knn_keys");
}

template <class T>
std::size_t knn_sort_temp_bytes(int64_t m, int64_t n) {
  std::size_t bytes = 0;
  DIDMARK_CUDA_TRY(cub::DeviceSegmentedSort::StableSortPairs(nullptr, bytes, static_cast<const T*>(nullptr),
                                                              static_cast<T*>(nullptr),
                                                              static_cast<const int32_t*>(nullptr),
                                                              static_cast<int32_t*>(nullptr), m * n, m,
                                                              static_cast<const int64_t*>(nullptr),
                                                              static_cast<const int64_t*>(nullptr)));
  return bytes;
}

template <class T>
void launch_knn_sort(void* temp, std::size_t temp_bytes, const T* keys_in, T* keys_out, const int32_t* idx_in,
                     int32_t* idx_out, const int64_t* offsets, int64_t m, int64_t n, cudaStream_t stream) {
  DIDMARK_CUDA_TRY(cub::DeviceSegmentedSort::StableSortPairs(temp, temp_bytes, keys_in, keys_out, idx_in, idx_out,
                                                              m * n, m, offsets, offsets + 1, stream));
}

void launch_knn_recursion(const int32_t* order, const int64_t* train_labels, const int64_t* query_labels, int64_t m,
                          int64_t n, int k, double* values, cudaStream_t stream) {
  knn_recursion_kernel<<<static_cast<unsigned>(m), kThreads, 0, stream>>>(order, train_labels, query_labels, n, k,
                                                                          values);
  DIDMARK_CUDA_CHECK_LAUNCH("knn_recursion");
}

void launch_knn_accumulate(const double* values, int64_t m, int64_t n, double* acc, cudaStream_t stream) {
  knn_accumulate_kernel<<<grid_for(n), kThreads, 0, stream>>>(values, m, n, acc);
  DIDMARK_CUDA_CHECK_LAUNCH("knn_accumulate");
}

template void launch_knn_keys<float>(const float*, const float*, const int32_t*, int64_t, int64_t, float*, int32_t*,
                                     cudaStream_t);
template void launch_knn_keys<double>(const double*, const double*, const int32_t*, int64_t, int64_t, double*,
                                      int32_t*, cudaStream_t);
template std::size_t knn_sort_temp_bytes<float>(int64_t, int64_t);
template std::size_t knn_sort_temp_bytes<double>(int64_t, int64_t);
template void launch_knn_sort<float>(void*, std::size_t, const float*, float*, const int32_t*, int32_t*,
                                     const int64_t*, int64_t, int64_t, cudaStream_t);
template void launch_knn_sort<double>(void*, std::size_t, const double*, double*, const int32_t*, int32_t*,
                                      const int64_t*, int64_t, int64_t, cudaStream_t);

}  // namespace didmark::kernels
