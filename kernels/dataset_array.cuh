#pragma once
// Host launchers for the row-keyed array kernels (kernels/dataset_array.cu). Only
// engine/backend/cuda includes this. All pointers are device pointers; launches go on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/detail/dataset_array.hpp"

namespace didmark::kernels {

struct ArrayEmbedArgs {
  dataset::ElemType type = dataset::ElemType::f32;
  const void* src = nullptr;  ///< rows x dim
  void* dst = nullptr;        ///< may equal src
  int64_t rows = 0, dim = 0;
  const detail::CarrierSpec* specs = nullptr;  ///< one per row
  const float* bit_signs = nullptr;            ///< one per payload bit
  double strength = 0;
  dataset::RowEmbedStats* stats = nullptr;     ///< one per row
};

struct ArrayCorrelateArgs {
  dataset::ElemType type = dataset::ElemType::f32;
  const void* x = nullptr;
  int64_t rows = 0, dim = 0;
  int64_t spec_stride = 0;  ///< specs of claim k for row r at specs[k * spec_stride + r]
  const detail::CarrierSpec* specs = nullptr;
  uint32_t claims = 0, num_bits = 0;
  const uint8_t* use = nullptr;     ///< rows flags, or nullptr for all
  const float* bit_signs = nullptr; ///< claims x num_bits
  double* bit_sums = nullptr;       ///< claims x num_bits, accumulated into
  double* bit_weight = nullptr;     ///< claims x num_bits, accumulated into
  double* t = nullptr;              ///< claims, accumulated into
  unsigned long long* counts = nullptr;  ///< [rows counted, rows skipped], accumulated into
};

/// One warp per row: the fixed-order sum of squares, then the embed step (array_math.hpp).
void launch_array_embed(const ArrayEmbedArgs& a, cudaStream_t stream);
/// One warp per row: normalized carrier correlations for every claim, added into the sums.
void launch_array_correlate(const ArrayCorrelateArgs& a, cudaStream_t stream);

}  // namespace didmark::kernels
