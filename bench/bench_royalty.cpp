// Royalty splitting at scale: 10^6 payees (did:key DIDs, random double weights), the exact
// split alone, and split + signed statement (canonical JSON, SHA-256, Ed25519); a cascade of
// three levels; weights so far apart that the shares need big integers.
// docs/perf/royalty.md records the figures.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>

#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"

namespace {

std::vector<didmark::Payee> make_payees(std::size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<didmark::Payee> ps;
  ps.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::array<uint8_t, 32> pk{};
    for (auto& b : pk) b = static_cast<uint8_t>(rng());
    ps.push_back({didmark::did_key_from_ed25519(pk), didmark::Weight::from_double(u(rng))});
  }
  return ps;
}

const std::vector<didmark::Payee>& payees(std::size_t n) {
  static std::vector<didmark::Payee> ps;
  if (ps.size() != n) ps = make_payees(n, 42);
  return ps;
}

constexpr didmark::Amount kRevenue = static_cast<didmark::Amount>(123456789012345ull) * 1000003u;

void BM_Split(benchmark::State& state) {
  const auto& ps = payees(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    auto out = didmark::split(kRevenue, ps);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Split)->Arg(1000)->Arg(1000000)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

void BM_SplitAndSign(benchmark::State& state) {
  const auto& ps = payees(static_cast<std::size_t>(state.range(0)));
  const std::array<uint8_t, 32> seed{7};
  const didmark::Identity op = didmark::Identity::from_seed(seed);
  didmark::StatementOptions so;
  so.timestamp = "2026-11-25T12:00:00Z";
  std::size_t bytes = 0;
  for (auto _ : state) {
    // The policy holds a copy of the payees, as a caller building one would.
    state.PauseTiming();
    didmark::Policy policy = didmark::single_level_policy(ps);
    state.ResumeTiming();
    const auto res = didmark::run_cascade(kRevenue, std::move(policy));
    const std::string st = didmark::make_statement(res, op, so);
    bytes = st.size();
    benchmark::DoNotOptimize(st.data());
  }
  state.counters["statement_MB"] = static_cast<double>(bytes) / 1e6;
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SplitAndSign)->Arg(1000)->Arg(1000000)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// Platform fee (one payee), base-model owners (ten), data contributors (N): the statement
// lists the contributors in their level and in the totals.
void BM_CascadeAndSign(benchmark::State& state) {
  const auto& ps = payees(static_cast<std::size_t>(state.range(0)));
  const std::array<uint8_t, 32> seed{7};
  const didmark::Identity op = didmark::Identity::from_seed(seed);
  didmark::StatementOptions so;
  so.timestamp = "2026-11-25T12:00:00Z";
  std::size_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    didmark::Policy policy;
    didmark::Level fee, base, data;
    fee.name = "platform fee";
    fee.keep_bps = 1000;
    fee.payees = {{op.did(), didmark::Weight::from_double(1)}};
    base.name = "base-model owners";
    base.keep_bps = 3000;
    for (int i = 0; i < 10; ++i) base.payees.push_back({"did:web:lab" + std::to_string(i) + ".example", didmark::Weight::from_double(i + 1)});
    data.name = "data contributors";
    data.payees = ps;
    policy.levels = {std::move(fee), std::move(base), std::move(data)};
    state.ResumeTiming();
    const auto res = didmark::run_cascade(kRevenue, std::move(policy));
    const std::string st = didmark::make_statement(res, op, so);
    bytes = st.size();
    benchmark::DoNotOptimize(st.data());
  }
  state.counters["statement_MB"] = static_cast<double>(bytes) / 1e6;
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_CascadeAndSign)->Arg(1000000)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// Weights spread over 2^-500 .. 2^500: the common-scale integers exceed 128 bits, so every
// share is computed with the big integers (the general path).
void BM_SplitWideWeights(benchmark::State& state) {
  static std::vector<didmark::Payee> ps;
  const auto n = static_cast<std::size_t>(state.range(0));
  if (ps.size() != n) {
    ps = payees(n);
    std::mt19937_64 rng(43);
    for (auto& p : ps) p.weight = didmark::Weight::from_double(std::ldexp(p.weight.to_double(), static_cast<int>(rng() % 1001) - 500));
  }
  for (auto _ : state) {
    auto out = didmark::split(kRevenue, ps);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SplitWideWeights)->Arg(1000000)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
