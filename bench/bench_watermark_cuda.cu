#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <cub/block/block_reduce.cuh>
#include <string>

#include "bench_watermark_cuda.hpp"
#include "didmark/backend.hpp"

namespace bench_cuda {
namespace {

using Clock = std::chrono::steady_clock;

// Plain read: every byte loaded once (16-byte loads), summed so nothing is optimized away.
__global__ void read_kernel(const float4* p, std::size_t n4, float* out) {
  float s = 0;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n4;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const float4 v = p[i];
    s += (v.x + v.y) + (v.z + v.w);
  }
  using Reduce = cub::BlockReduce<float, 256>;
  __shared__ typename Reduce::TempStorage tmp;
  const float t = Reduce(tmp).Sum(s);
  if (threadIdx.x == 0) atomicAdd(out, t);
}

__global__ void fill_kernel(float* p, std::size_t n, uint32_t seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B9u + seed;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    p[i] = (static_cast<float>(h & 0xFFFFFF) / 16777216.0f - 0.5f) * 0.05f;
  }
}

struct DeviceSet {
  std::size_t bytes;
  float* src = nullptr;
  float* dst = nullptr;
  float* sum = nullptr;
  explicit DeviceSet(std::size_t b) : bytes(b) {
    cudaMalloc(&src, bytes);
    cudaMalloc(&dst, bytes);
    cudaMalloc(&sum, sizeof(float));
    fill_kernel<<<4096, 256>>>(src, bytes / 4, 1);
    cudaMemset(dst, 0, bytes);
    cudaDeviceSynchronize();
  }
};

double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

void report(benchmark::State& state, std::size_t bytes, double op, double base, int64_t n) {
  const double gb = static_cast<double>(bytes) * static_cast<double>(n) / 1e9;
  state.counters["op_GBps"] = gb / op;
  state.counters["base_GBps"] = gb / base;
  state.counters["ratio"] = base / op;
}

}  // namespace

void register_benchmarks(std::size_t bytes, const didmark::WatermarkKey& key, const didmark::Payload& payload) {
  static DeviceSet set(bytes);
  static auto gpu = didmark::make_cuda_backend(0);
  const int64_t n = static_cast<int64_t>(bytes / 4);
  auto view = [n](float* p) {
    return didmark::TensorView::contiguous(p, didmark::DType::f32, {n / 4096, 4096}, didmark::Device::cuda, 0);
  };
  static didmark::NamedTensor s{"bench.weight", view(set.src)}, d{"bench.weight", view(set.dst)};

  benchmark::RegisterBenchmark("BM_GpuVerifyVsRead/f32", [key, payload, bytes](benchmark::State& state) {
    double op = 0, base = 0;
    int64_t it = 0;
    for (auto _ : state) {
      auto t0 = Clock::now();
      read_kernel<<<2048, 256>>>(reinterpret_cast<const float4*>(set.src), bytes / 16, set.sum);
      cudaDeviceSynchronize();
      auto t1 = Clock::now();
      auto r = didmark::verify(std::span(&s, 1), key, payload, {}, *gpu);
      benchmark::DoNotOptimize(r.z);
      auto t2 = Clock::now();
      base += secs(t0, t1);
      op += secs(t1, t2);
      ++it;
      state.SetIterationTime(secs(t1, t2));
    }
    report(state, bytes, op, base, it);
    state.SetLabel("f32 1 GiB on " + gpu->description());
  })->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(20);

  benchmark::RegisterBenchmark("BM_GpuEmbedVsCopy/f32", [key, payload, bytes](benchmark::State& state) {
    double op = 0, base = 0;
    int64_t it = 0;
    for (auto _ : state) {
      auto t0 = Clock::now();
      cudaMemcpyAsync(set.dst, set.src, bytes, cudaMemcpyDeviceToDevice, 0);
      cudaDeviceSynchronize();
      auto t1 = Clock::now();
      auto r = didmark::embed(std::span(&s, 1), std::span(&d, 1), key, payload, {}, *gpu);
      benchmark::DoNotOptimize(r.relative_change);
      auto t2 = Clock::now();
      base += secs(t0, t1);
      op += secs(t1, t2);
      ++it;
      state.SetIterationTime(secs(t1, t2));
    }
    report(state, bytes, op, base, it);
    state.SetLabel("f32 1 GiB on " + gpu->description());
  })->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(20);
}

}  // namespace bench_cuda
