// Attribution throughput.
//  * BM_KnnShapleyCpu: exact KNN-Shapley, N = 10^5 training rows, 100 queries, D = 128, K = 5.
//    Counters: pairs_per_s (N * queries / s).
//  * BM_GemmPeakCpu: the CPU op table's f32 GEMM (the kernels the projection runs) on 2048^3,
//    all threads. Counter: GFLOPs.
//  * BM_ProjectCpu: 32 gradient rows of p = 10^7 projected to k = 2048. Counters: GBps of
//    gradients read, GFLOPs, frac_of_peak = GFLOPs / the GEMM peak measured in this run.
// GPU variants (N = 10^6, 10^3 queries, D = 384; p = 10^7 on the GPU; cuBLAS peak) register
// when a CUDA device is present.
#include <benchmark/benchmark.h>

#include <chrono>
#include <memory>
#include <vector>

#include "backend/attribution_ops.hpp"
#include "bench_attribution_common.hpp"
#include "didmark/attribution.hpp"

#if DIDMARK_HAVE_CUDA
#include "bench_attribution_cuda.hpp"
#endif

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::shared_ptr<didmark::Backend> cpu() {
  static auto b = didmark::make_cpu_backend();
  return b;
}

double cpu_gemm_peak_gflops() {
  static double peak = [] {
    const int64_t n = 2048;
    std::vector<float> a(static_cast<std::size_t>(n * n), 0.5f), b(a.size(), 0.25f), c(a.size());
    auto& ops = cpu()->attribution_ops();
    ops.gemm_abt(a.data(), b.data(), c.data(), n, n, n);  // warm-up
    double best = 0;
    for (int r = 0; r < 3; ++r) {
      const auto t0 = Clock::now();
      ops.gemm_abt(a.data(), b.data(), c.data(), n, n, n);
      best = std::max(best, 2.0 * static_cast<double>(n * n * n) / secs(t0, Clock::now()) / 1e9);
    }
    return best;
  }();
  return peak;
}

void BM_KnnShapleyCpu(benchmark::State& state) {
  static bench_attr::KnnData data(100'000, 100, 128, 10, 1);
  didmark::KnnShapleyReport r;
  for (auto _ : state) {
    r = didmark::knn_shapley(data.xv, data.yv, data.qv, data.yqv, {.k = 5}, std::nullopt, *cpu());
    benchmark::DoNotOptimize(r.values.data());
  }
  state.counters["pairs_per_s"] = benchmark::Counter(static_cast<double>(data.n * data.q),
                                                     benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("N=1e5 Q=100 D=128 K=5 f32 on " + r.backend);
}

void BM_GemmPeakCpu(benchmark::State& state) {
  double g = 0;
  for (auto _ : state) g = cpu_gemm_peak_gflops();
  state.counters["GFLOPs"] = g;
  state.SetLabel("f32 2048^3, " + cpu()->attribution_ops().description());
}

void BM_ProjectCpu(benchmark::State& state) {
  const int64_t rows = state.range(0), p = 10'000'000, k = 2048;
  static bench_attr::Grads grads(32, p);
  const double peak = cpu_gemm_peak_gflops();
  std::vector<float> out(static_cast<std::size_t>(rows * k));
  didmark::TensorView g = grads.view;
  g.shape[0] = rows;
  const auto ov = didmark::TensorView::contiguous(out.data(), didmark::DType::f32, {rows, k});
  double total = 0;
  int64_t it = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    didmark::project(g, didmark::Projection{.seed = 1, .k = k}, ov, {}, *cpu());
    const double s = secs(t0, Clock::now());
    state.SetIterationTime(s);
    total += s;
    ++it;
  }
  const double per = total / static_cast<double>(it);
  const double gflops = 2.0 * static_cast<double>(rows) * static_cast<double>(p) * static_cast<double>(k) / per / 1e9;
  state.counters["GBps"] = static_cast<double>(rows * p) * 4.0 / per / 1e9;
  state.counters["GFLOPs"] = gflops;
  state.counters["peak_GFLOPs"] = peak;
  state.counters["frac_of_peak"] = gflops / peak;
  state.SetLabel("p=1e7 k=2048 f32 on " + cpu()->attribution_ops().description());
}

BENCHMARK(BM_KnnShapleyCpu)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_GemmPeakCpu)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_ProjectCpu)->Arg(8)->Arg(32)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
#if DIDMARK_HAVE_CUDA
  if (didmark::cuda_available()) bench_attr_cuda::register_benchmarks();
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
