#pragma once
// cuBLAS and cuSOLVER, opened on first use rather than linked. Linking them made every process
// (each CLI call, each test) map and relocate ~260 MB of libraries and spend 0.1-0.2 s before
// main, GPU or not, while only a few CUDA-backend ops call them. The CUDA runtime is linked
// statically: it opens the driver itself at the first CUDA call, and finds none on a machine
// without a GPU.
#include <cublas_v2.h>
#include <cusolverDn.h>

namespace didmark::cuda_libs {

struct Cublas {
  decltype(&::cublasCreate_v2) create;
  decltype(&::cublasDestroy_v2) destroy;
  decltype(&::cublasSetStream_v2) set_stream;
  decltype(&::cublasSgemm_v2) sgemm;
  decltype(&::cublasSgemm_v2_64) sgemm_64;
  decltype(&::cublasDgemm_v2_64) dgemm_64;
  decltype(&::cublasDsyrk_v2_64) dsyrk_64;
};

struct Cusolver {
  decltype(&::cusolverDnCreate) create;
  decltype(&::cusolverDnDestroy) destroy;
  decltype(&::cusolverDnSetStream) set_stream;
  decltype(&::cusolverDnDpotrf_bufferSize) dpotrf_buffer_size;
  decltype(&::cusolverDnDpotrf) dpotrf;
  decltype(&::cusolverDnDpotrs) dpotrs;
};

/// The library's entry points, loaded once (thread-safe). Errc::unsupported naming the library
/// when it is not installed.
const Cublas& cublas();
const Cusolver& cusolver();

}  // namespace didmark::cuda_libs
