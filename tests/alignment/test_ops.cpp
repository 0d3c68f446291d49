// The alignment op table on the CPU against independent scalar references: descriptor sums
// in the documented fixed order (bit for bit, for every dtype, any thread count), gathers,
// the realign formula (plain and transposed, dropped and held-out slices), the rotation.
// And the signature matcher on synthetic signatures with known answers.
#include <gtest/gtest.h>

#include <cmath>

#include "alignment/match.hpp"
#include "backend/alignment_ops.hpp"
#include "common/thread_pool.hpp"
#include "models.hpp"
#include "test_util.hpp"

using namespace didmark;
using namespace didmark::test;

namespace {

/// Row sums of squares exactly as documented: 32 lanes, then the halving tree.
double ref_row(const TensorView& v, int64_t r, int64_t C) {
  double lane[32] = {};
  for (int64_t j = 0; j < C; ++j) {
    const double x = static_cast<float>(get(v, r * C + j));
    lane[j % 32] += x * x;
  }
  for (int h = 16; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) lane[l] += lane[l + h];
  return lane[0];
}

/// Column sums: blocks of 256 rows in order, then the blocks in order.
double ref_col(const TensorView& v, int64_t j, int64_t R, int64_t C) {
  double total = 0;
  for (int64_t b = 0; b * 256 < R; ++b) {
    double part = 0;
    for (int64_t r = b * 256; r < std::min(R, (b + 1) * 256); ++r) {
      const double x = static_cast<float>(get(v, r * C + j));
      part += x * x;
    }
    total += part;
  }
  return total;
}

}  // namespace

TEST(AlignmentOps, AxisSumsInTheFixedOrderForEveryDtypeAndThreadCount) {
  detail::ThreadPool one(1), three(3);
  auto a = alignment::make_cpu_alignment_ops(one), b = alignment::make_cpu_alignment_ops(three);
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const Buffer w = gaussian("w", t, {613, 77}, 3, 1.0);
    std::vector<double> r1(613), c1(77), r3(613), c3(77);
    a->axis_sumsq(w.view, r1, c1);
    b->axis_sumsq(w.view, r3, c3);
    for (int64_t i = 0; i < 613; ++i) {
      EXPECT_EQ(r1[static_cast<std::size_t>(i)], ref_row(w.view, i, 77));
      EXPECT_EQ(r1[static_cast<std::size_t>(i)], r3[static_cast<std::size_t>(i)]);
    }
    for (int64_t j = 0; j < 77; ++j) {
      EXPECT_EQ(c1[static_cast<std::size_t>(j)], ref_col(w.view, j, 613, 77));
      EXPECT_EQ(c1[static_cast<std::size_t>(j)], c3[static_cast<std::size_t>(j)]);
    }
  }
}

TEST(AlignmentOps, GatherRowsAndColumns) {
  detail::ThreadPool pool(2);
  auto ops = alignment::make_cpu_alignment_ops(pool);
  const Buffer w = gaussian("w", DType::bf16, {300, 41}, 4, 1.0);
  const std::vector<int64_t> idx = {5, -1, 299, 0};
  std::vector<float> rows(4 * 41), cols(4 * 300);
  ops->gather(w.view, 0, idx, rows);
  const std::vector<int64_t> cidx = {40, -1, 0, 7};
  ops->gather(w.view, 1, cidx, cols);
  for (std::size_t k = 0; k < 4; ++k) {
    for (int64_t j = 0; j < 41; ++j)
      EXPECT_EQ(static_cast<double>(rows[k * 41 + static_cast<std::size_t>(j)]), idx[k] < 0 ? 0.0 : get(w.view, idx[k] * 41 + j));
    for (int64_t i = 0; i < 300; ++i)
      EXPECT_EQ(static_cast<double>(cols[k * 300 + static_cast<std::size_t>(i)]), cidx[k] < 0 ? 0.0 : get(w.view, i * 41 + cidx[k]));
  }
}

TEST(AlignmentOps, RealignPlainAndTransposed) {
  detail::ThreadPool pool(3);
  auto ops = alignment::make_cpu_alignment_ops(pool);
  for (DType t : {DType::f32, DType::f16, DType::f64}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const int64_t R = 130, C = 70;  // output; the suspect has 10 more rows (dummies)
    for (bool transposed : {false, true}) {
      const Buffer w = transposed ? gaussian("w", t, {C, R + 10}, 5, 1.0) : gaussian("w", t, {R + 10, C}, 5, 1.0);
      const auto rp = tf::random_perm(R + 10, 1), cp = tf::random_perm(C, 2);
      std::vector<int64_t> row_src(rp.begin(), rp.begin() + R), col_src(cp.begin(), cp.end());
      row_src[3] = -1;
      col_src[9] = -1;
      std::vector<float> rm(static_cast<std::size_t>(R), 1.0f), cm(static_cast<std::size_t>(C), -2.0f);
      rm[7] = 0.0f;   // held out
      rm[8] = 0.25f;  // rescaled
      std::vector<float> out(static_cast<std::size_t>(R * C), 123.0f);
      ops->realign(w.view, transposed, row_src, col_src, rm, cm, TensorView::contiguous(out.data(), DType::f32, {R, C}));
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < C; ++j) {
          const int64_t r = row_src[static_cast<std::size_t>(i)], c = col_src[static_cast<std::size_t>(j)];
          float want = 0.0f;
          if (r >= 0 && c >= 0 && rm[static_cast<std::size_t>(i)] != 0.0f) {
            const float v = static_cast<float>(get(w.view, transposed ? c * (R + 10) + r : r * C + c));
            want = (v * rm[static_cast<std::size_t>(i)]) * cm[static_cast<std::size_t>(j)];
          }
          ASSERT_EQ(out[static_cast<std::size_t>(i * C + j)], want) << i << "," << j;
        }
    }
  }
}

TEST(AlignmentOps, RotateIsAGemmOverChosenRows) {
  detail::ThreadPool pool(2);
  auto ops = alignment::make_cpu_alignment_ops(pool);
  const Buffer x = gaussian("x", DType::f16, {2500, 24}, 6, 1.0);
  const Buffer q = gaussian("q", DType::f32, {24, 24}, 7, 1.0);
  std::vector<int64_t> rows;
  for (int64_t r = 2499; r >= 0; r -= 2) rows.push_back(r);
  std::vector<float> out(rows.size() * 24);
  ops->rotate(x.view, rows, std::span(static_cast<const float*>(q.view.data), 24 * 24), out);
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (int64_t k = 0; k < 24; ++k) {
      double s = 0;
      for (int64_t d = 0; d < 24; ++d) s += get(x.view, rows[i] * 24 + d) * get(q.view, d * 24 + k);
      EXPECT_NEAR(static_cast<double>(out[i * 24 + static_cast<std::size_t>(k)]), s, 1e-4 * (1 + std::fabs(s)));
    }
}

TEST(AlignmentOps, UnsupportedDtypesAreRefused) {
  detail::ThreadPool pool(1);
  auto ops = alignment::make_cpu_alignment_ops(pool);
  std::vector<int64_t> v(16, 1);
  const auto iv = TensorView::contiguous(v.data(), DType::i64, {4, 4});
  std::vector<double> r(4), c(4);
  EXPECT_NE(error_of([&] { ops->axis_sumsq(iv, r, c); }).find("i64"), std::string::npos);
}

// ---- matcher ------------------------------------------------------------------------------

namespace {

struct Synthetic {
  int64_t n, n2;
  int m;
  std::vector<float> a, b;
  std::vector<int64_t> truth;  // per original: its suspect index or -1
  std::vector<float> sign, scale;
};

/// Originals n x m; the suspect holds them permuted, flipped, rescaled and noisy, with
/// `dummies` random extra rows, `zeros` all-zero extra rows, and `removed` originals missing.
Synthetic synthetic(int64_t n, int m, double noise, int64_t dummies, int64_t zeros, int64_t removed, uint64_t seed) {
  tf::Gauss g(seed);
  Synthetic s;
  s.n = n;
  s.m = m;
  s.a.resize(static_cast<std::size_t>(n * m));
  for (auto& v : s.a) v = static_cast<float>(g.next());
  std::vector<int64_t> keep;
  for (int64_t i = removed; i < n; ++i) keep.push_back(i);
  s.n2 = static_cast<int64_t>(keep.size()) + dummies + zeros;
  const auto perm = tf::random_perm(s.n2, seed + 1);  // slot k of the suspect holds item perm[k]
  s.b.assign(static_cast<std::size_t>(s.n2 * m), 0.0f);
  s.truth.assign(static_cast<std::size_t>(n), -1);
  s.sign.assign(static_cast<std::size_t>(n), 1.0f);
  s.scale.assign(static_cast<std::size_t>(n), 1.0f);
  for (int64_t k = 0; k < s.n2; ++k) {
    const int64_t item = perm[static_cast<std::size_t>(k)];
    float* row = s.b.data() + k * m;
    if (item < static_cast<int64_t>(keep.size())) {
      const int64_t i = keep[static_cast<std::size_t>(item)];
      const float sg = g.uniform() < 0.3 ? -1.0f : 1.0f, sc = static_cast<float>(std::exp(0.5 * g.next()));
      s.truth[static_cast<std::size_t>(i)] = k;
      s.sign[static_cast<std::size_t>(i)] = sg;
      s.scale[static_cast<std::size_t>(i)] = sc;
      for (int c = 0; c < m; ++c) row[c] = sg * sc * static_cast<float>(s.a[static_cast<std::size_t>(i * m + c)] + noise * g.next());
    } else if (item < static_cast<int64_t>(keep.size()) + dummies) {
      for (int c = 0; c < m; ++c) row[c] = static_cast<float>(g.next());
    }
  }
  return s;
}

}  // namespace

TEST(Matcher, RecoversPermutationSignAndScaleAndDropsDummies) {
  const Synthetic s = synthetic(3000, 32, 0.15, 300, 100, 60, 9);
  const auto r = alignment::match_signatures({s.n, s.n2, s.m, s.a.data(), s.b.data(), s.m});
  int64_t right = 0, wrong = 0, removed_unmatched = 0;
  for (int64_t i = 0; i < s.n; ++i) {
    const auto t = s.truth[static_cast<std::size_t>(i)], got = r.src[static_cast<std::size_t>(i)];
    if (t < 0) {
      removed_unmatched += got < 0 ? 1 : 0;
      continue;
    }
    if (got == t) {
      ++right;
      EXPECT_EQ(r.sign[static_cast<std::size_t>(i)], s.sign[static_cast<std::size_t>(i)]);
      EXPECT_NEAR(r.scale[static_cast<std::size_t>(i)] / s.scale[static_cast<std::size_t>(i)], 1.0f, 0.15f);
    } else if (got >= 0) {
      ++wrong;
    }
  }
  EXPECT_GE(right, 2920);  // of 2940 present
  EXPECT_LE(wrong, 3);
  EXPECT_GE(removed_unmatched, 57);  // of 60 removed: at most a few spurious partners
  EXPECT_GE(r.suspect_unused, 400 - 3);
}

TEST(Matcher, UnrelatedSignaturesDoNotMatch) {
  const Synthetic s = synthetic(2000, 32, 0.0, 0, 0, 0, 10);
  const Synthetic u = synthetic(2000, 32, 0.0, 0, 0, 0, 11);
  const auto r = alignment::match_signatures({s.n, u.n2, s.m, s.a.data(), u.b.data(), s.m});
  EXPECT_LT(r.matched, 20);
}

TEST(Matcher, ConstantColumnsAndEmptyInputs) {
  Synthetic s = synthetic(500, 20, 0.05, 0, 0, 0, 12);
  for (int64_t i = 0; i < s.n; ++i) s.a[static_cast<std::size_t>(i * s.m)] = 1.0f;  // column 0 says nothing
  for (int64_t j = 0; j < s.n2; ++j) s.b[static_cast<std::size_t>(j * s.m)] = 3.0f;
  const auto r = alignment::match_signatures({s.n, s.n2, s.m, s.a.data(), s.b.data(), s.m});
  EXPECT_EQ(r.columns_used, 19);
  EXPECT_GE(r.matched, 495);
  EXPECT_EQ(alignment::match_signatures({0, 0, 0, nullptr, nullptr, 0}).matched, 0);
}
