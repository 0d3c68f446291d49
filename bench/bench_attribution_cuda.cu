// GPU benchmarks of bench_attribution (registered when a device is present).
#include <benchmark/benchmark.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <chrono>
#include <memory>
#include <vector>

#include "bench_attribution_common.hpp"
#include "bench_attribution_cuda.hpp"
#include "didmark/attribution.hpp"

namespace bench_attr_cuda {
namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// cuBLAS SGEMM on device-resident 8192^3 (default math mode: full FP32, as the projection).
double gemm_peak_gflops() {
  static double peak = [] {
    const int n = 8192;
    float *a = nullptr, *b = nullptr, *c = nullptr;
    const std::size_t bytes = static_cast<std::size_t>(n) * n * sizeof(float);
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess ||
        cudaMalloc(&c, bytes) != cudaSuccess)
      return 0.0;
    cudaMemset(a, 0, bytes);
    cudaMemset(b, 0, bytes);
    cublasHandle_t h;
    cublasCreate(&h);
    const float one = 1, zero = 0;
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n);
    cudaDeviceSynchronize();
    double best = 0;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = Clock::now();
      cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, n, b, n, &zero, c, n);
      cudaDeviceSynchronize();
      best = std::max(best, 2.0 * n * static_cast<double>(n) * n / secs(t0, Clock::now()) / 1e9);
    }
    cublasDestroy(h);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return best;
  }();
  return peak;
}

}  // namespace

void register_benchmarks() {
  static auto gpu = didmark::make_cuda_backend(0);

  benchmark::RegisterBenchmark("BM_KnnShapleyGpu", [](benchmark::State& state) {
    static bench_attr::KnnData data(1'000'000, 1000, 384, 10, 2);
    didmark::KnnShapleyReport r;
    for (auto _ : state) {
      r = didmark::knn_shapley(data.xv, data.yv, data.qv, data.yqv, {.k = 5}, std::nullopt, *gpu);
      benchmark::DoNotOptimize(r.values.data());
    }
    state.counters["pairs_per_s"] = benchmark::Counter(static_cast<double>(data.n * data.q),
                                                       benchmark::Counter::kIsIterationInvariantRate);
    state.SetLabel("N=1e6 Q=1e3 D=384 K=5 f32 on " + r.backend);
  })->Unit(benchmark::kMillisecond)->Iterations(2);

  benchmark::RegisterBenchmark("BM_GemmPeakGpu", [](benchmark::State& state) {
    double g = 0;
    for (auto _ : state) g = gemm_peak_gflops();
    state.counters["GFLOPs"] = g;
    state.SetLabel("cuBLAS SGEMM 8192^3 on " + gpu->description());
  })->Unit(benchmark::kMillisecond)->Iterations(1);

  benchmark::RegisterBenchmark("BM_ProjectGpu", [](benchmark::State& state) {
    const int64_t rows = 128, p = 10'000'000, k = 2048;
    static bench_attr::Grads grads(rows, p);
    const double peak = gemm_peak_gflops();
    std::vector<float> out(static_cast<std::size_t>(rows * k));
    const auto ov = didmark::TensorView::contiguous(out.data(), didmark::DType::f32, {rows, k});
    double total = 0;
    int64_t it = 0;
    for (auto _ : state) {
      const auto t0 = Clock::now();
      didmark::project(grads.view, didmark::Projection{.seed = 1, .k = k}, ov, {}, *gpu);
      const double s = secs(t0, Clock::now());
      state.SetIterationTime(s);
      total += s;
      ++it;
    }
    const double per = total / static_cast<double>(it);
    const double gflops = 2.0 * rows * static_cast<double>(p) * k / per / 1e9;
    state.counters["GBps"] = static_cast<double>(rows * p) * 4.0 / per / 1e9;
    state.counters["GFLOPs"] = gflops;
    state.counters["peak_GFLOPs"] = peak;
    state.counters["frac_of_peak"] = gflops / peak;
    state.SetLabel("p=1e7 k=2048 rows=128 f32 (host gradients) on " + gpu->description());
  })->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(2);
}

}  // namespace bench_attr_cuda
