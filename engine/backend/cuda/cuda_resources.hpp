#pragma once
// All GPU state of one CUDA backend behind one object (after faiss::gpu::GpuResources):
// the device, a stream, library handles, scratch memory and pinned staging buffers.
// Nothing global: every area's CUDA code gets this from the Backend it was handed.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "didmark/backend.hpp"

namespace didmark::cuda {

/// RAII: make `device` current, restore the previous device on exit.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

/// A device allocation owned by RAII (cudaMalloc / cudaFree).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr, o.bytes_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const noexcept { return ptr_; }
  template <class T>
  T* as() const noexcept { return static_cast<T*>(ptr_); }
  std::size_t size() const noexcept { return bytes_; }
  /// Grow (contents lost) when smaller than `bytes`.
  void reserve(std::size_t bytes);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Pinned host memory (cudaMallocHost / cudaFreeHost).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void reserve(std::size_t bytes);
  void* get() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

class CudaResources {
 public:
  /// `staging_bytes` = 0: kDefaultStagingBytes.
  explicit CudaResources(int device, std::size_t staging_bytes = 0);
  ~CudaResources();
  CudaResources(const CudaResources&) = delete;
  CudaResources& operator=(const CudaResources&) = delete;

  int device() const noexcept { return device_; }
  cudaStream_t stream() const noexcept { return stream_; }
  /// A second stream, for overlapping copies with compute when staging host data.
  cudaStream_t copy_stream() const noexcept { return copy_stream_; }
  cublasHandle_t cublas();      ///< created on first use, bound to stream()
  cusolverDnHandle_t cusolver();  ///< created on first use, bound to stream()
  const cudaDeviceProp& props() const noexcept { return props_; }
  std::string description() const;

  /// Device scratch of at least `bytes`, reused across calls (valid until the next call
  /// to scratch with the same slot). Slots keep independent buffers alive together.
  void* scratch(std::size_t bytes, int slot = 0);
  /// Pinned host staging buffer of at least `bytes` (two slots for double buffering).
  void* pinned(std::size_t bytes, int slot);

  /// Bytes of a host chunk streamed through the GPU at a time (BackendOptions::staging_bytes).
  std::size_t staging_bytes() const noexcept { return staging_bytes_; }
  static constexpr std::size_t kDefaultStagingBytes = std::size_t{64} << 20;

  /// The device lock: every operation that uses the stream, scratch or staging buffers holds
  /// it for its whole length (the backend's thread-safety contract). Recursive, so an
  /// operation may call another.
  std::unique_lock<std::recursive_mutex> lock() { return std::unique_lock<std::recursive_mutex>(mu_); }

 private:
  int device_;
  std::size_t staging_bytes_;
  std::recursive_mutex mu_;
  cudaStream_t stream_ = nullptr;
  cudaStream_t copy_stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t cusolver_ = nullptr;
  cudaDeviceProp props_{};
  DeviceBuffer scratch_[4];
  PinnedBuffer pinned_[2];
};

/// Number of usable devices; 0 (and the error cleared) when the driver or device is missing.
int usable_device_count() noexcept;

}  // namespace didmark::cuda
