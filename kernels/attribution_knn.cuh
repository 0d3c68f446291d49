#pragma once
// Host launchers for the KNN-Shapley kernels (kernels/attribution_knn.cu). Only
// engine/backend/cuda includes this. Pointers are device pointers; launches go on `stream`.
// T is float or double (the compute type).
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace didmark::kernels {

/// keys[q][j] = norms[c] + neg2dots[q][c], c = canonical ? canonical[j] : j (neg2dots holds
/// -2 q.x from cuBLAS); idx[q][j] = j. Row-major m x n.
template <class T>
void launch_knn_keys(const T* neg2dots, const T* norms, const int32_t* canonical, int64_t m, int64_t n, T* keys,
                     int32_t* idx, cudaStream_t stream);

/// Temporary bytes for launch_knn_sort of m segments of n.
template <class T>
std::size_t knn_sort_temp_bytes(int64_t m, int64_t n);

/// Stable sort of each of the m segments of n (key, index) pairs by key: CUB's
/// DeviceSegmentedSort::StableSortPairs, so equal keys keep ascending index. `offsets` holds
/// the m + 1 segment bounds (q * n).
template <class T>
void launch_knn_sort(void* temp, std::size_t temp_bytes, const T* keys_in, T* keys_out, const int32_t* idx_in,
                     int32_t* idx_out, const int64_t* offsets, int64_t m, int64_t n, cudaStream_t stream);

/// The exact recursion, one thread block per query: order[q] lists training rows nearest
/// first; values[q][row] receives the row's KNN-Shapley value for query q.
void launch_knn_recursion(const int32_t* order, const int64_t* train_labels, const int64_t* query_labels, int64_t m,
                          int64_t n, int k, double* values, cudaStream_t stream);

/// acc[j] += values[q][j] for q = 0, 1, ..., m - 1 in that order (the CPU's order).
void launch_knn_accumulate(const double* values, int64_t m, int64_t n, double* acc, cudaStream_t stream);

}  // namespace didmark::kernels
