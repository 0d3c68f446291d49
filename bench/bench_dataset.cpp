// Dataset marks. Table: a synthetic 10^7-row CSV (DIDMARK_BENCH_TABLE_ROWS to change),
// rows/s for
//   parse          CsvTable::parse alone (the baseline),
//   embed_only     embed_table on a parsed table (keyed selection + cell edits),
//   embed_file     parse + embed_table + render (bytes in, marked bytes out),
//   verify_only    verify_table on a parsed table (one claim),
//   verify_file    parse + verify_table.
// Array: 10^6 x 128 f32 (DIDMARK_BENCH_ARRAY_ROWS), rows/s and GB/s for embed and verify.
// The backend is the default one (GPU when present; DIDMARK_DEVICE=cpu forces the CPU).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>

#include "didmark/dataset.hpp"

using namespace didmark;

namespace {

int64_t env_rows(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : fallback;
}

const std::string& table_text() {
  static const std::string t = synthetic_table_csv(env_rows("DIDMARK_BENCH_TABLE_ROWS", 10'000'000), 1);
  return t;
}

const CsvTable& parsed() {
  static const CsvTable t = CsvTable::parse(table_text());
  return t;
}

WatermarkKey key() {
  WatermarkKey k;
  std::mt19937_64 rng(7);
  for (auto& b : k.bytes) b = static_cast<uint8_t>(rng());
  return k;
}

Payload payload() {
  std::vector<uint8_t> bits(kDefaultPayloadBits);
  std::mt19937_64 rng(8);
  for (auto& b : bits) b = rng() & 1;
  return Payload::from_bits(bits);
}

void set_rows(benchmark::State& st, int64_t rows, double bytes) {
  st.SetItemsProcessed(st.iterations() * rows);
  st.SetBytesProcessed(static_cast<int64_t>(static_cast<double>(st.iterations()) * bytes));
  st.counters["rows"] = static_cast<double>(rows);
}

void BM_TableParse(benchmark::State& st) {
  const std::string& text = table_text();
  for (auto _ : st) {
    st.PauseTiming();
    std::string copy = text;
    st.ResumeTiming();
    auto t = CsvTable::parse(std::move(copy));
    benchmark::DoNotOptimize(t.rows());
  }
  set_rows(st, parsed().rows(), static_cast<double>(text.size()));
}

void BM_TableEmbedOnly(benchmark::State& st) {
  const CsvTable& t = parsed();
  const auto k = key();
  const auto p = payload();
  for (auto _ : st) {
    auto m = embed_table(t, k, p);
    benchmark::DoNotOptimize(m.edits.data());
  }
  set_rows(st, t.rows(), static_cast<double>(t.text().size()));
}

void BM_TableEmbedFile(benchmark::State& st) {
  const std::string& text = table_text();
  const auto k = key();
  const auto p = payload();
  for (auto _ : st) {
    st.PauseTiming();
    std::string copy = text;
    st.ResumeTiming();
    const auto t = CsvTable::parse(std::move(copy));
    const auto m = embed_table(t, k, p);
    auto out = t.render(m.edits);
    benchmark::DoNotOptimize(out.data());
  }
  set_rows(st, parsed().rows(), static_cast<double>(text.size()));
}

void BM_TableVerifyOnly(benchmark::State& st) {
  const CsvTable& t = parsed();
  const Claim c{key(), payload()};
  for (auto _ : st) {
    auto v = verify_table(t, std::span(&c, 1));
    benchmark::DoNotOptimize(v[0].matches);
  }
  set_rows(st, t.rows(), static_cast<double>(t.text().size()));
}

void BM_TableVerifyFile(benchmark::State& st) {
  const std::string& text = table_text();
  const Claim c{key(), payload()};
  for (auto _ : st) {
    st.PauseTiming();
    std::string copy = text;
    st.ResumeTiming();
    const auto t = CsvTable::parse(std::move(copy));
    auto v = verify_table(t, std::span(&c, 1));
    benchmark::DoNotOptimize(v[0].matches);
  }
  set_rows(st, parsed().rows(), static_cast<double>(text.size()));
}

struct ArrayData {
  int64_t rows, dim = 128;
  std::vector<float> x, y;
  std::vector<int64_t> ids;
};

ArrayData& array_data() {
  static ArrayData a = [] {
    ArrayData d;
    d.rows = env_rows("DIDMARK_BENCH_ARRAY_ROWS", 1'000'000);
    d.x = synthetic_embeddings(d.rows, d.dim, 3);
    d.y = d.x;
    d.ids.resize(static_cast<std::size_t>(d.rows));
    for (int64_t i = 0; i < d.rows; ++i) d.ids[static_cast<std::size_t>(i)] = i * 7 + 1;
    return d;
  }();
  return a;
}

void BM_ArrayEmbed(benchmark::State& st) {
  ArrayData& a = array_data();
  const auto src = TensorView::contiguous(a.x.data(), DType::f32, {a.rows, a.dim});
  const auto dst = TensorView::contiguous(a.y.data(), DType::f32, {a.rows, a.dim});
  const auto k = key();
  const auto p = payload();
  for (auto _ : st) {
    auto r = embed_array(src, dst, a.ids, k, p);
    benchmark::DoNotOptimize(r.min_cosine);
  }
  set_rows(st, a.rows, static_cast<double>(a.rows * a.dim) * 4.0);
}

void BM_ArrayVerify(benchmark::State& st) {
  ArrayData& a = array_data();
  const auto x = TensorView::contiguous(a.y.data(), DType::f32, {a.rows, a.dim});
  const Claim c{key(), payload()};
  for (auto _ : st) {
    auto v = verify_array(x, a.ids, std::span(&c, 1));
    benchmark::DoNotOptimize(v[0].z);
  }
  set_rows(st, a.rows, static_cast<double>(a.rows * a.dim) * 4.0);
}

}  // namespace

BENCHMARK(BM_TableParse)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_TableEmbedOnly)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_TableEmbedFile)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_TableVerifyOnly)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_TableVerifyFile)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
BENCHMARK(BM_ArrayEmbed)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();
BENCHMARK(BM_ArrayVerify)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

BENCHMARK_MAIN();
