// The attacks the issue names, on a 4M-element set, at the default strength: the mark must
// stay detected at p <= 1e-9 after each.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "didmark/watermark.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

std::vector<Buffer> four_million(DType t) {
  std::vector<Buffer> m;
  m.push_back(test::gaussian("blocks.0.attn.qkv.weight", t, {1024, 1024}, 1, 0.02));
  m.push_back(test::gaussian("blocks.0.mlp.fc1.weight", t, {1024, 1024}, 2, 0.05));
  m.push_back(test::gaussian("blocks.0.mlp.fc2.weight", t, {1024, 1024}, 3, 0.03));
  m.push_back(test::gaussian("blocks.1.attn.qkv.weight", t, {1024, 1024}, 4, 0.01));
  return m;
}

using Attack = void (*)(std::vector<Buffer>&);

void noise_1pct(std::vector<Buffer>& m) {
  std::mt19937_64 rng(77);
  for (auto& b : m) {
    double ss = 0;
    for (int64_t i = 0; i < b.numel(); ++i) ss += test::get(b.view, i) * test::get(b.view, i);
    std::normal_distribution<double> nd(0.0, 0.01 * std::sqrt(ss / static_cast<double>(b.numel())));
    for (int64_t i = 0; i < b.numel(); ++i) test::set(b.view, i, test::get(b.view, i) + nd(rng));
  }
}

// Cast to a 16-bit type (round to nearest even) and back.
template <DType T>
void cast_16(std::vector<Buffer>& m) {
  for (auto& b : m) {
    Buffer h("h", T, b.view.shape);
    for (int64_t i = 0; i < b.numel(); ++i) test::set(h.view, i, test::get(b.view, i));
    for (int64_t i = 0; i < b.numel(); ++i) test::set(b.view, i, test::get(h.view, i));
  }
}

void int8_symmetric(std::vector<Buffer>& m) {
  for (auto& b : m) {
    double amax = 0;
    for (int64_t i = 0; i < b.numel(); ++i) amax = std::max(amax, std::abs(test::get(b.view, i)));
    const double scale = amax / 127.0;
    for (int64_t i = 0; i < b.numel(); ++i) {
      const double q = std::clamp(std::nearbyint(test::get(b.view, i) / scale), -127.0, 127.0);
      test::set(b.view, i, q * scale);
    }
  }
}

void prune_half(std::vector<Buffer>& m) {
  for (auto& b : m) {
    std::vector<double> mags(static_cast<std::size_t>(b.numel()));
    for (int64_t i = 0; i < b.numel(); ++i) mags[static_cast<std::size_t>(i)] = std::abs(test::get(b.view, i));
    std::vector<double> sorted = mags;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
    const double cut = sorted[sorted.size() / 2];
    for (int64_t i = 0; i < b.numel(); ++i)
      if (mags[static_cast<std::size_t>(i)] < cut) test::set(b.view, i, 0.0);
  }
}

struct Case {
  const char* name;
  Attack attack;
};

}  // namespace

class Robustness : public ::testing::TestWithParam<DType> {};

TEST_P(Robustness, DefaultSpreadSpectrumSurvivesEachAttack) {
  const DType t = GetParam();
  const auto original = four_million(t);
  auto marked = original;
  const auto key = test::random_key(1234);
  const auto payload = test::random_payload(5678);
  WatermarkOptions o;  // defaults: spread spectrum, strength 0.005
  auto backend = make_cpu_backend();
  const auto er = embed_in_place(test::named(marked), key, payload, o, *backend);
  ASSERT_EQ(er.tensors_marked, 4);
  EXPECT_LE(er.relative_change, 0.01);
  const double z_clean = verify(test::named(marked), key, payload, o, *backend).z;
  EXPECT_GT(z_clean, 8.0);

  const Case cases[] = {{"gaussian noise 1% RMS", &noise_1pct},
                        {"f16 cast", &cast_16<DType::f16>},
                        {"bf16 cast", &cast_16<DType::bf16>},
                        {"int8 per-tensor symmetric", &int8_symmetric},
                        {"50% magnitude pruning", &prune_half}};
  for (const auto& c : cases) {
    auto attacked = marked;
    c.attack(attacked);
    const auto r = verify(test::named(attacked), key, payload, o, *backend);
    EXPECT_TRUE(r.detected) << c.name << ": z=" << r.z << " (clean " << z_clean << ")";
    EXPECT_LE(r.p_value, 1e-9) << c.name;
    // The same attack on the unmarked original must not create a mark.
    auto clean = original;
    c.attack(clean);
    const auto r0 = verify(test::named(clean), key, payload, o, *backend);
    EXPECT_FALSE(r0.detected) << c.name << ": unmarked z=" << r0.z;
    EXPECT_LT(r0.z, 5.0) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, Robustness, ::testing::Values(DType::f32, DType::bf16),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });
