#pragma once
// Error checks for CUDA, cuBLAS and cuSOLVER calls (after CUCO_CUDA_TRY): clear the sticky
// error, then throw Errc::device_failure naming the call, the error and the location.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include "didmark/error.hpp"

#define DIDMARK_CUDA_TRY(call)                                                                       \
  do {                                                                                               \
    const cudaError_t didmark_e_ = (call);                                                           \
    if (didmark_e_ != cudaSuccess) {                                                                 \
      (void)cudaGetLastError();                                                                      \
      DIDMARK_THROW(::didmark::Errc::device_failure, #call " failed: ", cudaGetErrorName(didmark_e_), \
                    " (", cudaGetErrorString(didmark_e_), ")");                                      \
    }                                                                                                \
  } while (0)

/// Check the last kernel launch (configuration errors surface here, faults at the next sync).
#define DIDMARK_CUDA_CHECK_LAUNCH(what) DIDMARK_CUDA_TRY(cudaGetLastError())

#define DIDMARK_CUBLAS_TRY(call)                                                                   \
  do {                                                                                             \
    const cublasStatus_t didmark_s_ = (call);                                                      \
    if (didmark_s_ != CUBLAS_STATUS_SUCCESS)                                                       \
      DIDMARK_THROW(::didmark::Errc::device_failure, #call " failed with cublas status ", int(didmark_s_)); \
  } while (0)

#define DIDMARK_CUSOLVER_TRY(call)                                                                     \
  do {                                                                                                 \
    const cusolverStatus_t didmark_s_ = (call);                                                        \
    if (didmark_s_ != CUSOLVER_STATUS_SUCCESS)                                                         \
      DIDMARK_THROW(::didmark::Errc::device_failure, #call " failed with cusolver status ", int(didmark_s_)); \
  } while (0)
