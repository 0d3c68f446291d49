#pragma once
// Host launchers for the carrier kernels (kernels/carrier.cu). Only engine/backend/cuda
// includes this. All pointers are device pointers; all launches go on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/detail/carrier.hpp"
#include "didmark/tensor.hpp"

namespace didmark::kernels {

struct CorrelateArgs {
  const void* data = nullptr;  ///< numel elements of dtype
  DType dtype = DType::f32;
  int64_t numel = 0;
  uint64_t block_offset = 0;  ///< carrier block index of data[0] (chunks of a larger tensor)
  const detail::CarrierSpec* carriers = nullptr;
  const uint32_t* sum_offsets = nullptr;  ///< carrier k's bit sums start at bit_sums[sum_offsets[k]]
  int num_carriers = 0;
  double* bit_sums = nullptr;  ///< accumulated into (atomics)
  double* sum_sq = nullptr;    ///< accumulated into
  unsigned long long* nonfinite = nullptr;
};

struct AddArgs {
  const void* src = nullptr;
  void* dst = nullptr;  ///< may equal src
  DType dtype = DType::f32;
  int64_t numel = 0;
  uint64_t block_offset = 0;
  detail::CarrierSpec carrier{};
  const float* delta = nullptr;  ///< carrier.num_bits steps
  double* sum_sq_src = nullptr;
  double* sum_sq_diff = nullptr;
  unsigned long long* nonfinite = nullptr;
};

/// Elements per tile (and the alignment chunks of a streamed host tensor must keep).
inline constexpr int64_t kCarrierTile = 8192;

void launch_correlate(const CorrelateArgs& a, int sm_count, cudaStream_t stream);
void launch_carrier_add(const AddArgs& a, int sm_count, cudaStream_t stream);
/// out[i] = (double) data[floor(i * numel / count)] for i < count.
void launch_sample(const void* data, DType dtype, int64_t numel, int64_t count, double* out, cudaStream_t stream);

}  // namespace didmark::kernels
