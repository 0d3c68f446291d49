// TRAK-style scores: against the closed-form leave-one-out influence of linear regression,
// and the streaming contract (tiles, files, checkpoints).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "didmark/attribution.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

std::shared_ptr<Backend> cpu() {
  static auto b = make_cpu_backend(2);
  return b;
}

std::vector<double> ranks(const std::vector<double>& v) {
  std::vector<std::size_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return v[a] < v[b]; });
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < idx.size(); ++i) r[idx[i]] = static_cast<double>(i);
  return r;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  const auto ra = ranks(a), rb = ranks(b);
  const double n = static_cast<double>(a.size());
  double d2 = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  return 1 - 6 * d2 / (n * (n * n - 1));
}

struct Collected {
  std::vector<float> s;
  std::vector<int> hits;
  int64_t m, n;
  Collected(int64_t m_, int64_t n_) : s(static_cast<std::size_t>(m_ * n_)), hits(static_cast<std::size_t>(m_ * n_)), m(m_), n(n_) {}
  ScoreSink sink() {
    return [this](const ScoreTile& t) {
      for (int64_t i = 0; i < t.queries; ++i)
        for (int64_t j = 0; j < t.train; ++j) {
          const auto at = static_cast<std::size_t>((t.query0 + i) * n + t.train0 + j);
          s[at] = t.data[i * t.train + j];
          ++hits[at];
        }
    };
  }
};

// Small dense helpers for the closed form (p x p inverse by Gauss-Jordan with pivoting).
using Mat = std::vector<std::vector<double>>;
Mat inverse(Mat a) {
  const std::size_t n = a.size();
  Mat inv(n, std::vector<double>(n, 0.0));
  for (std::size_t i = 0; i < n; ++i) inv[i][i] = 1;
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t piv = c;
    for (std::size_t r = c + 1; r < n; ++r)
      if (std::fabs(a[r][c]) > std::fabs(a[piv][c])) piv = r;
    std::swap(a[c], a[piv]);
    std::swap(inv[c], inv[piv]);
    const double d = a[c][c];
    for (std::size_t j = 0; j < n; ++j) a[c][j] /= d, inv[c][j] /= d;
    for (std::size_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a[r][c];
      for (std::size_t j = 0; j < n; ++j) a[r][j] -= f * a[c][j], inv[r][j] -= f * inv[c][j];
    }
  }
  return inv;
}
// u^T G v
double quad(const std::vector<double>& u, const Mat& g, const std::vector<double>& v) {
  double s = 0;
  for (std::size_t i = 0; i < u.size(); ++i)
    for (std::size_t j = 0; j < v.size(); ++j) s += u[i] * g[i][j] * v[j];
  return s;
}

using test::error_of;

}  // namespace

TEST(Trak, RanksLikeTheLeaveOneOutInfluenceOfLinearRegression) {
  // y = X theta + noise. With features phi_i = x_i (the output gradient) and weights
  // e_i = y_i - x_i.theta_hat (minus the loss gradient), the score of training row i for a
  // query x_t is x_t^T (X^T X)^-1 x_i e_i; the exact leave-one-out effect of row i on the
  // query's prediction is that divided by 1 - h_ii (hat matrix).
  const int64_t n = 400, p = 12, m = 6, k = 64;
  std::mt19937_64 rng(11);
  std::normal_distribution<double> nd(0, 1);
  const auto P = static_cast<std::size_t>(p);
  std::vector<std::vector<double>> X(static_cast<std::size_t>(n), std::vector<double>(P)),
      Xt(static_cast<std::size_t>(m), std::vector<double>(P));
  std::vector<double> theta(P), y(static_cast<std::size_t>(n)), e(static_cast<std::size_t>(n));
  for (auto& row : X)
    for (std::size_t j = 0; j < P; ++j) row[j] = nd(rng) * (1.0 + static_cast<double>(j % 3));
  for (auto& row : Xt)
    for (auto& v : row) v = nd(rng);
  for (auto& v : theta) v = nd(rng);
  for (std::size_t i = 0; i < X.size(); ++i) {
    y[i] = 0.5 * nd(rng);
    for (std::size_t j = 0; j < P; ++j) y[i] += X[i][j] * theta[j];
  }
  Mat xtx(P, std::vector<double>(P, 0.0));
  std::vector<double> xty(P, 0.0);
  for (std::size_t i = 0; i < X.size(); ++i)
    for (std::size_t a = 0; a < P; ++a) {
      xty[a] += X[i][a] * y[i];
      for (std::size_t b = 0; b < P; ++b) xtx[a][b] += X[i][a] * X[i][b];
    }
  const Mat G = inverse(xtx);
  std::vector<double> theta_hat(P, 0.0);
  for (std::size_t a = 0; a < P; ++a)
    for (std::size_t b = 0; b < P; ++b) theta_hat[a] += G[a][b] * xty[b];
  for (std::size_t i = 0; i < X.size(); ++i) {
    e[i] = y[i];
    for (std::size_t j = 0; j < P; ++j) e[i] -= X[i][j] * theta_hat[j];
  }

  Buffer tr("tr", DType::f32, {n, p}), q("q", DType::f32, {m, p}), w("w", DType::f64, {n});
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < p; ++j) test::set(tr.view, i * p + j, X[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)]);
    test::set(w.view, i, e[static_cast<std::size_t>(i)]);
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < p; ++j) test::set(q.view, i * p + j, Xt[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)]);

  GradientCheckpoint cp{tr.view, q.view, w.view};
  TrakOptions o;
  o.projection = Projection{.seed = 5, .k = k};
  Collected got(m, n);
  const auto r = trak(std::span(&cp, 1), o, std::nullopt, got.sink(), *cpu());
  for (int64_t t = 0; t < m; ++t) {
    std::vector<double> score(static_cast<std::size_t>(n)), loo(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const auto& xi = X[static_cast<std::size_t>(i)];
      const double h = quad(xi, G, xi);
      const double infl = quad(Xt[static_cast<std::size_t>(t)], G, xi) * e[static_cast<std::size_t>(i)];
      loo[static_cast<std::size_t>(i)] = infl / (1 - h);
      score[static_cast<std::size_t>(i)] = got.s[static_cast<std::size_t>(t * n + i)];
      // Without the 1/(1-h) factor the score is the closed form itself (k > p: exact).
      ASSERT_NEAR(score[static_cast<std::size_t>(i)], infl, 2e-4 * std::fabs(infl) + 1e-7) << t << "," << i;
    }
    EXPECT_GE(spearman(score, loo), 0.99) << "query " << t;
  }
  EXPECT_EQ(r.lambdas.size(), 1u);
  EXPECT_GT(r.lambdas[0], 0);
}

TEST(Trak, TilesCoverTheScoreMatrixOnceAndMatchTheRowMeans) {
  const int64_t n = 101, m = 23, p = 300;
  const Buffer tr = test::gaussian("tr", DType::f32, {n, p}, 1, 1.0);
  const Buffer q = test::gaussian("q", DType::f32, {m, p}, 2, 1.0);
  GradientCheckpoint cp{tr.view, q.view, std::nullopt};
  TrakOptions a;
  a.projection.k = 96;
  Collected full(m, n);
  const auto ra = trak(std::span(&cp, 1), a, std::nullopt, full.sink(), *cpu());
  TrakOptions b = a;
  b.query_tile = 5;
  b.train_tile = 13;
  b.feature_tile = 17;
  Collected tiled(m, n);
  const auto rb = trak(std::span(&cp, 1), b, std::nullopt, tiled.sink(), *cpu());
  for (std::size_t i = 0; i < full.s.size(); ++i) {
    ASSERT_EQ(full.hits[i], 1);
    ASSERT_EQ(tiled.hits[i], 1);
    ASSERT_NEAR(full.s[i], tiled.s[i], 1e-4 * (1 + std::fabs(full.s[i])));
  }
  for (int64_t j = 0; j < n; ++j) {
    double mean = 0;
    for (int64_t t = 0; t < m; ++t) mean += static_cast<double>(full.s[static_cast<std::size_t>(t * n + j)]) / static_cast<double>(m);
    ASSERT_NEAR(ra.values[static_cast<std::size_t>(j)], mean, 1e-4 * (1 + std::fabs(mean)));
    ASSERT_NEAR(rb.values[static_cast<std::size_t>(j)], mean, 1e-4 * (1 + std::fabs(mean)));
  }
  // No sink: the same row means, without any score tile.
  const auto rc = trak(std::span(&cp, 1), a, std::nullopt, {}, *cpu());
  EXPECT_EQ(rc.values, ra.values);
}

TEST(Trak, AveragesCheckpointsAndSumsContributors) {
  const int64_t n = 64, m = 8, p = 200;
  const Buffer tr = test::gaussian("tr", DType::f32, {n, p}, 3, 1.0);
  const Buffer q = test::gaussian("q", DType::f32, {m, p}, 4, 1.0);
  const Buffer tr2 = test::gaussian("tr2", DType::f64, {n, 150}, 5, 1.0);
  const Buffer q2 = test::gaussian("q2", DType::f64, {m, 150}, 6, 1.0);
  TrakOptions o;
  o.projection.k = 32;
  GradientCheckpoint one{tr.view, q.view, std::nullopt};
  GradientCheckpoint other{tr2.view, q2.view, std::nullopt};
  const auto r1 = trak(std::span(&one, 1), o, std::nullopt, {}, *cpu());
  const auto r2 = trak(std::span(&other, 1), o, std::nullopt, {}, *cpu());
  std::vector<GradientCheckpoint> both{one, other};
  Buffer c("c", DType::i64, {n});
  for (int64_t i = 0; i < n; ++i) static_cast<int64_t*>(c.view.data)[i] = i % 3;
  const auto rb = trak(both, o, c.view, {}, *cpu());
  EXPECT_EQ(rb.checkpoints, 2);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(rb.values[static_cast<std::size_t>(i)],
                (r1.values[static_cast<std::size_t>(i)] + r2.values[static_cast<std::size_t>(i)]) / 2, 1e-5);
  ASSERT_EQ(rb.contributors.ids, (std::vector<int64_t>{0, 1, 2}));
  for (int g = 0; g < 3; ++g) {
    double s = 0;
    for (int64_t i = g; i < n; i += 3) s += rb.values[static_cast<std::size_t>(i)];
    EXPECT_NEAR(rb.contributors.totals[static_cast<std::size_t>(g)], s, 1e-12);
  }
}

TEST(Trak, NpyScoreWriterStreamsTheMatrixToAFile) {
  const int64_t n = 57, m = 11, p = 80;
  const Buffer tr = test::gaussian("tr", DType::f32, {n, p}, 8, 1.0);
  const Buffer q = test::gaussian("q", DType::f32, {m, p}, 9, 1.0);
  GradientCheckpoint cp{tr.view, q.view, std::nullopt};
  TrakOptions o;
  o.projection.k = 40;
  o.query_tile = 4;
  o.train_tile = 10;
  Collected mem(m, n);
  trak(std::span(&cp, 1), o, std::nullopt, mem.sink(), *cpu());
  const auto path = std::filesystem::temp_directory_path() / ("didmark_scores_" + std::to_string(::getpid()) + ".npy");
  std::filesystem::remove(path);
  {
    NpyScoreWriter w(path, m, n);
    trak(std::span(&cp, 1), o, std::nullopt, w.sink(), *cpu());
    EXPECT_FALSE(std::filesystem::exists(path));  // nothing visible before commit
    w.commit();
  }
  const NpyArray a = read_npy(path);
  ASSERT_EQ(a.shape, (std::vector<int64_t>{m, n}));
  ASSERT_EQ(a.dtype, DType::f32);
  const TensorView v = a.view();
  for (int64_t i = 0; i < m * n; ++i) ASSERT_EQ(static_cast<const float*>(v.data)[i], mem.s[static_cast<std::size_t>(i)]);
  EXPECT_NE(error_of([&] { NpyScoreWriter again(path, m, n); }).find("exists"), std::string::npos);
  std::filesystem::remove(path);
}

TEST(Trak, RefusesMalformedInputs) {
  const Buffer tr = test::gaussian("tr", DType::f32, {10, 20}, 1, 1.0);
  const Buffer q = test::gaussian("q", DType::f32, {3, 20}, 2, 1.0);
  const Buffer q21 = test::gaussian("q", DType::f32, {3, 21}, 2, 1.0);
  const Buffer tr9 = test::gaussian("tr", DType::f32, {9, 20}, 1, 1.0);
  Buffer w("w", DType::f32, {7});
  auto run = [&](std::vector<GradientCheckpoint> cps, TrakOptions o = {}) {
    o.projection.k = 16;
    return error_of([&] { trak(cps, o, std::nullopt, {}, *cpu()); });
  };
  EXPECT_NE(run({}).find("no checkpoints"), std::string::npos);
  EXPECT_NE(run({{tr.view, q21.view, std::nullopt}}).find("query gradients have 21 columns but the train gradients have 20"),
            std::string::npos);
  EXPECT_NE(run({{tr.view, q.view, std::nullopt}, {tr9.view, q.view, std::nullopt}})
                .find("checkpoint 1 train gradients have 9 rows but checkpoint 0 has 10"),
            std::string::npos);
  EXPECT_NE(run({{tr.view, q.view, w.view}}).find("train weights: 7 entries for 10 training rows"), std::string::npos);
  Buffer nan = tr;
  test::set(nan.view, 41, std::nan(""));
  EXPECT_NE(run({{nan.view, q.view, std::nullopt}}).find("row 2 column 1 is nan"), std::string::npos);
  TrakOptions neg;
  neg.ridge = -1;
  EXPECT_NE(run({{tr.view, q.view, std::nullopt}}, neg).find("ridge -1 must be finite and >= 0"), std::string::npos);
  Buffer zeros("z", DType::f32, {10, 20});
  TrakOptions none;
  none.ridge = 0;
  EXPECT_NE(run({{zeros.view, q.view, std::nullopt}}, none).find("not positive definite"), std::string::npos);
}

TEST(Trak, CpuAndGpuAgree) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto gpu = make_cuda_backend(0);
  const int64_t n = 3000, m = 70, p = 4000;
  const Buffer tr = test::gaussian("tr", DType::f32, {n, p}, 21, 1.0);
  const Buffer q = test::gaussian("q", DType::f32, {m, p}, 22, 1.0);
  GradientCheckpoint cp{tr.view, q.view, std::nullopt};
  TrakOptions o;
  o.projection.k = 256;
  o.ridge = 1e-3;
  Collected a(m, n), b(m, n);
  const auto rc = trak(std::span(&cp, 1), o, std::nullopt, a.sink(), *cpu());
  const auto rg = trak(std::span(&cp, 1), o, std::nullopt, b.sink(), *gpu);
  for (int64_t i = 0; i < n; ++i)
    ASSERT_NEAR(rg.values[static_cast<std::size_t>(i)], rc.values[static_cast<std::size_t>(i)],
                1e-3 * (1 + std::fabs(rc.values[static_cast<std::size_t>(i)])));
  for (std::size_t i = 0; i < a.s.size(); ++i) ASSERT_NEAR(a.s[i], b.s[i], 1e-3 * (1 + std::fabs(a.s[i])));
}
