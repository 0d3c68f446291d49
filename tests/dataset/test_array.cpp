// Array marks: round trip and fidelity, the attacks of the issue, false positives.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "didmark/detail/dataset_array.hpp"
#include "backend/dataset_ops.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "test_util.hpp"

using namespace didmark;

namespace {

constexpr int64_t kRows = 20000, kDim = 64;  // 1.28M elements: 10% of the rows is 10x the minimum

struct Arr {
  int64_t rows = 0, dim = 0;
  std::vector<float> x;
  std::vector<int64_t> ids;
  TensorView view() { return TensorView::contiguous(x.data(), DType::f32, {rows, dim}); }
};

struct Fixture {
  Arr original, marked;
  ArrayEmbedReport report;
  WatermarkKey key = test::random_key(21);
  Payload payload = test::random_payload(22);
};

Fixture& fixture() {
  static Fixture f = [] {
    Fixture x;
    x.original.rows = kRows;
    x.original.dim = kDim;
    x.original.x = synthetic_embeddings(kRows, kDim, 9);
    x.original.ids.resize(kRows);
    std::mt19937_64 rng(5);
    for (auto& id : x.original.ids) id = static_cast<int64_t>(rng() >> 1);
    x.marked = x.original;
    x.report = embed_array(x.original.view(), x.marked.view(), x.original.ids, x.key, x.payload);
    return x;
  }();
  return f;
}

ArrayVerifyReport check(Arr a, const WatermarkKey& k, const Payload& p, bool fixed_order = false) {
  const Claim c{k, p};
  return verify_array(a.view(), fixed_order ? std::span<const int64_t>() : std::span<const int64_t>(a.ids),
                      std::span(&c, 1))[0];
}

Arr take_rows(const Arr& a, const std::vector<int64_t>& which) {
  Arr o;
  o.rows = static_cast<int64_t>(which.size());
  o.dim = a.dim;
  for (int64_t r : which) {
    o.x.insert(o.x.end(), a.x.begin() + r * a.dim, a.x.begin() + (r + 1) * a.dim);
    if (!a.ids.empty()) o.ids.push_back(a.ids[static_cast<std::size_t>(r)]);
  }
  return o;
}

std::vector<int64_t> shuffled(int64_t n, uint64_t seed) {
  std::vector<int64_t> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  std::mt19937_64 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

}  // namespace

TEST(ArrayMark, RoundTripAndFidelity) {
  Fixture& f = fixture();
  const auto& r = f.report;
  EXPECT_EQ(r.rows_marked, kRows);
  EXPECT_EQ(r.rows_skipped, 0);
  EXPECT_NEAR(r.relative_change, kDefaultArrayStrength, 0.002);
  EXPECT_NEAR(r.max_row_change, kDefaultArrayStrength, 0.002);
  EXPECT_GE(r.min_cosine, 0.999);
  EXPECT_TRUE(r.within_budget);
  EXPECT_NEAR(r.expected_z, kDefaultArrayStrength * std::sqrt(double(kRows * kDim)), 1e-9);
  // Per-row figures agree with a direct computation.
  for (int64_t row : {int64_t{0}, int64_t{777}, kRows - 1}) {
    double dot = 0, aa = 0, bb = 0, dd = 0;
    for (int64_t j = 0; j < kDim; ++j) {
      const double a = f.original.x[static_cast<std::size_t>(row * kDim + j)];
      const double b = f.marked.x[static_cast<std::size_t>(row * kDim + j)];
      dot += a * b;
      aa += a * a;
      bb += b * b;
      dd += (b - a) * (b - a);
    }
    EXPECT_NEAR(r.row_cosine[static_cast<std::size_t>(row)], dot / std::sqrt(aa * bb), 1e-6);
    EXPECT_NEAR(r.row_change[static_cast<std::size_t>(row)], std::sqrt(dd / aa), 1e-5);
  }
  const auto v = check(f.marked, f.key, f.payload);
  EXPECT_TRUE(v.detected);
  EXPECT_NEAR(v.z, r.expected_z, 4.0);
  EXPECT_EQ(v.rows, kRows);
  EXPECT_LE(v.bit_errors, 16);
  EXPECT_FALSE(check(f.original, f.key, f.payload).detected);
  WatermarkKey other = f.key;
  other.bytes[20] ^= 1;
  EXPECT_FALSE(check(f.marked, other, f.payload).detected);
  EXPECT_LT(std::abs(check(f.marked, other, f.payload).z), 5.0);
  // The ids matter: the row index is another identity.
  EXPECT_FALSE(check(f.marked, f.key, f.payload, true).detected);
}

TEST(ArrayMark, SurvivesTenPercentSubsetAndShuffle) {
  Fixture& f = fixture();
  auto order = shuffled(kRows, 1);
  order.resize(kRows / 10);
  const auto v = check(take_rows(f.marked, order), f.key, f.payload);
  EXPECT_TRUE(v.detected) << v.z;
  EXPECT_GT(v.z, 8.0);
  const auto vs = check(take_rows(f.marked, shuffled(kRows, 2)), f.key, f.payload);
  EXPECT_TRUE(vs.detected);
  EXPECT_NEAR(vs.z, check(f.marked, f.key, f.payload).z, 1e-6);
}

TEST(ArrayMark, SurvivesGaussianNoise) {
  Fixture& f = fixture();
  Arr a = f.marked;
  std::mt19937_64 rng(3);
  // Noise at 30% of each row's RMS: cosine to the marked rows drops to about 0.96.
  std::normal_distribution<double> nd(0.0, 0.3 / std::sqrt(double(kDim)));
  for (auto& v : a.x) v = static_cast<float>(v + nd(rng));
  const auto v = check(a, f.key, f.payload);
  EXPECT_TRUE(v.detected) << v.z;
  EXPECT_GT(v.z, 20.0);
}

TEST(ArrayMark, SurvivesFloat16Cast) {
  Fixture& f = fixture();
  std::vector<uint16_t> h(f.marked.x.size());
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = detail::f32_to_f16_rne(f.marked.x[i]);
  const auto view = TensorView::contiguous(h.data(), DType::f16, {kRows, kDim});
  const Claim c{f.key, f.payload};
  const auto v = verify_array(view, f.marked.ids, std::span(&c, 1))[0];
  EXPECT_TRUE(v.detected);
  EXPECT_NEAR(v.z, check(f.marked, f.key, f.payload).z, 0.5);
}

TEST(ArrayMark, SixteenBitArraysAndFixedOrder) {
  for (DType t : {DType::f16, DType::bf16, DType::f64}) {
    auto src = test::gaussian("x", t, {4000, 96}, 31, 0.05);
    auto dst = src;
    const WatermarkKey k = test::random_key(32);
    const Payload p = test::random_payload(33);
    const auto rep = embed_array(src.view, dst.view, {}, k, p);
    EXPECT_EQ(rep.rows_marked, 4000);
    EXPECT_GE(rep.min_cosine, t == DType::bf16 ? 0.998 : 0.999) << dtype_name(t);
    const Claim c{k, p};
    const auto v = verify_array(dst.view, {}, std::span(&c, 1))[0];
    EXPECT_TRUE(v.detected) << dtype_name(t) << " z=" << v.z;
    EXPECT_GT(v.z, 0.8 * rep.expected_z) << dtype_name(t);
    // In place gives the same bytes.
    auto inplace = src;
    embed_array(inplace.view, inplace.view, {}, k, p);
    EXPECT_EQ(inplace.bytes, dst.bytes) << dtype_name(t);
  }
}

TEST(ArrayMark, SkipsZeroAndNonFiniteRows) {
  auto src = test::gaussian("x", DType::f32, {100, 32}, 41);
  for (int j = 0; j < 32; ++j) test::set(src.view, 5 * 32 + j, 0.0);
  test::set(src.view, 7 * 32 + 3, std::nan(""));
  auto dst = src;
  const auto rep = embed_array(src.view, dst.view, {}, test::random_key(1), test::random_payload(2));
  EXPECT_EQ(rep.rows_skipped, 2);
  EXPECT_EQ(rep.rows_marked, 98);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(test::get(dst.view, 5 * 32 + j), 0.0);
  EXPECT_TRUE(std::isnan(test::get(dst.view, 7 * 32 + 3)));
  const Claim c{test::random_key(1), test::random_payload(2)};
  const auto v = verify_array(dst.view, {}, std::span(&c, 1))[0];
  EXPECT_EQ(v.rows, 98);
  EXPECT_EQ(v.rows_skipped, 2);
}

TEST(ArrayMark, RepeatedIdsCountOnce) {
  Fixture& f = fixture();
  std::vector<int64_t> rows(1000);
  std::iota(rows.begin(), rows.end(), int64_t{0});
  Arr a = take_rows(f.marked, rows);
  Arr twice = a;
  twice.rows *= 2;
  twice.x.insert(twice.x.end(), a.x.begin(), a.x.end());
  twice.ids.insert(twice.ids.end(), a.ids.begin(), a.ids.end());
  const auto v1 = check(a, f.key, f.payload), v2 = check(twice, f.key, f.payload);
  EXPECT_EQ(v2.rows, 1000);
  EXPECT_EQ(v2.duplicate_rows, 1000);
  EXPECT_NEAR(v2.z, v1.z, 1e-9);
}

TEST(ArrayMark, FalsePositivesOverTenThousandKeys) {
  Fixture& f = fixture();
  std::vector<int64_t> rows(100);
  std::iota(rows.begin(), rows.end(), int64_t{0});
  Arr a = take_rows(f.marked, rows);  // 6400 elements of a marked array
  constexpr int kKeys = 10000;
  std::vector<Claim> claims;
  for (int i = 0; i < kKeys; ++i) claims.push_back({test::random_key(5000 + static_cast<uint64_t>(i)), f.payload});
  const Arr& ca = a;
  Arr copy = ca;
  const auto reports = verify_array(copy.view(), a.ids, claims);
  int below_1e2 = 0, below_1e3 = 0, detected = 0;
  double mean_z = 0, var_z = 0;
  for (const auto& v : reports) {
    below_1e2 += v.p_value <= 1e-2;
    below_1e3 += v.p_value <= 1e-3;
    detected += v.detected;
    mean_z += v.z;
    var_z += v.z * v.z;
  }
  mean_z /= kKeys;
  var_z = var_z / kKeys - mean_z * mean_z;
  // Hoeffding: P(p <= a) <= a (the bound is loose: about 0.12% of keys reach p <= 1%).
  EXPECT_LE(below_1e2, 100 + 4 * 10);
  EXPECT_LE(below_1e3, 10 + 4 * 3.2);
  EXPECT_EQ(detected, 0);
  EXPECT_NEAR(mean_z, 0.0, 0.05);
  EXPECT_NEAR(var_z, 1.0, 0.1);
}

TEST(ArrayMark, MinimumSizeAndErrors) {
  // ((6.44 + 2) / 0.03)^2: the z threshold at 1e-9 plus the margin of 2 of a provable mark.
  EXPECT_NEAR(static_cast<double>(array_min_elements()), 79110, 50);
  Fixture& f = fixture();
  auto src = f.original.view();
  auto wrong = f.original.ids;
  wrong.pop_back();
  EXPECT_THROW(embed_array(src, src, wrong, f.key, f.payload), Error);
  auto flat = TensorView::contiguous(f.original.x.data(), DType::f32, {kRows * kDim});
  EXPECT_THROW(embed_array(flat, flat, {}, f.key, f.payload), Error);
  ArrayOptions o;
  o.strength = 0;
  EXPECT_THROW(embed_array(src, src, {}, f.key, f.payload, o), Error);
  std::vector<int32_t> ints(100);
  auto iv = TensorView::contiguous(ints.data(), DType::i32, {10, 10});
  EXPECT_THROW(embed_array(iv, iv, {}, f.key, f.payload), Error);
}

TEST(ArrayMark, FixedOrderStepMatchesTheFormula) {
  // The CPU op's alpha comes from the fixed-order sum of squares (array_math.hpp).
  auto src = test::gaussian("x", DType::f32, {3, 200}, 51);
  auto dst = src;
  const WatermarkKey k = test::random_key(52);
  const Payload p = test::random_payload(53, 8);
  embed_array(src.view, dst.view, {}, k, p);
  for (int64_t r = 0; r < 3; ++r) {
    const float* x = static_cast<const float*>(src.view.data) + r * 200;
    double lane[32] = {};
    for (int j = 0; j < 200; ++j) lane[j % 32] += double(x[j]) * double(x[j]);
    for (int h = 16; h >= 1; h /= 2)
      for (int l = 0; l < h; ++l) lane[l] += lane[l + h];
    const float alpha = dataset::row_alpha(lane[0], 200, kDefaultArrayStrength);
    const auto c = derive_carrier(k, static_cast<uint64_t>(r), 8);
    for (int j = 0; j < 200; ++j) {
      const auto rnd = detail::carrier_signs(c, static_cast<uint64_t>(j / 128));
      const float step = alpha * (p.bits[detail::carrier_bit_index(c, static_cast<uint64_t>(j / 128))] ? -1.0f : 1.0f);
      const float want = x[j] + detail::apply_sign(step, detail::carrier_sign_bit(rnd, static_cast<uint32_t>(j % 128)));
      ASSERT_EQ(static_cast<const float*>(dst.view.data)[r * 200 + j], want) << r << " " << j;
    }
  }
}
