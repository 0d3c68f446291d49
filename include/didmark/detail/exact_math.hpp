#pragma once
/// \file exact_math.hpp
/// Products and sums rounded once, to nearest, on the host and on the device alike: nvcc may
/// fuse a * b + c into one FMA (one rounding) where the host rounds twice, so every formula
/// that CPU and CUDA must compute bit for bit uses these (__fmul_rn / __dadd_rn are never
/// contracted).
#include "didmark/detail/config.hpp"

namespace didmark::detail {

DIDMARK_HD DIDMARK_FORCEINLINE float exact_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
DIDMARK_HD DIDMARK_FORCEINLINE float exact_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
DIDMARK_HD DIDMARK_FORCEINLINE double exact_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
DIDMARK_HD DIDMARK_FORCEINLINE double exact_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

}  // namespace didmark::detail
