#pragma once
// Host launchers for the image kernels (kernels/image.cu): grid loops over the formulas of
// include/didmark/detail/image_math.hpp. Only engine/backend/cuda includes this. All pointers
// are device pointers; launches go on `stream`; the caller checks the launch.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/detail/image_math.hpp"

namespace didmark::kernels {

/// Mark one image in place (8-bit interleaved, `channels` per pixel; colour channels only),
/// pixel (x, y) with the pattern at (x + offset_x, y + offset_y).
void launch_image_embed(uint8_t* pixels, int64_t stride, int width, int height, int channels, const float* mask,
                        const float* cell_weights, float amplitude, int offset_x, int offset_y, cudaStream_t stream);
/// out[q] (kImageTileArea) = sum of plane over the pixels at tile position q (tile order).
void launch_image_fold(const float* plane, int width, int height, float* out, cudaStream_t stream);
/// score/norm (n x kImageTileArea) of the shift search of n tiles g against n weight tables.
void launch_image_shift_correlate(const float* g, const float* weights, int64_t n, float* score, float* norm,
                                  cudaStream_t stream);

}  // namespace didmark::kernels
