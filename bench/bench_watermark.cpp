// Embed and verify throughput against the memory system, measured side by side.
//
// Each benchmark iteration times the watermark operation and its baseline on the same
// 1 GiB buffer, back to back: verify against a plain read (a sum with the same threads),
// embed (out of place) against a plain copy into the same destination. Counters:
//   op_GBps, base_GBps (medians), ratio = median of base_time / op_time  (target: >= 0.9)
// GPU variants (device-resident buffers) register when a CUDA device is present.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <random>
#include <algorithm>
#include <thread>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/watermark.hpp"

#if DIDMARK_HAVE_CUDA
#include "bench_watermark_cuda.hpp"
#endif

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kBytes = std::size_t{1} << 30;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

int threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

// The baselines: what the memory system gives a plain loop with the same threads.
typedef float v8f __attribute__((vector_size(32)));

float sum_range(const unsigned char* p, std::size_t bytes) {
  v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
  std::size_t i = 0;
  for (; i + 128 <= bytes; i += 128) {
    v8f x0, x1, x2, x3;
    std::memcpy(&x0, p + i, 32);
    std::memcpy(&x1, p + i + 32, 32);
    std::memcpy(&x2, p + i + 64, 32);
    std::memcpy(&x3, p + i + 96, 32);
    a0 += x0;
    a1 += x1;
    a2 += x2;
    a3 += x3;
  }
  const v8f s = (a0 + a1) + (a2 + a3);
  float t = 0;
  for (int l = 0; l < 8; ++l) t += s[l];
  return t;
}

template <class Fn>
void parallel(std::size_t bytes, Fn&& fn) {
  const int n = threads();
  std::vector<std::thread> ts;
  const std::size_t part = (bytes / static_cast<std::size_t>(n)) & ~std::size_t{127};
  for (int t = 0; t < n; ++t) {
    const std::size_t off = static_cast<std::size_t>(t) * part;
    const std::size_t len = t == n - 1 ? bytes - off : part;
    ts.emplace_back([&fn, off, len] { fn(off, len); });
  }
  for (auto& t : ts) t.join();
}

float plain_read(const unsigned char* p, std::size_t bytes) {
  std::vector<float> partial(static_cast<std::size_t>(threads()));
  std::atomic<int> idx{0};
  parallel(bytes, [&](std::size_t off, std::size_t len) { partial[static_cast<std::size_t>(idx++)] = sum_range(p + off, len); });
  float s = 0;
  for (float v : partial) s += v;
  return s;
}

void plain_copy(unsigned char* dst, const unsigned char* src, std::size_t bytes) {
  parallel(bytes, [&](std::size_t off, std::size_t len) { std::memcpy(dst + off, src + off, len); });
}

struct HostSet {
  didmark::DType dtype;
  std::vector<unsigned char> src, dst;
  didmark::NamedTensor s, d;
  explicit HostSet(didmark::DType t) : dtype(t), src(kBytes), dst(kBytes) {
    const int64_t n = static_cast<int64_t>(kBytes / didmark::dtype_size(t));
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (int64_t i = 0; i < n; ++i) {
      const float v = nd(rng);
      if (t == didmark::DType::f32) {
        std::memcpy(src.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = didmark::detail::f32_to_bf16_rne(v);
        std::memcpy(src.data() + 2 * i, &h, 2);
      }
    }
    std::memset(dst.data(), 0, dst.size());  // fault the pages in before timing
    s = {"bench.weight", didmark::TensorView::contiguous(src.data(), t, {n / 4096, 4096})};
    d = {"bench.weight", didmark::TensorView::contiguous(dst.data(), t, {n / 4096, 4096})};
  }
};

HostSet& host_set(didmark::DType t) {
  static HostSet f32(didmark::DType::f32);
  if (t == didmark::DType::f32) return f32;
  static HostSet bf16(didmark::DType::bf16);
  return bf16;
}

const didmark::WatermarkKey kKey = [] {
  didmark::WatermarkKey k;
  for (int i = 0; i < 32; ++i) k.bytes[static_cast<std::size_t>(i)] = static_cast<uint8_t>(i * 7 + 1);
  return k;
}();
const didmark::Payload kPayload = [] {
  std::vector<uint8_t> b(256);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>((i * 37) % 5 < 2);
  return didmark::Payload::from_bits(b);
}();

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Medians over the iterations, each of which timed the baseline and the operation back to
// back: this VM's memory bandwidth drifts by tens of percent between seconds, and a median of
// adjacent pairs follows the drift where sums over a run would mix it in.
void report(benchmark::State& state, const std::vector<double>& op_s, const std::vector<double>& base_s) {
  const double gb = static_cast<double>(kBytes) / 1e9;
  std::vector<double> ratios(op_s.size());
  for (std::size_t i = 0; i < op_s.size(); ++i) ratios[i] = base_s[i] / op_s[i];
  state.counters["op_GBps"] = gb / median(op_s);
  state.counters["base_GBps"] = gb / median(base_s);
  state.counters["ratio"] = median(ratios);
}

void BM_CpuVerifyVsRead(benchmark::State& state) {
  auto& h = host_set(static_cast<didmark::DType>(state.range(0)));
  auto backend = didmark::make_cpu_backend();
  didmark::WatermarkOptions o;
  std::vector<double> op, base;
  for (auto _ : state) {
    auto t0 = Clock::now();
    benchmark::DoNotOptimize(plain_read(h.src.data(), kBytes));
    auto t1 = Clock::now();
    auto r = didmark::verify(std::span(&h.s, 1), kKey, kPayload, o, *backend);
    benchmark::DoNotOptimize(r.z);
    auto t2 = Clock::now();
    base.push_back(seconds(t0, t1));
    op.push_back(seconds(t1, t2));
    state.SetIterationTime(seconds(t1, t2));
  }
  report(state, op, base);
  state.SetLabel(std::string(didmark::dtype_name(h.dtype)) + " 1 GiB, " + backend->description());
}

void BM_CpuEmbedVsCopy(benchmark::State& state) {
  auto& h = host_set(static_cast<didmark::DType>(state.range(0)));
  auto backend = didmark::make_cpu_backend();
  didmark::WatermarkOptions o;
  std::vector<double> op, base;
  for (auto _ : state) {
    auto t0 = Clock::now();
    plain_copy(h.dst.data(), h.src.data(), kBytes);
    benchmark::ClobberMemory();
    auto t1 = Clock::now();
    auto r = didmark::embed(std::span(&h.s, 1), std::span(&h.d, 1), kKey, kPayload, o, *backend);
    benchmark::DoNotOptimize(r.relative_change);
    auto t2 = Clock::now();
    base.push_back(seconds(t0, t1));
    op.push_back(seconds(t1, t2));
    state.SetIterationTime(seconds(t1, t2));
  }
  report(state, op, base);
  state.SetLabel(std::string(didmark::dtype_name(h.dtype)) + " 1 GiB, " + backend->description());
}

// Many keys at once (registry scans): verify cost per key on one buffer.
void BM_CpuVerifyKeys(benchmark::State& state) {
  auto& h = host_set(didmark::DType::f32);
  auto backend = didmark::make_cpu_backend();
  std::vector<didmark::Claim> claims;
  for (int64_t k = 0; k < state.range(0); ++k) {
    didmark::WatermarkKey key = kKey;
    key.bytes[0] = static_cast<uint8_t>(k);
    key.bytes[1] = static_cast<uint8_t>(k >> 8);
    claims.push_back({key, kPayload});
  }
  for (auto _ : state) {
    auto r = didmark::verify_many(std::span(&h.s, 1), claims, {}, *backend);
    benchmark::DoNotOptimize(r.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kBytes));
  state.counters["keys"] = static_cast<double>(state.range(0));
}

constexpr int64_t kF32 = static_cast<int64_t>(didmark::DType::f32);
constexpr int64_t kBF16 = static_cast<int64_t>(didmark::DType::bf16);

}  // namespace

BENCHMARK(BM_CpuVerifyVsRead)->Arg(kF32)->Arg(kBF16)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(15);
BENCHMARK(BM_CpuEmbedVsCopy)->Arg(kF32)->Arg(kBF16)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(15);
BENCHMARK(BM_CpuVerifyKeys)->Arg(1)->Arg(4)->Arg(16)->Unit(benchmark::kMillisecond)->Iterations(2);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
#if DIDMARK_HAVE_CUDA
  if (didmark::cuda_available()) bench_cuda::register_benchmarks(kBytes, kKey, kPayload);
#endif
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
