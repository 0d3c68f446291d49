#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "didmark/error.hpp"
#include "didmark/watermark.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

// A small "model": two matrices, a bias and a norm that the default policy must skip.
std::vector<Buffer> small_model(DType t, uint64_t seed, int64_t rows = 512) {
  std::vector<Buffer> m;
  m.push_back(test::gaussian("layers.0.attn.weight", t, {rows, 256}, seed, 0.02));
  m.push_back(test::gaussian("layers.0.mlp.weight", t, {rows, 512}, seed + 1, 0.5));
  m.push_back(test::gaussian("layers.0.mlp.bias", t, {512}, seed + 2, 0.1));
  m.push_back(test::gaussian("layers.0.input_layernorm.weight", t, {4096}, seed + 3, 1.0));
  return m;
}

WatermarkOptions opts(Scheme s = Scheme::spread_spectrum) {
  WatermarkOptions o;
  o.scheme = s;
  return o;
}

}  // namespace

class RoundTrip : public ::testing::TestWithParam<std::tuple<DType, Scheme>> {};

TEST_P(RoundTrip, EmbedThenVerifyAndDecode) {
  const auto [t, scheme] = GetParam();
  // 3.1M marked elements: at the default strength z = 0.005 * sqrt(N) = 8.9.
  auto model = small_model(t, 10, 4096);
  const auto src = test::named(model);
  std::vector<Buffer> out = model;
  const auto dst = test::named(out);
  const auto key = test::random_key(1);
  const auto payload = test::random_payload(2);
  auto backend = make_cpu_backend();

  const EmbedReport er = embed(src, dst, key, payload, opts(scheme), *backend);
  EXPECT_EQ(er.tensors_marked, 2);
  EXPECT_TRUE(er.within_budget);
  EXPECT_LE(er.relative_change, 0.01);
  EXPECT_GT(er.relative_change, 0.0);
  ASSERT_EQ(er.tensors.size(), 4u);
  EXPECT_FALSE(er.tensors[2].used);  // bias
  EXPECT_FALSE(er.tensors[3].used);  // norm
  // Tensors not marked are byte-identical in the output.
  EXPECT_EQ(out[2].bytes, model[2].bytes);
  EXPECT_EQ(out[3].bytes, model[3].bytes);
  EXPECT_NE(out[0].bytes, model[0].bytes);

  const VerifyReport marked = verify(dst, key, payload, opts(scheme), *backend);
  EXPECT_TRUE(marked.detected) << "z=" << marked.z << " dtype " << dtype_name(t);
  EXPECT_LE(marked.p_value, 1e-9);
  EXPECT_EQ(marked.tensors, 2);
  EXPECT_EQ(marked.elements, 4096 * 256 + 4096 * 512);
  if (scheme == Scheme::spread_spectrum) {
    EXPECT_NEAR(er.expected_z, marked.z, 4.0);
  }
  if (scheme == Scheme::stdm) {
    // STDM decodes every bit; plain spread spectrum at this size only supports the
    // known-payload test (per-bit SNR eps*sqrt(N/L) = 0.55 here; see ImprovedSpreadSpectrum).
    EXPECT_EQ(marked.bit_errors, 0);
    const VerifyReport dec = decode(dst, key, 256, opts(scheme), *backend);
    EXPECT_EQ(dec.decoded, payload.bits);
  }

  const VerifyReport original = verify(src, key, payload, opts(scheme), *backend);
  EXPECT_FALSE(original.detected);
  EXPECT_GT(original.bit_errors, 80);

  const VerifyReport other_key = verify(dst, test::random_key(99), payload, opts(scheme), *backend);
  EXPECT_FALSE(other_key.detected);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, RoundTrip,
                         ::testing::Combine(::testing::Values(DType::f32, DType::f64, DType::f16, DType::bf16),
                                            ::testing::Values(Scheme::spread_spectrum, Scheme::stdm)),
                         [](const auto& p) {
                           std::string n = std::string(dtype_name(std::get<0>(p.param))) + "_" +
                                           std::string(scheme_name(std::get<1>(p.param)));
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(Watermark, InPlaceEqualsOutOfPlace) {
  auto model = small_model(DType::f32, 20);
  std::vector<Buffer> out = model, inplace = model;
  const auto key = test::random_key(3);
  const auto payload = test::random_payload(4);
  embed(test::named(model), test::named(out), key, payload, opts());
  embed_in_place(test::named(inplace), key, payload, opts());
  for (std::size_t i = 0; i < model.size(); ++i) EXPECT_EQ(out[i].bytes, inplace[i].bytes) << i;
}

TEST(Watermark, StrengthControlsTheChange) {
  const auto key = test::random_key(5);
  const auto payload = test::random_payload(6);
  for (double s : {0.0001, 0.001, 0.005, 0.01}) {
    auto model = small_model(DType::f32, 30);
    WatermarkOptions o;
    o.strength = s;
    const auto er = embed_in_place(test::named(model), key, payload, o);
    // The step is set from a sampled RMS, so the realized change is near the target.
    EXPECT_NEAR(er.relative_change, s, 0.05 * s) << s;
    for (const auto& tr : er.tensors)
      if (tr.used) {
        EXPECT_NEAR(tr.relative_change, s, 0.05 * s) << tr.name;
      }
  }
}

TEST(Watermark, ZScoreGrowsAsStrengthTimesRootN) {
  auto model = small_model(DType::f64, 40, 8192);
  const auto key = test::random_key(7);
  const auto payload = test::random_payload(8);
  WatermarkOptions o;
  o.strength = 0.008;
  embed_in_place(test::named(model), key, payload, o);
  const auto r = verify(test::named(model), key, payload, o);
  const double n = 8192.0 * 256 + 8192.0 * 512;
  // z = eps * sqrt(N) (= 20 here) plus the host's own projection (standard normal).
  EXPECT_NEAR(r.z, 0.008 * std::sqrt(n), 4.0);
}

TEST(Watermark, ImprovedSpreadSpectrumCleansTheBits) {
  // At a strength where plain spread spectrum decodes with errors, removing the host's own
  // projection (lambda = 1) makes every bit decode.
  auto base = small_model(DType::f32, 50, 4096);
  const auto key = test::random_key(9);
  const auto payload = test::random_payload(10);
  WatermarkOptions plain;
  plain.strength = 0.0015;
  WatermarkOptions iss = plain;
  iss.lambda = 1.0;
  auto a = base, b = base;
  embed_in_place(test::named(a), key, payload, plain);
  const auto er = embed_in_place(test::named(b), key, payload, iss);
  const auto ra = decode(test::named(a), key, 256, plain);
  const auto rb = decode(test::named(b), key, 256, iss);
  int errs_a = 0, errs_b = 0;
  for (std::size_t i = 0; i < 256; ++i) {
    errs_a += ra.decoded[i] != payload.bits[i];
    errs_b += rb.decoded[i] != payload.bits[i];
  }
  EXPECT_GT(errs_a, 0);
  EXPECT_EQ(errs_b, 0);
  // Full removal costs about sqrt(L/N) = 0.9% per tensor here, on top of the strength.
  EXPECT_LE(er.relative_change, 0.012);
}

TEST(Watermark, ScaleInvariantAndTensorWeightedFairly) {
  // Multiplying one tensor by a constant (function-preserving with the next layer) leaves
  // the per-tensor-normalized statistic unchanged.
  auto model = small_model(DType::f32, 60);
  const auto key = test::random_key(11);
  const auto payload = test::random_payload(12);
  embed_in_place(test::named(model), key, payload, opts());
  const double z0 = verify(test::named(model), key, payload, opts()).z;
  auto* w = static_cast<float*>(model[1].view.data);
  for (int64_t i = 0; i < model[1].numel(); ++i) w[i] *= 1000.0f;
  const double z1 = verify(test::named(model), key, payload, opts()).z;
  EXPECT_NEAR(z1, z0, 1e-3 * std::abs(z0));
}

TEST(Watermark, WrongKeysFollowTheBound) {
  // 10^4 wrong keys against one marked set, all in a single pass over the tensors.
  auto model = small_model(DType::f32, 70, 128);
  const auto key = test::random_key(13);
  const auto payload = test::random_payload(14);
  WatermarkOptions strong;  // this set is small (98K elements): mark it hard enough to find
  strong.strength = 0.05;
  strong.max_relative_change = 0.1;
  embed_in_place(test::named(model), key, payload, strong);
  std::vector<Claim> claims;
  const int trials = 10000;
  for (int i = 0; i < trials; ++i) claims.push_back({test::random_key(1000 + static_cast<uint64_t>(i)), payload});
  const auto reports = verify_many(test::named(model), claims, opts());
  ASSERT_EQ(reports.size(), static_cast<std::size_t>(trials));
  double mean = 0, m2 = 0, zmax = -1e9;
  int over[4] = {};
  for (const auto& r : reports) {
    EXPECT_FALSE(r.detected);
    mean += r.z;
    m2 += r.z * r.z;
    zmax = std::max(zmax, r.z);
    for (int t = 1; t <= 3; ++t) over[t] += r.z >= t;
  }
  mean /= trials;
  const double var = m2 / trials - mean * mean;
  // Under "not this key" z is a normalized sum of random signs: mean 0, variance 1.
  EXPECT_NEAR(mean, 0.0, 0.05);
  EXPECT_NEAR(var, 1.0, 0.06);
  EXPECT_LT(zmax, hoeffding_z_threshold(1e-9));
  for (int t = 1; t <= 3; ++t) {
    const double bound = std::exp(-0.5 * t * t);
    const double rate = static_cast<double>(over[t]) / trials;
    // Empirical tail (plus 4 binomial standard errors) under the Hoeffding bound.
    EXPECT_LE(rate, bound + 4 * std::sqrt(bound * (1 - bound) / trials)) << "t=" << t;
  }
  // Same statistic whether the claim comes alone or among 10^4.
  const auto alone = verify(test::named(model), claims[17].key, payload, opts());
  EXPECT_NEAR(alone.z, reports[17].z, 1e-9);
  const auto right = verify(test::named(model), key, payload, opts());
  EXPECT_TRUE(right.detected);
}

TEST(Watermark, StdmWrongKeysFollowBinomial) {
  auto model = small_model(DType::f32, 80, 128);
  const auto key = test::random_key(15);
  const auto payload = test::random_payload(16);
  embed_in_place(test::named(model), key, payload, opts(Scheme::stdm));
  std::vector<Claim> claims;
  for (int i = 0; i < 10000; ++i) claims.push_back({test::random_key(5000 + static_cast<uint64_t>(i)), payload});
  const auto reports = verify_many(test::named(model), claims, opts(Scheme::stdm));
  double mean_err = 0;
  int low_p = 0;
  for (const auto& r : reports) {
    EXPECT_FALSE(r.detected);
    mean_err += r.bit_errors;
    low_p += r.p_value <= 1e-2;
  }
  EXPECT_NEAR(mean_err / 10000, 128.0, 1.0);  // half the bits agree by chance
  EXPECT_LE(low_p, 100 + 4 * 10);               // P(p <= 1e-2) <= 1e-2
  EXPECT_TRUE(verify(test::named(model), key, payload, opts(Scheme::stdm)).detected);
}

TEST(Watermark, BinomialTailKnownValues) {
  EXPECT_NEAR(binomial_tail_log10(256, 128), std::log10(0.5 + 0.5 * 0.0498), 1e-3);  // P(X>=128)
  EXPECT_NEAR(binomial_tail_log10(10, 10), -10 * std::log10(2.0), 1e-12);
  EXPECT_NEAR(binomial_tail_log10(10, 9), std::log10(11.0 / 1024), 1e-12);
  EXPECT_EQ(binomial_tail_log10(10, 0), 0.0);
  EXPECT_LE(binomial_tail_log10(256, 176), -9.0);  // DESIGN.md: 176 of 256 for 1e-9
  EXPECT_GT(binomial_tail_log10(256, 175), -9.0);
  EXPECT_NEAR(hoeffding_z_threshold(1e-9), 6.4377, 1e-3);
}

TEST(Watermark, PolicyNamesAndRegex) {
  auto model = small_model(DType::f32, 90);
  const auto key = test::random_key(17);
  const auto payload = test::random_payload(18);
  WatermarkOptions o;
  o.policy.include_regex = "mlp";
  auto er = embed_in_place(test::named(model), key, payload, o);
  EXPECT_EQ(er.tensors_marked, 1);
  EXPECT_TRUE(er.tensors[1].used);

  auto model2 = small_model(DType::f32, 90);
  WatermarkOptions named;
  named.policy.names = {"layers.0.mlp.bias", "layers.0.attn.weight"};
  er = embed_in_place(test::named(model2), key, payload, named);
  EXPECT_EQ(er.tensors_marked, 2);
  EXPECT_TRUE(er.tensors[2].used);  // asked by name: the bias is marked despite the policy
  named.policy.names = {"no.such.tensor"};
  try {
    embed_in_place(test::named(model2), key, payload, named);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
    EXPECT_NE(std::string(e.what()).find("no.such.tensor"), std::string::npos);
  }
}

TEST(Watermark, NonFiniteTensorsSkippedByPolicyRefusedByName) {
  auto model = small_model(DType::f32, 100, 4096);
  std::vector<Buffer> out = model;
  static_cast<float*>(model[0].view.data)[77] = NAN;
  const auto key = test::random_key(19);
  const auto payload = test::random_payload(20);
  const auto er = embed(test::named(model), test::named(out), key, payload, opts());
  EXPECT_FALSE(er.tensors[0].used);
  EXPECT_NE(er.tensors[0].skip_reason.find("NaN"), std::string::npos);
  EXPECT_EQ(out[0].bytes, model[0].bytes);  // restored exactly
  EXPECT_TRUE(er.tensors[1].used);
  // In place, the check comes before any write.
  std::vector<Buffer> inplace = model;
  embed_in_place(test::named(inplace), key, payload, opts());
  EXPECT_EQ(inplace[0].bytes, model[0].bytes);
  const auto vr = verify(test::named(out), key, payload, opts());
  EXPECT_TRUE(vr.detected);
  // Verification never switches a tensor off for NaN/Inf: it counts the finite elements.
  EXPECT_TRUE(vr.per_tensor[0].used);
  EXPECT_EQ(vr.per_tensor[0].nonfinite, 1);
  EXPECT_EQ(vr.nonfinite, 1);

  WatermarkOptions named;
  named.policy.names = {"layers.0.attn.weight"};
  try {
    embed_in_place(test::named(model), key, payload, named);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("layers.0.attn.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos);
  }
  EXPECT_EQ(verify(test::named(model), key, payload, named).nonfinite, 1);
}

// The 28-byte attack of issue 20: one NaN (or Inf) written into every marked tensor used to
// make verify skip them all ("not detected, 0 elements"). The mark must still be found, with
// the same bound, and the edited elements reported.
TEST(Watermark, ANonFiniteValuePerTensorDoesNotHideTheMark) {
  auto model = small_model(DType::f32, 100, 4096);
  const auto key = test::random_key(31);
  const auto payload = test::random_payload(32);
  const auto er = embed_in_place(test::named(model), key, payload, opts());
  ASSERT_GT(er.tensors_marked, 0);
  const auto before = verify(test::named(model), key, payload, opts());
  ASSERT_TRUE(before.detected);
  int edited = 0;
  for (std::size_t i = 0; i < model.size(); ++i) {
    if (!er.tensors[i].used) continue;
    static_cast<float*>(model[i].view.data)[model[i].numel() / 2] = edited % 2 ? INFINITY : NAN;
    ++edited;
  }
  ASSERT_EQ(edited, 2);
  const auto after = verify(test::named(model), key, payload, opts());
  EXPECT_TRUE(after.detected) << "z " << after.z;
  EXPECT_EQ(after.tensors, before.tensors);
  EXPECT_EQ(after.nonfinite, edited);
  EXPECT_EQ(after.elements, before.elements - edited);
  EXPECT_NEAR(after.z, before.z, 0.05 * before.z);
  // Unmarked, the same edits do not make a mark appear.
  auto clean = small_model(DType::f32, 100, 4096);
  for (auto& b : clean) static_cast<float*>(b.view.data)[3] = NAN;
  EXPECT_FALSE(verify(test::named(clean), key, payload, opts()).detected);
}

TEST(Watermark, BadInputsGetClearErrors) {
  auto model = small_model(DType::f32, 110);
  const auto key = test::random_key(21);
  const auto payload = test::random_payload(22);
  auto expect_error = [](auto&& fn, Errc code, const char* words) {
    try {
      fn();
      FAIL() << "no error for: " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_error([] { Payload::from_bits({}); }, Errc::invalid_argument, "empty");
  expect_error([] { WatermarkKey::from_hex("abcd"); }, Errc::invalid_argument, "64 hex digits");
  expect_error([] { WatermarkKey::from_hex(std::string(63, 'a') + "g"); }, Errc::invalid_argument, "non-hex");
  expect_error([] { WatermarkKey::from_bytes(std::vector<uint8_t>(31)); }, Errc::invalid_argument, "32 bytes");
  expect_error([] { Payload::from_bits({0, 1, 2}); }, Errc::invalid_argument, "payload bit 2");
  std::vector<Buffer> wrong_shape = model;
  wrong_shape[0] = test::gaussian("layers.0.attn.weight", DType::f32, {256, 512}, 1);
  expect_error([&] { embed(test::named(model), test::named(wrong_shape), key, payload, opts()); },
               Errc::invalid_argument, "layers.0.attn.weight");
  WatermarkOptions big;
  big.strength = 0.05;
  expect_error([&] { embed_in_place(test::named(model), key, payload, big); }, Errc::invalid_argument, "budget");
  WatermarkOptions neg;
  neg.strength = -1;
  expect_error([&] { embed_in_place(test::named(model), key, payload, neg); }, Errc::invalid_argument, "strength");
  Buffer empty("empty.weight", DType::f32, {0, 16});
  WatermarkOptions named;
  named.policy.names = {"empty.weight"};
  std::vector<NamedTensor> with_empty{empty.named()};
  expect_error([&] { embed_in_place(with_empty, key, payload, named); }, Errc::invalid_argument, "empty");
  Buffer ints("ids.weight", DType::i32, {64, 64});
  named.policy.names = {"ids.weight"};
  std::vector<NamedTensor> with_ints{ints.named()};
  expect_error([&] { embed_in_place(with_ints, key, payload, named); }, Errc::invalid_argument, "dtype i32");
  // An empty tensor found by the policy is just skipped.
  const auto er = embed_in_place(with_empty, key, payload, opts());
  EXPECT_EQ(er.tensors_marked, 0);
  EXPECT_THROW(decode(test::named(model), key, 0, opts()), Error);
}

TEST(Watermark, AllZeroAndSparseTensors) {
  Buffer zeros("zero.weight", DType::f32, {128, 128});
  Buffer sparse("sparse.weight", DType::f32, {256, 256});
  // Non-zero only off the sampled positions: the embed measures the RMS exactly instead.
  for (int64_t i = 1; i < sparse.numel(); i += 65536 / 2 + 1) static_cast<float*>(sparse.view.data)[i] = 1.0f;
  std::vector<NamedTensor> ts{zeros.named(), sparse.named()};
  const auto er = embed_in_place(ts, test::random_key(1), test::random_payload(1), opts());
  EXPECT_FALSE(er.tensors[0].used);
  EXPECT_NE(er.tensors[0].skip_reason.find("zero"), std::string::npos);
  EXPECT_TRUE(er.tensors[1].used);
}
