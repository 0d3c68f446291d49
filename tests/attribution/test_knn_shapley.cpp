// Exact KNN-Shapley against Shapley values computed by enumerating every subset, plus the
// properties the implementation promises (tiling, threads, dtypes, ties, CPU/GPU parity).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <tuple>

#include "didmark/attribution.hpp"
#include "didmark/error.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

struct Problem {
  Buffer x, y, q, yq;
  int64_t n = 0, m = 0, d = 0;
};

// Random problem; `grid` > 0 draws integer coordinates in [0, grid) (exact distances, many ties).
Problem make_problem(int64_t n, int64_t m, int64_t d, int classes, uint64_t seed, DType t = DType::f64, int grid = 0) {
  Problem p;
  p.n = n, p.m = m, p.d = d;
  p.x = Buffer("x", t, {n, d});
  p.q = Buffer("q", t, {m, d});
  p.y = Buffer("y", DType::i64, {n});
  p.yq = Buffer("yq", DType::i64, {m});
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_int_distribution<int> gi(0, std::max(0, grid - 1));
  std::uniform_int_distribution<int> li(0, classes - 1);
  auto draw = [&] { return grid > 0 ? static_cast<double>(gi(rng)) : nd(rng); };
  for (int64_t i = 0; i < n * d; ++i) test::set(p.x.view, i, draw());
  for (int64_t i = 0; i < m * d; ++i) test::set(p.q.view, i, draw());
  for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(p.y.view.data)[i] = li(rng);
  for (int64_t i = 0; i < m; ++i) static_cast<int64_t*>(p.yq.view.data)[i] = li(rng);
  return p;
}

// Shapley values of the K-NN utility U(S) = (1/K) sum_{top min(K,|S|) of S} 1[y = y_q] by
// enumerating all 2^N subsets; the order is (exact distance, index).
std::vector<double> brute_force(const Problem& p, int k) {
  const int n = static_cast<int>(p.n);
  std::vector<double> out(static_cast<std::size_t>(n), 0.0);
  std::vector<double> fact(static_cast<std::size_t>(n) + 1, 1.0);
  for (int i = 1; i <= n; ++i) fact[static_cast<std::size_t>(i)] = fact[static_cast<std::size_t>(i) - 1] * i;
  const auto* y = static_cast<const int64_t*>(p.y.view.data);
  for (int64_t qi = 0; qi < p.m; ++qi) {
    std::vector<double> dist(static_cast<std::size_t>(n));
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < p.d; ++c) {
        const double diff = test::get(p.x.view, j * p.d + c) - test::get(p.q.view, qi * p.d + c);
        s += diff * diff;
      }
      dist[static_cast<std::size_t>(j)] = s;
    }
    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return dist[static_cast<std::size_t>(a)] < dist[static_cast<std::size_t>(b)]; });
    const int64_t label = static_cast<const int64_t*>(p.yq.view.data)[qi];
    auto utility = [&](uint32_t mask) {
      int taken = 0, hits = 0;
      for (int r = 0; r < n && taken < k; ++r) {
        const int j = order[static_cast<std::size_t>(r)];
        if (mask >> j & 1u) {
          ++taken;
          hits += y[j] == label;
        }
      }
      return static_cast<double>(hits) / k;
    };
    std::vector<double> u(std::size_t{1} << n);
    for (uint32_t mask = 0; mask < (1u << n); ++mask) u[mask] = utility(mask);
    for (int i = 0; i < n; ++i) {
      double phi = 0;
      for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        if (mask >> i & 1u) continue;
        const int s = __builtin_popcount(mask);
        const double w = fact[static_cast<std::size_t>(s)] * fact[static_cast<std::size_t>(n - s - 1)] / fact[static_cast<std::size_t>(n)];
        phi += w * (u[mask | (1u << i)] - u[mask]);
      }
      out[static_cast<std::size_t>(i)] += phi / static_cast<double>(p.m);
    }
  }
  return out;
}

KnnShapleyReport value(const Problem& p, int k, KnnShapleyOptions o = {}, Backend* be = nullptr) {
  o.k = k;
  static auto cpu = make_cpu_backend(1);
  return knn_shapley(p.x.view, p.y.view, p.q.view, p.yq.view, o, std::nullopt, be ? *be : *cpu);
}

void expect_near_all(const std::vector<double>& a, const std::vector<double>& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << what << " row " << i;
}

using test::error_of;

}  // namespace

TEST(KnnShapley, MatchesSubsetEnumerationInF64) {
  for (int64_t n = 1; n <= 12; ++n) {
    for (int k : {1, 2, 3, 5, 13}) {
      const Problem p = make_problem(n, 4, 3, 3, 1000 + static_cast<uint64_t>(n * 31 + k));
      const auto r = value(p, k);
      expect_near_all(r.values, brute_force(p, k), 1e-12, "n=" + std::to_string(n) + " k=" + std::to_string(k));
    }
  }
}

TEST(KnnShapley, TiesAreBrokenByIndexOnExactDistances) {
  // Integer coordinates: every distance is exact in f32 and f64, so ties are real ties.
  for (DType t : {DType::f64, DType::f32}) {
    for (uint64_t seed = 0; seed < 6; ++seed) {
      const Problem p = make_problem(12, 5, 2, 2, 77 + seed, t, 3);
      for (int k : {1, 3, 6}) expect_near_all(value(p, k).values, brute_force(p, k), 1e-12, "grid");
    }
  }
}

TEST(KnnShapley, IdenticalRowsTieByIndexWhateverTheirValues) {
  Problem p = make_problem(12, 6, 5, 2, 4242);
  // Rows 7, 9 and 11 copy rows 1, 2 and 1: non-integer values, identical distances.
  auto copy_row = [&](int64_t dst, int64_t src) {
    for (int64_t c = 0; c < p.d; ++c) test::set(p.x.view, dst * p.d + c, test::get(p.x.view, src * p.d + c));
  };
  copy_row(7, 1);
  copy_row(9, 2);
  copy_row(11, 1);
  for (int k : {1, 2, 4}) {
    const auto r = value(p, k);
    EXPECT_EQ(r.duplicate_rows, 3);
    expect_near_all(r.values, brute_force(p, k), 1e-12, "duplicates");
  }
}

TEST(KnnShapley, EfficiencySumsToTheUtilityOfTheWholeSet) {
  // Shapley efficiency: sum_i s_i = U(all rows) for each query (K-NN accuracy).
  const Problem p = make_problem(3000, 40, 16, 4, 9);
  const int k = 7;
  const auto r = value(p, k);
  const double total = std::accumulate(r.values.begin(), r.values.end(), 0.0);
  double expected = 0;
  for (int64_t qi = 0; qi < p.m; ++qi) {
    std::vector<std::pair<double, int64_t>> d;
    for (int64_t j = 0; j < p.n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < p.d; ++c) {
        const double diff = test::get(p.x.view, j * p.d + c) - test::get(p.q.view, qi * p.d + c);
        s += diff * diff;
      }
      d.emplace_back(s, j);
    }
    std::partial_sort(d.begin(), d.begin() + k, d.end());
    int hits = 0;
    for (int i = 0; i < k; ++i)
      hits += static_cast<const int64_t*>(p.y.view.data)[d[static_cast<std::size_t>(i)].second] ==
              static_cast<const int64_t*>(p.yq.view.data)[qi];
    expected += static_cast<double>(hits) / k / static_cast<double>(p.m);
  }
  EXPECT_NEAR(total, expected, 1e-9);
}

TEST(KnnShapley, TilesAndThreadsDoNotChangeABit) {
  // D = 300 exercises the GEMM's depth blocking as well.
  for (const auto& [n, m, d] : {std::tuple<int64_t, int64_t, int64_t>{1500, 37, 8}, {700, 21, 300}}) {
    const Problem p = make_problem(n, m, d, 3, 5 + static_cast<uint64_t>(d), DType::f32);
    const auto ref = value(p, 5);
    for (int threads : {1, 2, 3}) {
      const auto cpu = make_cpu_backend(threads);
      for (int64_t tile : {int64_t{0}, int64_t{1}, int64_t{4}, m}) {
        KnnShapleyOptions o;
        o.query_tile = tile;
        const auto r = value(p, 5, o, cpu.get());
        ASSERT_EQ(r.values, ref.values) << "d " << d << " threads " << threads << " tile " << tile;
      }
    }
    KnnShapleyOptions small;
    small.memory_budget = 1;  // one query per pass
    ASSERT_EQ(value(p, 5, small).values, ref.values);
  }
}

TEST(KnnShapley, HalfPrecisionInputsAreValuedLikeTheirF32Values) {
  const Problem p32 = make_problem(500, 9, 6, 3, 12, DType::f32, 50);
  Problem p16 = p32;
  p16.x = Buffer("x", DType::f16, {p32.n, p32.d});
  p16.q = Buffer("q", DType::f16, {p32.m, p32.d});
  for (int64_t i = 0; i < p32.n * p32.d; ++i) test::set(p16.x.view, i, test::get(p32.x.view, i));
  for (int64_t i = 0; i < p32.m * p32.d; ++i) test::set(p16.q.view, i, test::get(p32.q.view, i));
  const auto a = value(p32, 4), b = value(p16, 4);
  EXPECT_EQ(a.values, b.values);
  EXPECT_EQ(b.compute, DType::f32);
}

TEST(KnnShapley, ContributorTotalsSumTheirRows) {
  const Problem p = make_problem(400, 10, 4, 2, 3);
  Buffer c("c", DType::i32, {p.n});
  for (int64_t i = 0; i < p.n; ++i) static_cast<int32_t*>(c.view.data)[i] = static_cast<int32_t>((i * 7) % 5) * 10;
  auto cpu = make_cpu_backend(1);
  const auto r = knn_shapley(p.x.view, p.y.view, p.q.view, p.yq.view, {.k = 3}, c.view, *cpu);
  ASSERT_EQ(r.contributors.ids, (std::vector<int64_t>{0, 10, 20, 30, 40}));
  for (std::size_t g = 0; g < 5; ++g) {
    double s = 0;
    int64_t rows = 0;
    for (int64_t i = 0; i < p.n; ++i)
      if ((i * 7) % 5 == static_cast<int64_t>(g)) s += r.values[static_cast<std::size_t>(i)], ++rows;
    EXPECT_NEAR(r.contributors.totals[g], s, 1e-15);
    EXPECT_EQ(r.contributors.rows[g], rows);
  }
}

TEST(KnnShapley, RefusesMalformedInputsWithReasons) {
  const Problem p = make_problem(20, 4, 3, 2, 1);
  auto cpu = make_cpu_backend(1);
  auto run = [&](const TensorView& x, const TensorView& y, const TensorView& q, const TensorView& yq, int k,
                 std::optional<TensorView> c = std::nullopt) {
    return error_of([&] { knn_shapley(x, y, q, yq, {.k = k}, c, *cpu); });
  };
  Buffer q4("q", DType::f64, {4, 4});
  EXPECT_NE(run(p.x.view, p.y.view, q4.view, p.yq.view, 3).find("test embeddings have 4 columns but train embeddings have 3"),
            std::string::npos);
  Buffer y19("y", DType::i64, {19});
  EXPECT_NE(run(p.x.view, y19.view, p.q.view, p.yq.view, 3).find("train labels: 19 entries for 20 training rows"),
            std::string::npos);
  Buffer yq5("yq", DType::i64, {5});
  EXPECT_NE(run(p.x.view, p.y.view, p.q.view, yq5.view, 3).find("test labels: 5 entries for 4 test rows"),
            std::string::npos);
  EXPECT_NE(run(p.x.view, p.y.view, p.q.view, p.yq.view, 0).find("K = 0 must be at least 1"), std::string::npos);
  EXPECT_NE(run(p.x.view, p.y.view, p.q.view, p.yq.view, -2).find("K = -2 must be at least 1"), std::string::npos);
  Buffer xn = p.x;
  test::set(xn.view, 2 * 3 + 1, std::nan(""));
  EXPECT_NE(run(xn.view, p.y.view, p.q.view, p.yq.view, 3).find("train embeddings: row 2 column 1 is nan"),
            std::string::npos);
  Buffer qn = p.q;
  test::set(qn.view, 0, INFINITY);
  EXPECT_NE(run(p.x.view, p.y.view, qn.view, p.yq.view, 3).find("test embeddings: row 0 column 0 is inf"),
            std::string::npos);
  Buffer yf("y", DType::f32, {20});
  test::set(yf.view, 3, 1.5);
  EXPECT_NE(run(p.x.view, yf.view, p.q.view, p.yq.view, 3).find("entry 3 is 1.5; expected whole numbers"),
            std::string::npos);
  Buffer c7("c", DType::i64, {7});
  EXPECT_NE(run(p.x.view, p.y.view, p.q.view, p.yq.view, 3, c7.view).find("contributor ids: 7 entries for 20 training rows"),
            std::string::npos);
  Buffer flat("x", DType::f64, {60});
  EXPECT_NE(run(flat.view, p.y.view, p.q.view, p.yq.view, 3).find("expected a matrix"), std::string::npos);
  Buffer xi("x", DType::i32, {20, 3});
  EXPECT_NE(run(xi.view, p.y.view, p.q.view, p.yq.view, 3).find("dtype i32 is not one of f64, f32, f16, bf16"),
            std::string::npos);
  Buffer big = make_problem(3, 1, 2, 2, 1, DType::f32).x;
  test::set(big.view, 0, 3e19);
  Buffer y3("y", DType::i64, {3}), q1("q", DType::f32, {1, 2}), yq1("yq", DType::i64, {1});
  EXPECT_NE(run(big.view, y3.view, q1.view, yq1.view, 1).find("too large for f32 distances"), std::string::npos);
  try {
    knn_shapley(p.x.view, p.y.view, p.q.view, p.yq.view, {.k = 0}, std::nullopt, *cpu);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
  }
}

TEST(KnnShapley, CpuAndGpuAgree) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto gpu = make_cuda_backend(0);
  for (DType t : {DType::f64, DType::f32}) {
    const Problem p = make_problem(20000, 300, 48, 5, 31, t);
    for (int k : {1, 5, 50}) {
      const auto c = value(p, k);
      const auto g = value(p, k, {}, gpu.get());
      expect_near_all(g.values, c.values, 1e-6, std::string("gpu ") + std::string(dtype_name(t)));
    }
  }
  // Exact ties and duplicates are ordered by index on the GPU as well.
  Problem tie = make_problem(12, 5, 2, 2, 77, DType::f32, 3);
  expect_near_all(value(tie, 3, {}, gpu.get()).values, brute_force(tie, 3), 1e-12, "gpu ties");
  KnnShapleyOptions tiny;
  tiny.query_tile = 1;
  const Problem p = make_problem(3000, 20, 8, 3, 8, DType::f64);
  expect_near_all(value(p, 5, tiny, gpu.get()).values, value(p, 5).values, 1e-6, "gpu tile 1");
}
