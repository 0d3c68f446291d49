// Registry screening (include/didmark/registry_scan.hpp): the Backend::screen primitive against
// an independent per-element reference, screen-then-confirm against verify(), and the
// family-wise p-value.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "didmark/backend.hpp"
#include "didmark/detail/hash.hpp"
#include "didmark/detail/screen_math.hpp"
#include "didmark/error.hpp"
#include "didmark/registry_scan.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using test::Buffer;

std::vector<uint64_t> pack(const std::vector<Payload>& ps) {
  const std::size_t words = (ps[0].size() + 63) / 64;
  std::vector<uint64_t> out(ps.size() * words, 0);
  for (std::size_t k = 0; k < ps.size(); ++k)
    for (std::size_t b = 0; b < ps[k].size(); ++b)
      if (ps[k].bits[b]) out[k * words + b / 64] |= uint64_t{1} << (b % 64);
  return out;
}

/// The screen's statistic straight from its definition, one element at a time: no tables, no
/// vectors, the scale exponent found by search rather than read off the bits.
ScreenSums reference(const TensorView& w, const ScreenSample& s, const std::vector<detail::CarrierSpec>& cs,
                     const std::vector<Payload>& ps) {
  ScreenSums out;
  out.t.assign(cs.size(), 0.0);
  const int64_t numel = w.numel();
  const int64_t groups = (numel + 1023) / 1024;
  for (int64_t g = 0; g < groups; ++g) {
    if ((g + s.phase) % s.stride != 0) continue;
    for (int64_t blk = g * 8; blk < g * 8 + 8 && blk * 128 < numel; ++blk) {
      double x[128] = {};
      double m = 0;
      for (int e = 0; e < 128 && blk * 128 + e < numel; ++e) {
        const double v = test::get(w, blk * 128 + e);
        if (!std::isfinite(v)) {
          ++out.nonfinite;
          continue;
        }
        ++out.elements;
        x[e] = static_cast<float>(std::clamp(v, -0x1p120, 0x1p120));
        m = std::max(m, std::abs(x[e]));
      }
      if (m < 0x1p-100) continue;
      int ex = -200;
      while (m > 15 * std::ldexp(1.0, ex)) ++ex;
      int q[128];
      double sq = 0;
      for (int e = 0; e < 128; ++e) {
        q[e] = static_cast<int>(std::nearbyint(x[e] * std::ldexp(1.0, -ex)));
        sq += q[e] * q[e];
      }
      out.sum_sq += sq * std::ldexp(1.0, 2 * ex);
      for (std::size_t k = 0; k < cs.size(); ++k) {
        const auto r = detail::carrier_signs(cs[k], static_cast<uint64_t>(blk));
        int sum = 0;
        for (int e = 0; e < 128; ++e) sum += detail::carrier_sign_bit(r, static_cast<uint32_t>(e)) ? -q[e] : q[e];
        const uint32_t bit = detail::carrier_bit_index(cs[k], static_cast<uint64_t>(blk));
        out.t[k] += (ps[k].bits[bit] ? -sum : sum) * std::ldexp(1.0, ex);
      }
    }
  }
  return out;
}

Buffer awkward(DType t, int64_t n, uint64_t seed) {
  Buffer b = test::gaussian("w", t, {n}, seed, 0.3);
  test::set(b.view, 5, std::nan(""));
  test::set(b.view, 1030, std::numeric_limits<double>::infinity());
  for (int e = 0; e < 128; ++e) test::set(b.view, 2048 + e, 0.0);          // a zero block
  for (int e = 0; e < 128; ++e) test::set(b.view, 4096 + e, e * 1e-35);  // a tiny block (f16/bf16: zeros)
  test::set(b.view, 9000, 1e4);                                           // an outlier in its block
  if (t == DType::f32 || t == DType::f64) test::set(b.view, 12000, 1e38);  // beyond 2^120: clamped
  return b;
}

TEST(ScreenPrimitive, MatchesThePerElementDefinitionExactly) {
  const auto be = make_cpu_backend(2);
  std::vector<detail::CarrierSpec> cs;
  std::vector<Payload> ps;
  for (uint64_t k = 0; k < 37; ++k) {  // not a multiple of 8 or 32
    cs.push_back(derive_carrier(test::random_key(100 + k), "layer", 61));
    ps.push_back(test::random_payload(200 + k, 61));
  }
  const auto bits = pack(ps);
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const Buffer w = awkward(t, 40'000 + 77, 9);  // a partial last group and block
    for (const ScreenSample s : {ScreenSample{1, 0}, ScreenSample{3, 1}, ScreenSample{5, 7}, ScreenSample{50, 11}}) {
      ScreenSums a;
      be->screen(w.view, s, cs, bits, a);
      const ScreenSums b = reference(w.view, s, cs, ps);
      ASSERT_EQ(a.t.size(), cs.size());
      for (std::size_t k = 0; k < cs.size(); ++k)
        EXPECT_EQ(a.t[k], b.t[k]) << dtype_name(t) << " stride " << s.stride << " key " << k;
      EXPECT_EQ(a.sum_sq, b.sum_sq) << dtype_name(t);
      EXPECT_EQ(a.elements, b.elements) << dtype_name(t);
      EXPECT_EQ(a.nonfinite, b.nonfinite) << dtype_name(t);
    }
  }
}

TEST(ScreenPrimitive, ThreadCountAndKeyTilesChangeNothing) {
  std::vector<detail::CarrierSpec> cs;
  std::vector<Payload> ps;
  for (uint64_t k = 0; k < 2100; ++k) {  // more than one tile of 2048 keys
    cs.push_back(derive_carrier(test::random_key(k), "t", 256));
    ps.push_back(test::random_payload(k + 7));
  }
  const auto bits = pack(ps);
  const Buffer w = test::gaussian("w", DType::bf16, {300'000}, 4);
  ScreenSums a, b;
  make_cpu_backend(1)->screen(w.view, {2, 1}, cs, bits, a);
  make_cpu_backend(3)->screen(w.view, {2, 1}, cs, bits, b);
  EXPECT_EQ(a.t, b.t);
  EXPECT_EQ(a.sum_sq, b.sum_sq);
  // A key's sums do not depend on which other keys share the call.
  ScreenSums one;
  make_cpu_backend(1)->screen(w.view, {2, 1}, std::span(cs).subspan(2077, 1), std::span(bits).subspan(2077 * 4, 4),
                              one);
  EXPECT_EQ(one.t[0], a.t[2077]);
}

TEST(ScreenPrimitive, RefusesInconsistentArguments) {
  const auto be = make_cpu_backend(1);
  const Buffer w = test::gaussian("w", DType::f32, {4096}, 1);
  const std::vector<detail::CarrierSpec> cs{derive_carrier(test::random_key(1), "w", 64),
                                            derive_carrier(test::random_key(2), "w", 32)};
  ScreenSums out;
  EXPECT_NE(test::error_of([&] { be->screen(w.view, {1, 0}, cs, std::vector<uint64_t>(2), out); })
                .find("all keys must carry payloads of one length"),
            std::string::npos);
  const std::vector<detail::CarrierSpec> one{cs[0]};
  EXPECT_NE(test::error_of([&] { be->screen(w.view, {1, 0}, one, std::vector<uint64_t>(3), out); }).find("payload words"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { be->screen(w.view, {0, 0}, one, std::vector<uint64_t>(1), out); }).find("stride"),
            std::string::npos);
  const Buffer ints("i", DType::i32, {4096});
  EXPECT_THROW(be->screen(ints.view, {1, 0}, one, std::vector<uint64_t>(1), out), Error);
}

// screen_many must be screen() per item, bit for bit: mixed dtypes, sizes that end in a partial
// group and block, a tensor sampled at two phases, items of no group, carrier sets used twice or
// not at all, key counts across the tile boundary, and any thread count.
TEST(ScreenPrimitive, ManyEqualsThePerTensorCalls) {
  const std::vector<Buffer> ws = [] {
    std::vector<Buffer> v;
    v.push_back(awkward(DType::f32, 40'000 + 77, 1));
    v.push_back(awkward(DType::f16, 30'001, 2));
    v.push_back(awkward(DType::bf16, 25'000 + 3, 3));
    v.push_back(test::gaussian("small", DType::bf16, {999}, 4));   // less than a group
    v.push_back(test::gaussian("odd", DType::f16, {7, 1531}, 5));  // 10,717 elements
    v.push_back(test::gaussian("wide", DType::f32, {3, 5, 4099}, 6, 3.0));
    v.push_back(awkward(DType::f64, 20'000 + 1, 7));
    return v;
  }();
  for (const std::size_t K : {std::size_t{0}, std::size_t{1}, std::size_t{37}, std::size_t{2100}}) {
    const std::size_t sets = ws.size() + 1;  // the last set is used by no item and left unset
    std::vector<detail::CarrierSpec> cs(sets * K);
    std::vector<Payload> ps;
    for (std::size_t k = 0; k < K; ++k) ps.push_back(test::random_payload(300 + k, 61));
    for (std::size_t t = 0; t + 1 < sets; ++t)
      for (std::size_t k = 0; k < K; ++k)
        cs[t * K + k] = derive_carrier(test::random_key(1000 + k), "tensor" + std::to_string(t), 61);
    const std::vector<uint64_t> bits = K > 0 ? pack(ps) : std::vector<uint64_t>{};
    std::vector<ScreenItem> items;
    for (std::size_t t = 0; t < ws.size(); ++t) {
      items.push_back({ws[t].view, {3, static_cast<int64_t>(t)}, t});
      items.push_back({ws[t].view, {3, static_cast<int64_t>(t) + 1}, t});  // the same tensor, another phase
    }
    items.push_back({ws[0].view, {1, 0}, 2});       // the whole tensor, another tensor's carriers
    items.push_back({ws[3].view, {5, 4}, 3});       // no sampled group (1 group, phase 4 of 5)
    items.push_back({ws[5].view, {2, 1}, 5});
    items.push_back({ws[1].view, {40, 39}, 1});     // one group
    for (const int threads : {1, 2, 3}) {
      const auto be = make_cpu_backend(threads);
      std::vector<ScreenSums> many(items.size()), loop(items.size());
      be->screen_many(items, K, cs, bits, many);
      be->Backend::screen_many(items, K, cs, bits, loop);  // the default: screen() per item
      for (std::size_t i = 0; i < items.size(); ++i) {
        ScreenSums one;
        be->screen(items[i].view, items[i].sample, std::span(cs).subspan(items[i].carrier_set * K, K), bits, one);
        const std::string where = "K " + std::to_string(K) + " threads " + std::to_string(threads) + " item " +
                                  std::to_string(i) + " " + std::string(dtype_name(items[i].view.dtype));
        ASSERT_EQ(many[i].t.size(), K) << where;
        EXPECT_EQ(many[i].t, one.t) << where;
        EXPECT_EQ(loop[i].t, one.t) << where;
        EXPECT_EQ(many[i].sum_sq, one.sum_sq) << where;
        EXPECT_EQ(many[i].elements, one.elements) << where;
        EXPECT_EQ(many[i].nonfinite, one.nonfinite) << where;
        if (K == 37) {  // and against the per-element definition
          const auto set = std::span(cs).subspan(items[i].carrier_set * K, K);
          const ScreenSums ref =
              reference(items[i].view, items[i].sample, std::vector<detail::CarrierSpec>(set.begin(), set.end()), ps);
          EXPECT_EQ(many[i].t, ref.t) << where;
          EXPECT_EQ(many[i].sum_sq, ref.sum_sq) << where;
        }
      }
    }
  }
}

TEST(ScreenPrimitive, CarriersDerivedManyAtATimeAreTheSame) {
  std::vector<uint64_t> hashes;
  for (int i = 0; i < 21; ++i) hashes.push_back(detail::fnv1a64("layers." + std::to_string(i) + ".weight"));
  hashes.push_back(0);
  hashes.push_back(~uint64_t{0});
  for (const uint32_t L : {1u, 61u, 256u}) {
    for (uint64_t seed = 0; seed < 3; ++seed) {
      const WatermarkKey key = test::random_key(seed);
      for (const std::size_t n : {std::size_t{1}, std::size_t{8}, std::size_t{9}, hashes.size()}) {
        std::vector<detail::CarrierSpec> many(3 * n);
        derive_carriers_hashed(key, std::span(hashes).first(n), L, many.data(), 3);
        for (std::size_t i = 0; i < n; ++i) {
          const detail::CarrierSpec one = derive_carrier_hashed(key, hashes[i], L);
          const detail::CarrierSpec& m = many[3 * i];
          EXPECT_TRUE(m.key.x == one.key.x && m.key.y == one.key.y && m.stream.x == one.stream.x &&
                      m.stream.y == one.stream.y && m.bit_offset == one.bit_offset && m.num_bits == one.num_bits)
              << "L " << L << " n " << n << " i " << i;
        }
      }
    }
  }
}

TEST(ScreenPrimitive, ManyRefusesInconsistentArguments) {
  const auto be = make_cpu_backend(1);
  const Buffer w = test::gaussian("w", DType::f32, {4096}, 1);
  const std::vector<detail::CarrierSpec> cs{derive_carrier(test::random_key(1), "w", 64),
                                            derive_carrier(test::random_key(2), "w", 64),
                                            derive_carrier(test::random_key(3), "w", 64)};
  const std::vector<uint64_t> bits(2);
  std::vector<ScreenSums> out(1);
  const std::vector<ScreenItem> items{{w.view, {1, 0}, 1}};
  EXPECT_NE(test::error_of([&] { be->screen_many(items, 2, cs, bits, out); }).find("whole sets"), std::string::npos);
  EXPECT_NE(test::error_of([&] { be->screen_many(items, 2, std::span(cs).first(2), bits, out); }).find("carrier set"),
            std::string::npos);
  std::vector<ScreenSums> two(2);
  EXPECT_NE(test::error_of([&] { be->screen_many(items, 1, cs, std::vector<uint64_t>(1), two); }).find("result slots"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { be->screen_many(items, 1, cs, std::vector<uint64_t>(3), out); }).find("payload words"),
            std::string::npos);
  const std::vector<ScreenItem> bad{{w.view, {0, 0}, 0}};
  EXPECT_NE(test::error_of([&] { be->screen_many(bad, 1, cs, std::vector<uint64_t>(1), out); }).find("stride"),
            std::string::npos);
}

// ---- screen, then confirm --------------------------------------------------------------------

std::vector<Claim> registry(std::size_t n, uint64_t seed) {
  std::vector<Claim> c;
  for (std::size_t k = 0; k < n; ++k) c.push_back({test::random_key(seed + 2 * k), test::random_payload(seed + 2 * k + 1)});
  return c;
}

std::vector<Buffer> model(int layers, int64_t rows, int64_t cols, uint64_t seed, DType t = DType::f32) {
  std::vector<Buffer> m;
  for (int l = 0; l < layers; ++l) {
    m.push_back(test::gaussian("layers." + std::to_string(l) + ".mlp.weight", t, {rows, cols}, seed + l));
    m.push_back(test::gaussian("layers." + std::to_string(l) + ".norm.weight", t, {cols}, seed + 100 + l));
  }
  return m;
}

void expect_same_report(const VerifyReport& a, const VerifyReport& b) {
  EXPECT_FALSE(a.screened);
  EXPECT_EQ(a.detected, b.detected);
  EXPECT_EQ(a.z, b.z);
  EXPECT_EQ(a.p_value, b.p_value);
  EXPECT_EQ(a.log10_p, b.log10_p);
  EXPECT_EQ(a.bit_errors, b.bit_errors);
  EXPECT_EQ(a.decoded, b.decoded);
  EXPECT_EQ(a.elements, b.elements);
  EXPECT_EQ(a.tensors, b.tensors);
  EXPECT_EQ(a.scheme, b.scheme);
  ASSERT_EQ(a.per_tensor.size(), b.per_tensor.size());
  for (std::size_t i = 0; i < a.per_tensor.size(); ++i) EXPECT_EQ(a.per_tensor[i].z, b.per_tensor[i].z);
}

// 4M elements marked at 2%: an intact mark reaches z 10 on 250K of them, so the screen samples
// 1/16 of the model in the end (1/128, then 1/64 before) and only the owner takes the full pass.
TEST(VerifyScreened, TheOwnerGetsTheFullPassReportTheOthersTheSample) {
  auto m = model(4, 1024, 1024, 1);
  const auto claims = registry(200, 1000);
  WatermarkOptions o;
  o.set_strength(0.02);
  embed_in_place(test::named(m), claims[57].key, claims[57].payload, o);
  o.scheme = Scheme::automatic;
  const auto tensors = test::named(m);
  ScreenOptions so;
  so.seed = 5;
  ScreenSummary how;
  const auto r = verify_screened(tensors, claims, o, so, default_backend(), &how);
  ASSERT_EQ(r.size(), claims.size());
  EXPECT_TRUE(how.screened) << how.reason;
  // Nested samples: 4M / (10 / 0.02)^2 -> stride 16; z 5 -> 67, a multiple of 16: 64; z 3.5 -> 128.
  ASSERT_EQ(how.stages.size(), 3u);
  EXPECT_EQ(how.stages[0].stride, 128);
  EXPECT_EQ(how.stages[1].stride, 64);
  EXPECT_EQ(how.stages[2].stride, 16);
  EXPECT_EQ(how.stages[0].claims, 200u);
  EXPECT_EQ(how.stages[0].elements, 4 * 1024 * 1024 / 128);
  EXPECT_EQ(how.stages[1].elements, 4 * 1024 * 1024 / 64);
  EXPECT_EQ(how.stages[2].elements, 4 * 1024 * 1024 / 16);
  EXPECT_LT(how.stages[1].claims, 200u);
  EXPECT_LT(how.stages[2].claims, how.stages[1].claims);
  EXPECT_EQ(how.candidates, 1u);
  expect_same_report(r[57], verify(tensors, claims[57].key, claims[57].payload, o));
  EXPECT_TRUE(r[57].detected);
  for (std::size_t k = 0; k < r.size(); ++k) {
    if (k == 57) continue;
    EXPECT_TRUE(r[k].screened);
    EXPECT_FALSE(r[k].detected);
    EXPECT_LT(r[k].z, default_candidate_z(200));
    EXPECT_GT(r[k].elements, 0);
    EXPECT_TRUE(r[k].decoded.empty());
  }
  // Another seed samples other blocks; the owner's report is still the full pass.
  so.seed = 6;
  const auto r2 = verify_screened(tensors, claims, o, so);
  expect_same_report(r2[57], r[57]);
}

TEST(VerifyScreened, TwoOwnersMarksAreBothConfirmed) {
  auto m = model(4, 1024, 1024, 2);
  const auto claims = registry(100, 2000);
  WatermarkOptions o;
  o.set_strength(0.02);
  embed_in_place(test::named(m), claims[3].key, claims[3].payload, o);
  embed_in_place(test::named(m), claims[90].key, claims[90].payload, o);
  ScreenSummary how;
  ScreenOptions so;
  so.mode = ScreenMode::on;
  const auto r = verify_screened(test::named(m), claims, o, so, default_backend(), &how);
  EXPECT_TRUE(how.screened);
  EXPECT_EQ(how.candidates, 2u);
  EXPECT_TRUE(r[3].detected && !r[3].screened);
  EXPECT_TRUE(r[90].detected && !r[90].screened);
  for (std::size_t k = 0; k < r.size(); ++k)
    if (k != 3 && k != 90) {
      EXPECT_FALSE(r[k].detected);
    }
}

// A model smaller than the sample is screened whole: the screen's z is the full test's on
// values rounded to 5 bits per block. The rounding adds independent noise of 0.25-1% of the
// variance, so a null z moves by about N(0, 0.05-0.1) and a mark loses under 1% of its z.
TEST(VerifyScreened, ASmallModelIsScreenedWhole) {
  auto m = model(2, 256, 512, 3);
  const auto claims = registry(64, 3000);
  WatermarkOptions o;
  o.set_strength(0.01);
  embed_in_place(test::named(m), claims[10].key, claims[10].payload, o);
  ScreenSummary how;
  const auto r = verify_screened(test::named(m), claims, o, {}, default_backend(), &how);
  ASSERT_TRUE(how.screened);
  // The final sample is the whole model (1M elements wanted, 262K there); a first stage on half
  // of it (z 3.5 wants 125K) drops the claims that score under -0.5 there.
  ASSERT_EQ(how.stages.size(), 2u);
  EXPECT_EQ(how.stages[0].stride, 2);
  EXPECT_EQ(how.stages[0].elements, 256 * 512);
  EXPECT_EQ(how.stages[1].stride, 1);
  EXPECT_EQ(how.stages[1].elements, 2 * 256 * 512);
  const auto full = verify_many(test::named(m), claims, o);
  // Claims that reached the last stage were scored on every element: their z is the full pass's
  // up to the screen's 5-bit quantization.
  double ss = 0;
  int whole = 0;
  for (std::size_t k = 0; k < r.size(); ++k) {
    if (k == 10) continue;
    if (r[k].elements == 2 * 256 * 512) {
      EXPECT_NEAR(r[k].z, full[k].z, 0.45) << k;
      ss += (r[k].z - full[k].z) * (r[k].z - full[k].z);
      ++whole;
    } else {
      EXPECT_EQ(r[k].elements, 256 * 512) << k;
      EXPECT_LT(r[k].z, -0.5) << k;
    }
  }
  EXPECT_GE(whole, 25);
  EXPECT_EQ(static_cast<std::size_t>(whole), how.stages[1].claims - 1);
  EXPECT_LT(ss / whole, 0.02);
  EXPECT_FALSE(r[10].screened);
  EXPECT_EQ(r[10].z, full[10].z);
}

TEST(VerifyScreened, FullPassWhenOffFewOwnersOrStdm) {
  auto m = model(1, 256, 256, 4);
  const auto claims = registry(40, 4000);
  WatermarkOptions o;
  const auto full = verify_many(test::named(m), claims, o);
  auto check = [&](const WatermarkOptions& wo, ScreenOptions so, std::size_t n, const std::string& why) {
    ScreenSummary how;
    const auto r = verify_screened(test::named(m), std::span(claims).first(n), wo, so, default_backend(), &how);
    EXPECT_FALSE(how.screened);
    EXPECT_NE(how.reason.find(why), std::string::npos) << how.reason;
    for (const auto& v : r) EXPECT_FALSE(v.screened);
  };
  ScreenOptions off;
  off.mode = ScreenMode::off;
  check(o, off, 40, "off");
  check(o, {}, 31, "fewer than 32");
  WatermarkOptions stdm = o;
  stdm.scheme = Scheme::stdm;
  ScreenOptions on;
  on.mode = ScreenMode::on;
  check(stdm, on, 40, "STDM");
  ScreenOptions bad;
  bad.z_target = -1;
  EXPECT_THROW(verify_screened(test::named(m), claims, o, bad), Error);
}

// ---- the null: many unmarked checkpoints against many owners ------------------------------------

#if defined(__SANITIZE_ADDRESS__)
constexpr int kNullCheckpoints = 100;  // the sanitizer build runs the same path, ten times fewer
#else
constexpr int kNullCheckpoints = 1000;
#endif
constexpr std::size_t kNullOwners = 10'000;

// >= 10^3 unmarked checkpoints x 10^4 owners (10^7 tests): no detection at the default
// thresholds, and the z-scores under the Hoeffding bound P(z >= t) <= exp(-t^2/2) at every t.
// Checkpoints of 32K elements are screened whole, so every owner's z is the screen's; the
// weights are Gaussian, Laplace (heavy tails) and bf16, and one in ten has an outlier column.
// A registry too large for one batch of carriers (2^22 claim-tensor pairs) is screened in
// batches of claims; a claim's screen depends on its key alone, so its z is the one it gets
// among any other claims.
TEST(VerifyScreened, BatchesOfClaimsChangeNoResult) {
  std::vector<Buffer> m;
  for (int t = 0; t < 1100; ++t)
    m.push_back(test::gaussian("t" + std::to_string(t) + ".weight", DType::bf16, {64, 64}, static_cast<uint64_t>(t)));
  const auto claims = registry(4000, 77);  // 4000 x 1100 pairs: a batch of 3813 claims, then one of 187
  WatermarkOptions o;
  ScreenOptions so;
  so.mode = ScreenMode::on;
  so.seed = 5;
  so.candidate_z = 4.0;  // not from the claim count, so that a subset meets the same thresholds
  const auto be = make_cpu_backend(2);
  ScreenSummary all_summary;
  const auto all = verify_screened(test::named(m), claims, o, so, *be, &all_summary);
  ASSERT_TRUE(all_summary.screened);
  EXPECT_EQ(all_summary.stages.front().claims, claims.size());
  for (const std::size_t from : {std::size_t{0}, std::size_t{3790}}) {  // across the batch boundary
    const std::vector<Claim> part(claims.begin() + static_cast<std::ptrdiff_t>(from),
                                  claims.begin() + static_cast<std::ptrdiff_t>(from + 60));
    const auto some = verify_screened(test::named(m), part, o, so, *be);
    for (std::size_t k = 0; k < part.size(); ++k) {
      EXPECT_EQ(some[k].screened, all[from + k].screened) << from + k;
      EXPECT_EQ(some[k].z, all[from + k].z) << from + k;
      EXPECT_EQ(some[k].elements, all[from + k].elements) << from + k;
    }
  }
}

TEST(ScreenNull, TenMillionTestsStayUnderTheBound) {
  const auto claims = registry(kNullOwners, 77);
  std::vector<double> thresholds{1, 2, 3, 4, 4.5, 5, 5.5};
  std::vector<int64_t> above(thresholds.size(), 0);
  double sum = 0, sum2 = 0, zmax = -1e9;
  int64_t tests = 0, detected = 0, candidates = 0;
  WatermarkOptions o;
  ScreenOptions so;
  so.mode = ScreenMode::on;
  std::mt19937_64 rng(99);
  for (int c = 0; c < kNullCheckpoints; ++c) {
    const DType t = c % 3 == 2 ? DType::bf16 : DType::f32;
    Buffer w("blocks." + std::to_string(c % 7) + ".weight", t, {64, 512});
    std::normal_distribution<double> nd(0, 0.02);
    std::exponential_distribution<double> ed(50);
    for (int64_t i = 0; i < w.numel(); ++i) {
      double v = c % 2 ? nd(rng) : (rng() & 1 ? ed(rng) : -ed(rng));
      if (c % 10 == 0 && i % 512 == 3) v *= 40;
      test::set(w.view, i, v);
    }
    const NamedTensor nt = w.named();
    ScreenSummary how;
    const auto r = verify_screened(std::span(&nt, 1), claims, o, so, default_backend(), &how);
    ASSERT_TRUE(how.screened);
    ASSERT_EQ(how.stages.back().stride, 1);
    candidates += static_cast<int64_t>(how.candidates);
    for (const auto& v : r) {
      ++tests;
      detected += v.detected ? 1 : 0;
      detected += family_log10_p(v.log10_p, claims.size()) <= -9 ? 1 : 0;
      sum += v.z;
      sum2 += v.z * v.z;
      zmax = std::max(zmax, v.z);
      for (std::size_t i = 0; i < thresholds.size(); ++i) above[i] += v.z >= thresholds[i] ? 1 : 0;
    }
  }
  EXPECT_EQ(tests, int64_t{kNullCheckpoints} * static_cast<int64_t>(kNullOwners));
  EXPECT_EQ(detected, 0);
  const double n = static_cast<double>(tests), mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(sd, 1.0, 0.02);
  EXPECT_LT(zmax, hoeffding_z_threshold(1e-9));
  for (std::size_t i = 0; i < thresholds.size(); ++i) {
    const double bound = n * hoeffding_p_value(thresholds[i]);
    EXPECT_LE(static_cast<double>(above[i]), bound) << "z >= " << thresholds[i];
    std::printf("null: z >= %.1f in %lld of %lld tests (bound exp(-t^2/2): %.0f)\n", thresholds[i],
                static_cast<long long>(above[i]), static_cast<long long>(tests), bound);
  }
  std::printf("null: mean %.4f sd %.4f max %.2f, %lld candidates confirmed and rejected\n", mean, sd, zmax,
              static_cast<long long>(candidates));
}

// ---- family-wise p ------------------------------------------------------------------------------

TEST(FamilyP, SidakOverTheOwnersTested) {
  EXPECT_DOUBLE_EQ(family_log10_p(-12, 1), -12);
  EXPECT_DOUBLE_EQ(family_log10_p(-20, 10'000), -16);
  EXPECT_NEAR(family_log10_p(-2000, 1'000'000), -1994, 1e-9);  // where p underflows
  for (double p : {1e-3, 0.01, 0.2}) {
    for (std::size_t k : {std::size_t{2}, std::size_t{100}, std::size_t{5000}}) {
      const double want = 1 - std::pow(1 - p, static_cast<double>(k));
      EXPECT_NEAR(std::pow(10.0, family_log10_p(std::log10(p), k)) / want, 1.0, 1e-9) << p << " " << k;
    }
  }
  EXPECT_EQ(family_log10_p(0, 50), 0);
  EXPECT_LE(family_log10_p(std::log10(1e-9), 10), std::log10(1e-8));  // Sidak <= Bonferroni
  EXPECT_NEAR(default_candidate_z(10'000), 5.2565, 1e-3);
}

}  // namespace
}  // namespace didmark
