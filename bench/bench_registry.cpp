// One checkpoint against a registry: 1, 10^2 and 10^4 owners through verify_input (screen,
// then confirm), with the ratio to the 1-owner time measured in the same run.
//
// The checkpoint is a synthetic transformer-shaped safetensors file of 2^28 f32 parameters
// (1.07 GB) marked for owner 0 at the default strength, written once to
// $DIDMARK_BENCH_DIR (default: the temp folder)/didmark-registry-bench and reused; the file is
// read from the page cache (a first untimed pass brings it in). Owners are random keys; owner 0
// is the one whose mark is in the file. Counters:
//   ratio      time / time of 1 owner on the same file (BM_Registry/1 runs first)
//   screen_s   the screen's stages (stage1_s .. stage3_s each, carriers derived before stage 1);
//              confirm_s the full pass for the candidates
//   candidates owners confirmed
// BM_RegistryUnmarked is the same against the unmarked original (nobody to confirm), and
// BM_ScreenKernel the Backend::screen primitive alone (ns per key and carrier block).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "didmark/checkpoint.hpp"
#include "didmark/inputs.hpp"
#include "didmark/registry_scan.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kParams = int64_t{1} << 28;
constexpr std::size_t kMaxOwners = 10'000;

struct Files {
  fs::path plain, marked;
};

const std::vector<didmark::Owner>& owners() {
  static const std::vector<didmark::Owner> o = [] {
    std::vector<didmark::Owner> v;
    std::mt19937_64 rng(2026);
    for (std::size_t k = 0; k < kMaxOwners; ++k) {
      didmark::WatermarkKey key;
      for (auto& b : key.bytes) b = static_cast<uint8_t>(rng());
      std::vector<uint8_t> bits(256);
      for (auto& b : bits) b = static_cast<uint8_t>(rng() & 1);
      v.push_back({"did:example:owner" + std::to_string(k), key, didmark::Payload::from_bits(std::move(bits))});
    }
    return v;
  }();
  return o;
}

const Files& files() {
  static const Files f = [] {
    const char* env = std::getenv("DIDMARK_BENCH_DIR");
    const fs::path dir = fs::path(env && *env ? env : fs::temp_directory_path().string()) / "didmark-registry-bench";
    fs::create_directories(dir);
    Files out{dir / "plain.safetensors", dir / "marked.safetensors"};
    if (!fs::exists(out.plain)) {
      didmark::SyntheticCheckpointOptions so;
      so.params = kParams;
      so.overwrite = true;
      didmark::write_synthetic_checkpoint(out.plain, so);
    }
    if (!fs::exists(out.marked)) {
      const auto& o = owners()[0];
      didmark::embed_checkpoint(out.plain, out.marked, didmark::CheckpointFormat::safetensors, o.key, o.payload, {}, {});
    }
    for (const auto& p : {out.plain, out.marked}) {  // into the page cache
      const auto r = didmark::CheckpointReader::open(p, didmark::CheckpointFormat::safetensors);
      volatile float sink = 0;
      for (const auto& t : r.tensors())
        for (std::size_t i = 0; i < t.view.nbytes(); i += 4096) sink = sink + static_cast<const char*>(t.view.data)[i];
    }
    return out;
  }();
  return f;
}

std::map<std::string, double>& one_owner_seconds() {
  static std::map<std::string, double> m;
  return m;
}

void run_registry(benchmark::State& state, bool marked) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const fs::path& file = marked ? files().marked : files().plain;
  const std::span<const didmark::Owner> who(owners().data(), n);
  didmark::InputOptions o;
  o.watermark.scheme = didmark::Scheme::spread_spectrum;
  std::vector<double> secs, screen, confirm;
  std::vector<std::vector<double>> stage(3);  // seconds of each screen stage
  std::size_t candidates = 0, detected = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const didmark::FileVerdicts fv = didmark::verify_input(file, who, o);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    state.SetIterationTime(s);
    secs.push_back(s);
    screen.push_back(fv.screen ? fv.screen->screen_seconds : 0);
    confirm.push_back(fv.screen ? fv.screen->confirm_seconds : 0);
    for (std::size_t i = 0; i < stage.size(); ++i)
      stage[i].push_back(fv.screen && i < fv.screen->stages.size() ? fv.screen->stages[i].seconds : 0);
    candidates = fv.screen ? fv.screen->candidates : n;
    detected = 0;
    for (const auto& v : fv.verdicts) detected += v.detected ? 1 : 0;
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
  };
  const double t = median(secs);
  auto& base = one_owner_seconds();
  const std::string key = marked ? "marked" : "plain";
  if (n == 1) base[key] = t;
  state.counters["seconds"] = t;
  state.counters["ratio"] = base.count(key) ? t / base[key] : 0.0;
  state.counters["screen_s"] = median(screen);
  state.counters["confirm_s"] = median(confirm);
  for (std::size_t i = 0; i < stage.size(); ++i) state.counters["stage" + std::to_string(i + 1) + "_s"] = median(stage[i]);
  state.counters["candidates"] = static_cast<double>(candidates);
  state.counters["detected"] = static_cast<double>(detected);
  state.SetLabel(std::to_string(n) + " owners, " + didmark::default_backend().description());
}

void BM_Registry(benchmark::State& state) { run_registry(state, true); }
void BM_RegistryUnmarked(benchmark::State& state) { run_registry(state, false); }

BENCHMARK(BM_Registry)->Arg(1)->Arg(100)->Arg(10'000)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
BENCHMARK(BM_RegistryUnmarked)
    ->Arg(1)
    ->Arg(100)
    ->Arg(10'000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

// The primitive alone: a 16M-element f32 tensor sampled at 1 group in 32 (512K elements, 4096
// carrier blocks), K keys in one call.
void BM_ScreenKernel(benchmark::State& state) {
  const auto K = static_cast<std::size_t>(state.range(0));
  const int64_t n = int64_t{1} << 24;
  std::vector<float> w(static_cast<std::size_t>(n));
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 0.02f);
  for (auto& x : w) x = nd(rng);
  const didmark::TensorView v = didmark::TensorView::contiguous(w.data(), didmark::DType::f32, {n});
  std::vector<didmark::detail::CarrierSpec> cs;
  std::vector<uint64_t> bits;
  for (std::size_t k = 0; k < K; ++k) {
    cs.push_back(didmark::derive_carrier(owners()[k].key, "blocks.0.weight", 256));
    for (int i = 0; i < 4; ++i) bits.push_back(rng());
  }
  didmark::Backend& be = didmark::default_backend();
  didmark::ScreenSums out;
  const didmark::ScreenSample sample{32, 5};
  for (auto _ : state) {
    be.screen(v, sample, cs, bits, out);
    benchmark::DoNotOptimize(out.t.data());
  }
  const double key_blocks = static_cast<double>(K) * static_cast<double>(n / 32 / 128);
  state.counters["ns_per_key_block"] =
      benchmark::Counter(key_blocks * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetLabel(be.description());
}
BENCHMARK(BM_ScreenKernel)->Arg(1024)->Arg(10'000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
