#pragma once
// Host launcher for the registry screen kernel (kernels/screen.cu). Only engine/backend/cuda
// includes this. All pointers are device pointers; launches go on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/screen_math.hpp"
#include "didmark/tensor.hpp"

namespace didmark::kernels {

struct ScreenArgs {
  const void* data = nullptr;  ///< `groups` sampled groups of detail::kScreenGroup elements, packed
  DType dtype = DType::f32;
  int64_t groups = 0;
  /// Elements of the last packed group that belong to the tensor (the rest is never read).
  int64_t last_valid = detail::kScreenGroup;
  uint64_t first_block = 0;  ///< carrier block of packed group 0's first element
  uint64_t block_step = 0;   ///< carrier blocks from one packed group to the next (stride * 8)
  const detail::CarrierSpec* carriers = nullptr;
  int num_keys = 0;
  const uint64_t* payload = nullptr;  ///< payload_words per key
  uint32_t payload_words = 0;
  double* partial_t = nullptr;                  ///< [grid_x][num_keys], added into
  double* partial_sq = nullptr;                 ///< [grid_x], added into
  unsigned long long* partial_count = nullptr;  ///< [grid_x][2]: finite, non-finite; added into
};

/// Grid width of the screen launches of one call (the partial arrays have this many rows):
/// a few blocks per SM in all, shared among the key tiles.
int screen_grid_x(int sm_count, int num_keys);
/// One launch over the packed groups of `a`; grid (grid_x, key tiles). Launches of one call
/// run in stream order and each (row, key) is written by one thread block, so the partial
/// sums are deterministic.
void launch_screen(const ScreenArgs& a, int grid_x, cudaStream_t stream);

}  // namespace didmark::kernels
