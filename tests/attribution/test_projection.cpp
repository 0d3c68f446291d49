// The keyed Rademacher projection: the matrix is a pure function of (seed, i, j), whatever
// the tiles or the device; projections keep inner products within the Johnson-Lindenstrauss
// bound.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "didmark/attribution.hpp"
#include "didmark/error.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

std::shared_ptr<Backend> cpu() {
  static auto b = make_cpu_backend(2);
  return b;
}

Buffer identity(int64_t p, DType t) {
  Buffer b("I", t, {p, p});
  for (int64_t i = 0; i < p; ++i) test::set(b.view, i * p + i, 1.0);
  return b;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

using test::error_of;

}  // namespace

TEST(Projection, EntriesAreThePublishedFormula) {
  const Projection proj{.seed = 0x1234'5678'9abc'def0ull, .k = 300};
  const auto rows = rademacher_rows(proj, 5, 7, *cpu());
  int negative = 0;
  for (int64_t i = 0; i < 7; ++i)
    for (int64_t j = 0; j < proj.k; ++j) {
      const float v = rows[static_cast<std::size_t>(i * proj.k + j)];
      const int s = rademacher_sign(proj, 5 + i, j);
      ASSERT_EQ(bits(v), bits(static_cast<float>(s) * proj.scale())) << i << "," << j;
      negative += s < 0;
    }
  EXPECT_NEAR(negative / (7.0 * 300.0), 0.5, 0.05);
  EXPECT_EQ(proj.scale(), static_cast<float>(1.0 / std::sqrt(300.0)));
  // Another seed gives another matrix; the same seed the same one.
  const auto other = rademacher_rows(Projection{.seed = 1, .k = 300}, 5, 7, *cpu());
  EXPECT_NE(other, rows);
  EXPECT_EQ(rademacher_rows(proj, 5, 7, *cpu()), rows);
  // Entry (i, j) does not depend on the block of rows asked for.
  const auto one = rademacher_rows(proj, 9, 1, *cpu());
  for (int64_t j = 0; j < proj.k; ++j) ASSERT_EQ(bits(one[static_cast<std::size_t>(j)]), bits(rows[static_cast<std::size_t>(4 * proj.k + j)]));
}

TEST(Projection, MatrixIsBitIdenticalAcrossTileSizes) {
  // Projecting the identity reads R back exactly (one non-zero product per output entry).
  for (DType out_t : {DType::f32, DType::f64}) {
    const int64_t p = 200;
    const Projection proj{.seed = 99, .k = 260};
    const auto ref = rademacher_rows(proj, 0, p, *cpu());
    const Buffer eye = identity(p, out_t);
    for (int64_t tile : {0, 1, 7, 64, 200, 1000}) {
      for (int threads : {1, 2}) {
        Buffer out("out", out_t, {p, proj.k});
        ProjectOptions o;
        o.feature_tile = tile;
        project(eye.view, proj, out.view, o, *make_cpu_backend(threads));
        for (int64_t i = 0; i < p * proj.k; ++i)
          ASSERT_EQ(test::get(out.view, i), static_cast<double>(ref[static_cast<std::size_t>(i)]))
              << "tile " << tile << " entry " << i;
      }
    }
  }
}

TEST(Projection, ValuesAgreeAcrossTilesAndMatchAnF64Reference) {
  const int64_t rows = 9, p = 700;
  const Projection proj{.seed = 7, .k = 384};
  const Buffer g = test::gaussian("g", DType::f64, {rows, p}, 5, 1.0);
  const auto r = rademacher_rows(proj, 0, p, *cpu());
  std::vector<double> ref(static_cast<std::size_t>(rows * proj.k), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t f = 0; f < p; ++f)
      for (int64_t j = 0; j < proj.k; ++j)
        ref[static_cast<std::size_t>(i * proj.k + j)] +=
            test::get(g.view, i * p + f) * static_cast<double>(r[static_cast<std::size_t>(f * proj.k + j)]);
  for (int64_t tile : {0, 1, 33, 700}) {
    Buffer out64("o", DType::f64, {rows, proj.k});
    project(g.view, proj, out64.view, {.feature_tile = tile}, *cpu());
    for (int64_t i = 0; i < rows * proj.k; ++i) ASSERT_NEAR(test::get(out64.view, i), ref[static_cast<std::size_t>(i)], 1e-12);
    // f32 gradients, f32 output: float tolerance.
    Buffer g32("g32", DType::f32, {rows, p});
    for (int64_t i = 0; i < rows * p; ++i) test::set(g32.view, i, test::get(g.view, i));
    Buffer out32("o", DType::f32, {rows, proj.k});
    project(g32.view, proj, out32.view, {.feature_tile = tile}, *cpu());
    for (int64_t i = 0; i < rows * proj.k; ++i) ASSERT_NEAR(test::get(out32.view, i), ref[static_cast<std::size_t>(i)], 2e-5);
  }
  // f16 gradients project like their f32 values.
  Buffer g16("g16", DType::f16, {rows, p}), g32("g32", DType::f32, {rows, p});
  for (int64_t i = 0; i < rows * p; ++i) {
    test::set(g16.view, i, test::get(g.view, i));
    test::set(g32.view, i, test::get(g16.view, i));
  }
  Buffer a("a", DType::f32, {rows, proj.k}), b("b", DType::f32, {rows, proj.k});
  project(g16.view, proj, a.view, {}, *cpu());
  project(g32.view, proj, b.view, {}, *cpu());
  for (int64_t i = 0; i < rows * proj.k; ++i) ASSERT_NEAR(test::get(a.view, i), test::get(b.view, i), 1e-5);
}

TEST(Projection, PreservesInnerProductsWithinTheJohnsonLindenstraussBound) {
  // For one vector (Achlioptas 2003, Rademacher entries):
  //   P(| |Rx|^2 / |x|^2 - 1 | > eps) <= 2 exp(-k (eps^2/2 - eps^3/3) / 2).
  // Inner products follow by polarization through x+y and x-y, with error at most
  // eps (|x|^2 + |y|^2) / 2. Pick eps so the union bound over all vectors used is 1e-3.
  const int64_t n = 30, p = 2000, k = 1024;
  const Buffer x = test::gaussian("x", DType::f32, {n, p}, 17, 1.0);
  Buffer y("y", DType::f32, {n, k});
  project(x.view, Projection{.seed = 2024, .k = k}, y.view, {}, *cpu());
  const double vectors = static_cast<double>(n * (n - 1));  // x+y and x-y for every pair
  double eps = 0.01;
  while (2 * vectors * std::exp(-static_cast<double>(k) * (eps * eps / 2 - eps * eps * eps / 3) / 2) > 1e-3) eps += 0.001;
  ASSERT_LT(eps, 0.3);
  double sq_err = 0;
  int pairs = 0;
  for (int64_t a = 0; a < n; ++a) {
    for (int64_t b = a; b < n; ++b) {
      double ip = 0, ipp = 0, na = 0, nb = 0;
      for (int64_t f = 0; f < p; ++f) {
        ip += test::get(x.view, a * p + f) * test::get(x.view, b * p + f);
        na += test::get(x.view, a * p + f) * test::get(x.view, a * p + f);
        nb += test::get(x.view, b * p + f) * test::get(x.view, b * p + f);
      }
      for (int64_t j = 0; j < k; ++j) ipp += test::get(y.view, a * k + j) * test::get(y.view, b * k + j);
      const double bound = eps * (na + nb) / 2;
      ASSERT_LE(std::fabs(ipp - ip), bound) << a << "," << b;
      sq_err += (ipp - ip) * (ipp - ip) / (na * nb);
      ++pairs;
    }
  }
  // And the typical error is the expected sqrt(1/k) scale (relative to |x||y|), not just
  // inside the worst-case bound.
  EXPECT_LT(std::sqrt(sq_err / pairs), 2.0 / std::sqrt(static_cast<double>(k)));
}

TEST(Projection, RefusesMalformedInputs) {
  Buffer g("g", DType::f32, {4, 10}), out("o", DType::f32, {4, 8});
  EXPECT_NE(error_of([&] { project(g.view, Projection{.seed = 0, .k = 0}, out.view, {}, *cpu()); })
                .find("projection dimension k = 0"),
            std::string::npos);
  EXPECT_NE(error_of([&] { project(g.view, Projection{.seed = 0, .k = 9}, out.view, {}, *cpu()); })
                .find("should be [4, 9]"),
            std::string::npos);
  Buffer oi("o", DType::i32, {4, 8});
  EXPECT_NE(error_of([&] { project(g.view, Projection{.seed = 0, .k = 8}, oi.view, {}, *cpu()); })
                .find("output dtype must be f32 or f64"),
            std::string::npos);
  test::set(g.view, 13, std::nan(""));
  EXPECT_NE(error_of([&] { project(g.view, Projection{.seed = 0, .k = 8}, out.view, {}, *cpu()); })
                .find("gradients: row 1 column 3 is nan"),
            std::string::npos);
}

TEST(Projection, CpuAndGpuAgree) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  auto gpu = make_cuda_backend(0);
  const Projection proj{.seed = 31337, .k = 2048 + 77};
  const auto c = rademacher_rows(proj, 1000, 50, *cpu());
  const auto gr = rademacher_rows(proj, 1000, 50, *gpu);
  ASSERT_EQ(c.size(), gr.size());
  for (std::size_t i = 0; i < c.size(); ++i) ASSERT_EQ(bits(c[i]), bits(gr[i])) << i;
  // The GPU's tiles of R read back through a projection of the identity, bit for bit.
  const Buffer eye = identity(300, DType::f32);
  for (int64_t tile : {0, 1, 37}) {
    Buffer out("o", DType::f32, {300, proj.k});
    project(eye.view, proj, out.view, {.feature_tile = tile}, *gpu);
    const auto ref = rademacher_rows(proj, 0, 300, *cpu());
    for (int64_t i = 0; i < 300 * proj.k; ++i) ASSERT_EQ(test::get(out.view, i), static_cast<double>(ref[static_cast<std::size_t>(i)]));
  }
  for (DType t : {DType::f32, DType::f16, DType::f64}) {
    const Buffer g = test::gaussian("g", t, {33, 5000}, 3, 1.0);
    const DType ot = t == DType::f64 ? DType::f64 : DType::f32;
    Buffer a("a", ot, {33, proj.k}), b("b", ot, {33, proj.k});
    project(g.view, proj, a.view, {}, *cpu());
    project(g.view, proj, b.view, {.feature_tile = 999}, *gpu);
    for (int64_t i = 0; i < 33 * proj.k; ++i) ASSERT_NEAR(test::get(a.view, i), test::get(b.view, i), 1e-4) << i;
  }
}
