// Checkpoint verification and scanning against reading the same file, cold and warm.
//
// The file: a synthetic f32 safetensors checkpoint of at least 2 GiB (made once, kept in
// $DIDMARK_BENCH_DIR, default /tmp). Cold iterations evict it from the page cache first
// (posix_fadvise DONTNEED, outside the timed region); warm iterations read it with read()
// first. Benchmarks run in order, so every ratio is against the read baseline of the same run:
//   read/{warm,cold}        read() in 8 MiB chunks, as `cat FILE > /dev/null`
//   touch/{warm,cold}       mmap (MADV_SEQUENTIAL) + a vector sum over every byte, all threads
//   verify/{warm,cold}      verify_checkpoint, 1 key            counter vs_read = read time / verify time
//   scan/keys:K/{warm,cold} verify_checkpoint with K keys       counters vs_read, per_key_s
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kParams = 540'000'000;  // x 4 bytes > 2 GiB

const fs::path& bench_file() {
  static const fs::path path = [] {
    const char* dir = std::getenv("DIDMARK_BENCH_DIR");
    fs::path p = fs::path(dir && *dir ? dir : "/tmp") / "didmark-bench-2g.safetensors";
    std::error_code ec;
    if (!fs::exists(p, ec) || fs::file_size(p, ec) < (uint64_t{2} << 30)) {
      didmark::SyntheticCheckpointOptions o;
      o.params = kParams;
      o.overwrite = true;
      didmark::write_synthetic_checkpoint(p, o);
    }
    return p;
  }();
  return path;
}

void evict(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

void warm_up(const fs::path& p) {
  std::vector<char> buf(8 << 20);
  const int fd = ::open(p.c_str(), O_RDONLY);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
}

double read_file(const fs::path& p) {
  static std::vector<char> buf(8 << 20);
  const auto t0 = Clock::now();
  const int fd = ::open(p.c_str(), O_RDONLY);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  ssize_t n;
  uint64_t total = 0;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) total += static_cast<uint64_t>(n);
  ::close(fd);
  benchmark::DoNotOptimize(total);
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

typedef float v8f __attribute__((vector_size(32)));

double touch_file(const fs::path& p) {
  const auto t0 = Clock::now();
  didmark::MappedFile f(p);
  ::madvise(const_cast<unsigned char*>(f.data()), f.size(), MADV_SEQUENTIAL);  // as the checkpoint reader does
  const unsigned nt = std::max(1u, std::thread::hardware_concurrency());
  std::vector<float> sums(nt);
  std::vector<std::thread> ts;
  const std::size_t chunk = (f.size() / nt) & ~std::size_t{127};
  for (unsigned t = 0; t < nt; ++t)
    ts.emplace_back([&, t] {
      const unsigned char* b = f.data() + t * chunk;
      const std::size_t len = t + 1 == nt ? f.size() - t * chunk : chunk;
      v8f a0 = {}, a1 = {};
      std::size_t i = 0;
      for (; i + 64 <= len; i += 64) {
        v8f x0, x1;
        __builtin_memcpy(&x0, b + i, 32);
        __builtin_memcpy(&x1, b + i + 32, 32);
        a0 += x0;
        a1 += x1;
      }
      v8f a = a0 + a1;
      sums[t] = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    });
  for (auto& t : ts) t.join();
  benchmark::DoNotOptimize(sums.data());
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<didmark::Claim> claims(int k) {
  std::vector<didmark::Claim> out;
  std::mt19937_64 rng(42);
  for (int i = 0; i < k; ++i) {
    didmark::Claim c;
    for (auto& b : c.key.bytes) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> bits(didmark::kDefaultPayloadBits);
    for (auto& b : bits) b = rng() & 1;
    c.payload = didmark::Payload::from_bits(bits);
    out.push_back(std::move(c));
  }
  return out;
}

double verify_file(const fs::path& p, const std::vector<didmark::Claim>& c) {
  const auto t0 = Clock::now();
  const auto r = didmark::verify_checkpoint(p, didmark::CheckpointFormat::safetensors, c, {});
  benchmark::DoNotOptimize(r.data());
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Mean seconds of the read baseline per cache state, for the ratios.
std::map<bool, double>& read_seconds() {
  static std::map<bool, double> m;
  return m;
}
std::map<bool, double>& one_key_seconds() {
  static std::map<bool, double> m;
  return m;
}

template <class F>
void run(benchmark::State& state, bool cold, F&& op) {
  const fs::path& p = bench_file();
  const auto bytes = static_cast<double>(fs::file_size(p));
  static bool first = true;  // one untimed run: backend threads, first-touch costs
  if (first) {
    first = false;
    verify_file(p, claims(1));
  }
  double total = 0;
  int n = 0;
  for (auto _ : state) {
    if (cold)
      evict(p);
    else
      warm_up(p);
    const double s = op(p);
    state.SetIterationTime(s);
    total += s;
    ++n;
  }
  const double mean = total / n;
  state.counters["GBps"] = bytes / mean / 1e9;
  state.counters["GiB"] = bytes / (1 << 30);
  state.counters["cold"] = cold;
  if (read_seconds().count(cold)) state.counters["vs_read"] = read_seconds()[cold] / mean;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * n);
  state.SetLabel(cold ? "cold" : "warm");
  state.counters["mean_s"] = mean;
}

void BM_Read(benchmark::State& state) {
  const bool cold = state.range(0);
  run(state, cold, read_file);
  read_seconds()[cold] = state.counters["mean_s"];
}

void BM_Touch(benchmark::State& state) { run(state, state.range(0), touch_file); }

void BM_Verify(benchmark::State& state) {
  const bool cold = state.range(0);
  const auto c = claims(1);
  run(state, cold, [&](const fs::path& p) { return verify_file(p, c); });
  one_key_seconds()[cold] = state.counters["mean_s"];
}

void BM_Scan(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const bool cold = state.range(1);
  const auto c = claims(k);
  run(state, cold, [&](const fs::path& p) { return verify_file(p, c); });
  state.counters["keys"] = k;
  if (one_key_seconds().count(cold) && k > 1)
    state.counters["per_key_s"] = (state.counters["mean_s"] - one_key_seconds()[cold]) / (k - 1);
}

// Warm runs first, then cold ones: measured, a cold phase slows the warm runs after it.
BENCHMARK(BM_Read)->Name("read/warm")->Arg(0)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Touch)->Name("touch/warm")->Arg(0)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Verify)->Name("verify/warm")->Arg(0)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Scan)
    ->Name("scan/warm")
    ->ArgNames({"keys", ""})
    ->ArgsProduct({{2, 4, 8, 16}, {0}})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Read)->Name("read/cold")->Arg(1)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Touch)->Name("touch/cold")->Arg(1)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Verify)->Name("verify/cold")->Arg(1)->UseManualTime()->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Scan)
    ->Name("scan/cold")
    ->ArgNames({"keys", ""})
    ->Args({8, 1})
    ->UseManualTime()
    ->Iterations(3)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
