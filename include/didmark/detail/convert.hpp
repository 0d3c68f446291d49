#pragma once
/// \file convert.hpp
/// Reading one element of a floating tensor as another floating type, the same way on
/// every device: the RMS sample of the watermark, the attribution inputs and the GPU
/// conversion kernels all go through load_as.

#include <cstdint>

#include "didmark/detail/config.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/tensor.hpp"

namespace didmark::detail {

/// Element i of floating data of dtype t (f64, f32, f16 or bf16) as T; 0 for other dtypes
/// (callers check the dtype first).
template <class T>
DIDMARK_HD DIDMARK_FORCEINLINE T load_as(const void* data, DType t, int64_t i) {
  switch (t) {
    case DType::f64: return static_cast<T>(static_cast<const double*>(data)[i]);
    case DType::f32: return static_cast<T>(static_cast<const float*>(data)[i]);
    case DType::f16: return static_cast<T>(f16_to_f32(static_cast<const uint16_t*>(data)[i]));
    case DType::bf16: return static_cast<T>(bf16_to_f32(static_cast<const uint16_t*>(data)[i]));
    default: return T(0);
  }
}

/// dst[i] = load_as<T>(src, t, i) for i < n (host loop).
template <class T>
inline void convert(const void* src, DType t, int64_t n, T* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = load_as<T>(src, t, i);
}

}  // namespace didmark::detail
