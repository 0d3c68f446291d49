// Built-in synthetic tables and arrays.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "common/thread_pool.hpp"
#include "didmark/backend.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

constexpr const char* kFirst[] = {"Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John",
                                  "Radia", "Ken", "Margaret", "Dennis", "Shafi", "Leslie", "Tim", "Hedy"};
constexpr const char* kLast[] = {"Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus",
                                 "Perlman", "Thompson", "Hamilton", "Ritchie", "Goldwasser", "Lamport", "Lee", "Lamarr"};
constexpr const char* kCity[] = {"Lyon", "Osaka", "Quito", "Oslo", "Accra", "Perth", "Porto", "Pune",
                                 "Cusco", "Graz", "Hanoi", "Tampere", "Rosario", "Leeds", "Kobe", "Tartu"};
constexpr int64_t kChunkRows = 1 << 16;

}  // namespace

std::string synthetic_table_csv(int64_t rows, uint64_t seed) {
  DIDMARK_EXPECTS(rows >= 0, invalid_argument, "synthetic table: rows must be >= 0");
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  std::vector<std::string> parts(static_cast<std::size_t>(chunks));
  make_cpu_backend()->host_pool().parallel_for(chunks, [&](int, int64_t c) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(c));
    std::string& out = parts[static_cast<std::size_t>(c)];
    out.reserve(static_cast<std::size_t>(kChunkRows) * 64);
    char buf[256];
    const int64_t r1 = std::min(rows, (c + 1) * kChunkRows);
    std::normal_distribution<double> income(52000.0, 18000.0);
    for (int64_t r = c * kChunkRows; r < r1; ++r) {
      const uint64_t a = rng();
      const char* first = kFirst[a & 15];
      const char* last = kLast[(a >> 4) & 15];
      const char* city = kCity[(a >> 8) & 15];
      const int age = 18 + static_cast<int>((a >> 12) % 73);
      const int visits = static_cast<int>((a >> 20) % 1000);
      const double inc = std::max(0.0, income(rng));
      const double score = static_cast<double>((a >> 32) % 100000) / 1000.0;
      const int kind = static_cast<int>((a >> 56) & 7);
      int n;
      if (kind == 0) {
        n = std::snprintf(buf, sizeof buf, "%lld,\"%s, %s\",%s,%d,%.2f,%.3f,%d\n", static_cast<long long>(100000 + r),
                          last, first, city, age, inc, score, visits);
      } else if (kind == 1) {
        n = std::snprintf(buf, sizeof buf, "%lld,\"%s \"\"%c\"\" %s\",%s,%d,%.2f,%.3f,%d\n",
                          static_cast<long long>(100000 + r), first, last[0], last, city, age, inc, score, visits);
      } else {
        n = std::snprintf(buf, sizeof buf, "%lld,%s %s,%s,%d,%.2f,%.3f,%d\n", static_cast<long long>(100000 + r), first,
                          last, city, age, inc, score, visits);
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
  });
  std::size_t total = 0;
  for (const auto& p : parts) total += p.size();
  std::string out = "id,name,city,age,income,score,visits\n";
  out.reserve(out.size() + total);
  for (const auto& p : parts) out += p;
  return out;
}

std::vector<float> synthetic_embeddings(int64_t rows, int64_t dim, uint64_t seed) {
  DIDMARK_EXPECTS(rows >= 0 && dim >= 1, invalid_argument, "synthetic array: rows must be >= 0 and dim >= 1");
  std::vector<float> x(static_cast<std::size_t>(rows * dim));
  const int64_t per = std::max<int64_t>(1, kChunkRows * 16 / dim);
  const int64_t chunks = (rows + per - 1) / per;
  make_cpu_backend()->host_pool().parallel_for(chunks, [&](int, int64_t c) {
    std::mt19937_64 rng(seed * 0xD1B54A32D192ED03ull + static_cast<uint64_t>(c));
    std::normal_distribution<double> nd(0.0, 1.0);
    const int64_t r1 = std::min(rows, (c + 1) * per);
    std::vector<double> v(static_cast<std::size_t>(dim));
    for (int64_t r = c * per; r < r1; ++r) {
      double ss = 0;
      for (auto& e : v) {
        e = nd(rng);
        ss += e * e;
      }
      const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
      for (int64_t j = 0; j < dim; ++j)
        x[static_cast<std::size_t>(r * dim + j)] = static_cast<float>(v[static_cast<std::size_t>(j)] * inv);
    }
  });
  return x;
}

}  // namespace didmark
