// Realigned verification against the plain verify pass, in one run, on a >= 1 GB synthetic
// checkpoint (write_synthetic_checkpoint, Llama-style names, f32).
//
// Set-up (once): write the checkpoint, load it, mark it, sketch it (default subset and
// --sketch-all), and make a stolen copy with every dimension permuted (the lab's
// permute:all). Each benchmark iteration then times, back to back on the same machine state:
//   plain:     verify_many on the stolen copy (the ordinary blind test: one read of 1 GB);
//   realigned: verify_realigned on the stolen copy (realignment + the blind test on the
//              realigned tensors).
// Counters (medians over iterations): plain_ms, realigned_ms, align_ms (the realignment's own
// time), ratio = realigned / plain (target <= 3), z (realigned, to show it worked), tensors
// (realigned). Cases: the default sketch; --sketch-all with the default realignment budget
// (RealignOptions::target_z = 30); --sketch-all realigning every tensor (target_z = 0); and
// the unattacked model (realignment finds nothing moved, then the ordinary test).
// DIDMARK_BENCH_BYTES overrides the size (bytes); DIDMARK_BENCH_DIR the scratch folder.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "didmark/alignment.hpp"
#include "didmark/attack.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/watermark.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Fixture {
  std::shared_ptr<didmark::Backend> backend = didmark::make_cpu_backend();
  didmark::TensorSet marked, stolen;
  didmark::AlignmentSketch sketch_default, sketch_all;
  didmark::Claim claim;
  double sketch_default_ms = 0, sketch_all_ms = 0;
  uint64_t bytes = 0;

  Fixture() {
    const char* env_bytes = std::getenv("DIDMARK_BENCH_BYTES");
    const double want = env_bytes ? std::atof(env_bytes) : 1.1e9;
    const char* env_dir = std::getenv("DIDMARK_BENCH_DIR");
    const fs::path dir = env_dir ? fs::path(env_dir) : fs::temp_directory_path();
    const fs::path file = dir / "didmark_bench_alignment.safetensors";
    didmark::SyntheticCheckpointOptions so;
    so.params = static_cast<int64_t>(want / 4);
    so.hidden = 1024;
    so.overwrite = true;
    didmark::write_synthetic_checkpoint(file, so);
    marked = didmark::load_tensor_set(file);
    fs::remove(file);
    bytes = marked.bytes();
    std::mt19937_64 rng(7);
    for (auto& b : claim.key.bytes) b = static_cast<uint8_t>(rng());
    std::vector<uint8_t> bits(256);
    for (auto& b : bits) b = static_cast<uint8_t>(rng() & 1);
    claim.payload = didmark::Payload::from_bits(bits);
    const auto named = marked.named();
    didmark::embed_in_place(named, claim.key, claim.payload, {}, *backend);
    didmark::SketchOptions opt;
    auto t0 = Clock::now();
    sketch_default = didmark::make_sketch(named, "did:example:bench", opt, *backend);
    sketch_default_ms = ms_since(t0);
    opt.all = true;
    t0 = Clock::now();
    sketch_all = didmark::make_sketch(named, "did:example:bench", opt, *backend);
    sketch_all_ms = ms_since(t0);
    stolen = marked;
    didmark::AttackContext ctx;
    ctx.seed = 3;
    ctx.hints.heads = 16;
    didmark::apply_attack(stolen, didmark::parse_attack_spec("permute:all"), ctx);
    std::printf("checkpoint: %.2f GB in %zu tensors; sketch %.1f kB (%.3f%%) default, %.1f kB (%.3f%%) all; "
                "sketching took %.0f ms / %.0f ms\n",
                static_cast<double>(bytes) / 1e9, marked.tensors.size(), static_cast<double>(sketch_default.bytes()) / 1e3,
                100 * sketch_default.fraction(), static_cast<double>(sketch_all.bytes()) / 1e3, 100 * sketch_all.fraction(),
                sketch_default_ms, sketch_all_ms);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

double how_tensors(Fixture& f, const didmark::AlignmentSketch& sk, std::span<const didmark::NamedTensor> suspect,
                   double target_z) {
  didmark::RealignOptions ro;
  ro.target_z = target_z;
  return didmark::realign_for_owner(suspect, sk, {}, *f.backend, ro).report().tensors_matched;
}

void run_pair(benchmark::State& state, const didmark::AlignmentSketch& sk, bool attacked, double target_z = 30) {
  Fixture& f = fixture();
  const auto suspect = (attacked ? f.stolen : f.marked).named();
  std::vector<double> plain, realigned, align, z;
  for (auto _ : state) {
    auto t0 = Clock::now();
    const auto p = didmark::verify_many(suspect, std::span(&f.claim, 1), {}, *f.backend);
    plain.push_back(ms_since(t0));
    benchmark::DoNotOptimize(p);
    didmark::AlignmentReport how;
    t0 = Clock::now();
    didmark::RealignOptions ro;
    ro.target_z = target_z;
    const auto r = didmark::verify_realigned(suspect, sk, std::span(&f.claim, 1), {}, *f.backend, &how, ro);
    realigned.push_back(ms_since(t0));
    align.push_back(how.seconds * 1e3);
    z.push_back(r[0].z);
  }
  std::vector<double> ratio(plain.size());
  for (std::size_t i = 0; i < plain.size(); ++i) ratio[i] = realigned[i] / plain[i];
  state.counters["plain_ms"] = median(plain);
  state.counters["realigned_ms"] = median(realigned);
  state.counters["align_ms"] = median(align);
  state.counters["ratio"] = median(ratio);
  state.counters["z"] = median(z);
  state.counters["GB"] = static_cast<double>(f.bytes) / 1e9;
  state.counters["tensors"] = how_tensors(f, sk, suspect, target_z);
}

void BM_RealignedVsPlain_DefaultSketch(benchmark::State& s) { run_pair(s, fixture().sketch_default, true); }
void BM_RealignedVsPlain_SketchAll(benchmark::State& s) { run_pair(s, fixture().sketch_all, true); }
void BM_RealignedVsPlain_SketchAllEveryTensor(benchmark::State& s) { run_pair(s, fixture().sketch_all, true, 0); }
void BM_RealignedVsPlain_Unattacked(benchmark::State& s) { run_pair(s, fixture().sketch_all, false); }

void BM_Sketch(benchmark::State& s) {
  Fixture& f = fixture();
  const auto named = f.marked.named();
  didmark::SketchOptions opt;
  opt.all = s.range(0) != 0;
  for (auto _ : s) benchmark::DoNotOptimize(didmark::make_sketch(named, "did:example:bench", opt, *f.backend));
  s.counters["GB"] = static_cast<double>(f.bytes) / 1e9;
}

BENCHMARK(BM_RealignedVsPlain_DefaultSketch)->Unit(benchmark::kMillisecond)->Iterations(7)->UseRealTime();
BENCHMARK(BM_RealignedVsPlain_SketchAll)->Unit(benchmark::kMillisecond)->Iterations(9)->UseRealTime();
BENCHMARK(BM_RealignedVsPlain_SketchAllEveryTensor)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_RealignedVsPlain_Unattacked)->Unit(benchmark::kMillisecond)->Iterations(9)->UseRealTime();
BENCHMARK(BM_Sketch)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->Iterations(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
