#include "backend/cuda/cuda_resources.hpp"

#include "backend/cuda/cuda_libs.hpp"
#include "kernels/cuda_check.cuh"
#include "didmark/error.hpp"

namespace didmark::cuda {

DeviceScope::DeviceScope(int device) {
  DIDMARK_CUDA_TRY(cudaGetDevice(&previous_));
  if (previous_ != device) DIDMARK_CUDA_TRY(cudaSetDevice(device));
}

DeviceScope::~DeviceScope() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_ && previous_ >= 0) (void)cudaSetDevice(previous_);
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) { reserve(bytes); }

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) (void)cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) (void)cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::reserve(std::size_t bytes) {
  if (bytes <= bytes_) return;
  if (ptr_) {
    DIDMARK_CUDA_TRY(cudaFree(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  DIDMARK_CUDA_TRY(cudaMalloc(&ptr_, bytes));
  bytes_ = bytes;
}

PinnedBuffer::~PinnedBuffer() {
  if (ptr_) (void)cudaFreeHost(ptr_);
}

void PinnedBuffer::reserve(std::size_t bytes) {
  if (bytes <= bytes_) return;
  if (ptr_) {
    DIDMARK_CUDA_TRY(cudaFreeHost(ptr_));
    ptr_ = nullptr;
    bytes_ = 0;
  }
  DIDMARK_CUDA_TRY(cudaMallocHost(&ptr_, bytes));
  bytes_ = bytes;
}

CudaResources::CudaResources(int device, std::size_t staging_bytes)
    : device_(device), staging_bytes_(staging_bytes ? staging_bytes : kDefaultStagingBytes) {
  const int n = usable_device_count();
  DIDMARK_EXPECTS(n > 0, device_failure, "no usable CUDA device (driver missing or no GPU); run with --device cpu");
  DIDMARK_EXPECTS(device >= 0 && device < n, invalid_argument, "CUDA device ", device, " does not exist (", n,
                  " present)");
  DeviceScope scope(device_);
  DIDMARK_CUDA_TRY(cudaGetDeviceProperties(&props_, device_));
  DIDMARK_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  DIDMARK_CUDA_TRY(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
}

CudaResources::~CudaResources() {
  int prev = -1;
  (void)cudaGetDevice(&prev);
  (void)cudaSetDevice(device_);
  if (stream_) (void)cudaStreamSynchronize(stream_);
  if (cublas_) (void)cuda_libs::cublas().destroy(cublas_);
  if (cusolver_) (void)cuda_libs::cusolver().destroy(cusolver_);
  for (auto& b : scratch_) b = DeviceBuffer();
  if (stream_) (void)cudaStreamDestroy(stream_);
  if (copy_stream_) (void)cudaStreamDestroy(copy_stream_);
  if (prev >= 0) (void)cudaSetDevice(prev);
}

cublasHandle_t CudaResources::cublas() {
  if (!cublas_) {
    DeviceScope scope(device_);
    const auto& lib = cuda_libs::cublas();
    DIDMARK_CUBLAS_TRY(lib.create(&cublas_));
    DIDMARK_CUBLAS_TRY(lib.set_stream(cublas_, stream_));
  }
  return cublas_;
}

cusolverDnHandle_t CudaResources::cusolver() {
  if (!cusolver_) {
    DeviceScope scope(device_);
    const auto& lib = cuda_libs::cusolver();
    DIDMARK_CUSOLVER_TRY(lib.create(&cusolver_));
    DIDMARK_CUSOLVER_TRY(lib.set_stream(cusolver_, stream_));
  }
  return cusolver_;
}

std::string CudaResources::description() const {
  return detail::concat("cuda:", device_, " ", props_.name, " (sm_", props_.major, props_.minor, ", ",
                        static_cast<long long>(static_cast<double>(props_.totalGlobalMem) / 1e9), " GB)");
}

void* CudaResources::scratch(std::size_t bytes, int slot) {
  DIDMARK_ASSERT(slot >= 0 && slot < 4);
  DeviceScope scope(device_);
  scratch_[slot].reserve(bytes);
  return scratch_[slot].get();
}

void* CudaResources::pinned(std::size_t bytes, int slot) {
  DIDMARK_ASSERT(slot >= 0 && slot < 2);
  pinned_[slot].reserve(bytes);
  return pinned_[slot].get();
}

int usable_device_count() noexcept {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // e.g. cudaErrorInsufficientDriver on a machine without a GPU
    return 0;
  }
  return n;
}

}  // namespace didmark::cuda
