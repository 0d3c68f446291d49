#include "backend/cuda/cuda_libs.hpp"

#include <dlfcn.h>

#include <string>

#include "didmark/error.hpp"

namespace didmark::cuda_libs {
namespace {

#define DIDMARK_STR2(x) #x
#define DIDMARK_STR(x) DIDMARK_STR2(x)

void* open_library(const char* versioned, const char* plain) {
  for (const char* name : {versioned, plain})
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) return h;
  DIDMARK_THROW(Errc::unsupported, "the CUDA backend needs ", versioned,
                ", which the dynamic loader cannot find (install the CUDA toolkit's libraries or set LD_LIBRARY_PATH)");
}

template <class F>
void bind(void* lib, const char* library, const char* symbol, F& out) {
  out = reinterpret_cast<F>(dlsym(lib, symbol));
  DIDMARK_EXPECTS(out != nullptr, unsupported, library, " has no ", symbol, " (a different major version?)");
}

}  // namespace

const Cublas& cublas() {
  static const Cublas api = [] {
    const char* name = "libcublas.so." DIDMARK_STR(CUBLAS_VER_MAJOR);
    void* lib = open_library(name, "libcublas.so");
    Cublas a{};
    bind(lib, name, "cublasCreate_v2", a.create);
    bind(lib, name, "cublasDestroy_v2", a.destroy);
    bind(lib, name, "cublasSetStream_v2", a.set_stream);
    bind(lib, name, "cublasSgemm_v2", a.sgemm);
    bind(lib, name, "cublasSgemm_v2_64", a.sgemm_64);
    bind(lib, name, "cublasDgemm_v2_64", a.dgemm_64);
    bind(lib, name, "cublasDsyrk_v2_64", a.dsyrk_64);
    return a;
  }();
  return api;
}

const Cusolver& cusolver() {
  static const Cusolver api = [] {
    const char* name = "libcusolver.so." DIDMARK_STR(CUSOLVER_VER_MAJOR);
    void* lib = open_library(name, "libcusolver.so");
    Cusolver a{};
    bind(lib, name, "cusolverDnCreate", a.create);
    bind(lib, name, "cusolverDnDestroy", a.destroy);
    bind(lib, name, "cusolverDnSetStream", a.set_stream);
    bind(lib, name, "cusolverDnDpotrf_bufferSize", a.dpotrf_buffer_size);
    bind(lib, name, "cusolverDnDpotrf", a.dpotrf);
    bind(lib, name, "cusolverDnDpotrs", a.dpotrs);
    return a;
  }();
  return api;
}

}  // namespace didmark::cuda_libs
