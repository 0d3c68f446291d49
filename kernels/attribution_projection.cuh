#pragma once
// Host launchers for the projection kernels (kernels/attribution_projection.cu). Only
// engine/backend/cuda includes this. Pointers are device pointers; launches go on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/tensor.hpp"

namespace didmark::kernels {

/// Rows [row0, row0 + rows) of the keyed Rademacher matrix (attribution_math.hpp), all k
/// columns, into out (rows x k, row-major). T is float or double; bit-identical to the CPU.
template <class T>
void launch_rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t k, T scale, T* out,
                            cudaStream_t stream);

/// dst[i] = (T) src[i] for i < n, src of floating dtype `t` (f64, f32, f16, bf16).
template <class T>
void launch_convert(const void* src, DType t, int64_t n, T* dst, cudaStream_t stream);

}  // namespace didmark::kernels
