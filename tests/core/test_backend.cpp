// The Backend waist: every primitive against a plain per-element reference, on every
// backend this machine has (CUDA parity tests skip without a GPU).
#include <gtest/gtest.h>

#include <cmath>

#include "didmark/backend.hpp"
#include "didmark/error.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

struct RefCorr {
  std::vector<double> sums;
  double sum_sq = 0;
  int64_t nonfinite = 0;
};

RefCorr reference_correlate(const TensorView& w, const detail::CarrierSpec& c) {
  RefCorr r;
  r.sums.assign(c.num_bits, 0.0);
  for (int64_t j = 0; j < w.numel(); ++j) {
    const double v = test::get(w, j);
    if (!std::isfinite(v)) {
      ++r.nonfinite;
      continue;
    }
    const auto g = static_cast<uint64_t>(j / 128);
    const auto rb = detail::carrier_signs(c, g);
    const double s = detail::carrier_sign_bit(rb, static_cast<uint32_t>(j % 128)) ? -1.0 : 1.0;
    r.sums[detail::carrier_bit_index(c, g)] += s * v;
    r.sum_sq += v * v;
  }
  return r;
}

std::vector<float> some_deltas(uint32_t L) {
  std::vector<float> d(L);
  for (uint32_t b = 0; b < L; ++b) d[b] = static_cast<float>((b % 3 == 0 ? -1e-4 : 2e-4) * (1 + b % 5));
  return d;
}

const DType kFloatTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16};

std::vector<std::shared_ptr<Backend>> backends() {
  std::vector<std::shared_ptr<Backend>> out{make_cpu_backend(2), make_cpu_backend(1)};
  if (cuda_available()) out.push_back(make_cuda_backend(0));
  return out;
}

}  // namespace

TEST(Backend, CorrelateMatchesReferenceOnEveryDtypeAndSize) {
  for (auto& be : backends()) {
    for (DType t : kFloatTypes) {
      for (int64_t n : {1, 127, 128, 129, 1000, 65536 + 77, 300001}) {
        Buffer b = test::gaussian("w", t, {n}, 42 + static_cast<uint64_t>(n), 1.0);
        const detail::CarrierSpec cs[2] = {{{1, 2}, {3, 4}, 5, 256}, {{7, 7}, {8, 8}, 0, 3}};
        std::vector<CorrelateStats> out(2);
        be->correlate(b.view, cs, out);
        for (int k = 0; k < 2; ++k) {
          const RefCorr ref = reference_correlate(b.view, cs[k]);
          ASSERT_EQ(out[k].bit_sums.size(), cs[k].num_bits);
          EXPECT_EQ(out[k].nonfinite, 0);
          EXPECT_NEAR(out[k].sum_sq, ref.sum_sq, 1e-5 * ref.sum_sq) << be->description() << dtype_name(t) << n;
          for (uint32_t bit = 0; bit < cs[k].num_bits; ++bit)
            ASSERT_NEAR(out[k].bit_sums[bit], ref.sums[bit], 1e-4 * std::sqrt(ref.sum_sq) + 1e-9)
                << be->description() << " " << dtype_name(t) << " n=" << n << " bit " << bit;
        }
      }
    }
  }
}

TEST(Backend, CorrelateCountsAndExcludesNonFinite) {
  for (auto& be : backends()) {
    for (DType t : kFloatTypes) {
      Buffer b = test::gaussian("w", t, {5000}, 7, 1.0);
      test::set(b.view, 3, NAN);
      test::set(b.view, 4000, INFINITY);
      test::set(b.view, 4001, -INFINITY);
      const detail::CarrierSpec c{{11, 12}, {13, 14}, 1, 16};
      CorrelateStats out;
      be->correlate(b.view, std::span(&c, 1), std::span(&out, 1));
      const RefCorr ref = reference_correlate(b.view, c);
      EXPECT_EQ(out.nonfinite, 3) << dtype_name(t);
      EXPECT_NEAR(out.sum_sq, ref.sum_sq, 1e-5 * ref.sum_sq);
      for (uint32_t bit = 0; bit < 16; ++bit) EXPECT_NEAR(out.bit_sums[bit], ref.sums[bit], 1e-3);
    }
  }
}

// The embed step is bit-exact: every backend must store exactly what the shared per-element
// formula gives, in place and out of place.
TEST(Backend, CarrierAddIsBitExactAgainstFormula) {
  for (auto& be : backends()) {
    for (DType t : kFloatTypes) {
      for (int64_t n : {1, 128, 129, 4097, 100003}) {
        Buffer src = test::gaussian("w", t, {n}, 100 + static_cast<uint64_t>(n), 0.05);
        Buffer dst("w", t, {n});
        const detail::CarrierSpec c{{21, 22}, {23, 24}, 9, 64};
        const auto deltas = some_deltas(64);
        const AddStats st = be->carrier_add(src.view, dst.view, c, deltas);
        Buffer inplace = src;
        be->carrier_add(inplace.view, inplace.view, c, deltas);
        double ssq = 0, dsq = 0;
        for (int64_t j = 0; j < n; ++j) {
          const auto g = static_cast<uint64_t>(j / 128);
          const auto e = static_cast<uint32_t>(j % 128);
          const auto r = detail::carrier_signs(c, g);
          const float d = deltas[detail::carrier_bit_index(c, g)];
          const uint32_t sb = detail::carrier_sign_bit(r, e);
          const uint32_t u = detail::carrier_dither(r, e);
          const double v = test::get(src.view, j);
          Buffer one("x", t, {1});
          switch (t) {
            case DType::f64: test::set(one.view, 0, v + static_cast<double>(detail::apply_sign(d, sb))); break;
            case DType::f32:
              *static_cast<float*>(one.view.data) = static_cast<float>(v) + detail::apply_sign(d, sb);
              break;
            case DType::f16:
              *static_cast<uint16_t*>(one.view.data) =
                  detail::f32_to_f16_sr(static_cast<float>(v) + detail::apply_sign(d, sb), u);
              break;
            default:
              *static_cast<uint16_t*>(one.view.data) =
                  detail::f32_to_bf16_sr(static_cast<float>(v) + detail::apply_sign(d, sb), u);
              break;
          }
          const std::size_t es = dtype_size(t);
          ASSERT_EQ(std::memcmp(one.bytes.data(), dst.bytes.data() + static_cast<std::size_t>(j) * es, es), 0)
              << be->description() << " " << dtype_name(t) << " n=" << n << " element " << j;
          ssq += v * v;
          const double diff = test::get(one.view, 0) - v;
          dsq += diff * diff;
        }
        EXPECT_EQ(std::memcmp(inplace.bytes.data(), dst.bytes.data(), src.view.nbytes()), 0);
        EXPECT_NEAR(st.sum_sq_src, ssq, 1e-5 * ssq);
        EXPECT_NEAR(st.sum_sq_diff, dsq, 1e-4 * dsq + 1e-20);
        EXPECT_EQ(st.nonfinite, 0);
      }
    }
  }
}

TEST(Backend, CarrierAddPassesNonFiniteThrough) {
  for (auto& be : backends()) {
    for (DType t : kFloatTypes) {
      Buffer src = test::gaussian("w", t, {300}, 5, 1.0);
      test::set(src.view, 10, NAN);
      test::set(src.view, 200, -INFINITY);
      Buffer dst("w", t, {300});
      const detail::CarrierSpec c{{1, 1}, {2, 2}, 0, 8};
      const auto st = be->carrier_add(src.view, dst.view, c, some_deltas(8));
      EXPECT_EQ(st.nonfinite, 2);
      EXPECT_TRUE(std::isnan(test::get(dst.view, 10)));
      EXPECT_EQ(test::get(dst.view, 200), -INFINITY);
      int changed = 0;
      for (int64_t j = 0; j < 300; ++j) changed += test::get(dst.view, j) != test::get(src.view, j);
      EXPECT_GT(changed, 10) << dtype_name(t);  // finite elements do move
    }
  }
}

TEST(Backend, SampleIsDeterministicStride) {
  for (auto& be : backends()) {
    Buffer b = test::gaussian("w", DType::bf16, {1000}, 3, 1.0);
    const auto s = be->sample(b.view, 7);
    ASSERT_EQ(s.size(), 7u);
    for (int64_t i = 0; i < 7; ++i) EXPECT_EQ(s[static_cast<std::size_t>(i)], test::get(b.view, i * 1000 / 7));
    EXPECT_EQ(be->sample(b.view, 5000).size(), 1000u);
  }
}

TEST(Backend, RefusesBadArguments) {
  auto be = make_cpu_backend(1);
  Buffer a = test::gaussian("a", DType::f32, {256}, 1);
  Buffer b = test::gaussian("b", DType::f16, {256}, 1);
  Buffer c = test::gaussian("c", DType::f32, {255}, 1);
  Buffer ints("i", DType::i32, {256});
  const detail::CarrierSpec cs{{1, 1}, {1, 1}, 0, 4};
  const auto d = some_deltas(4);
  EXPECT_THROW(be->carrier_add(a.view, b.view, cs, d), Error);
  EXPECT_THROW(be->carrier_add(a.view, c.view, cs, d), Error);
  EXPECT_THROW(be->carrier_add(a.view, a.view, cs, some_deltas(3)), Error);
  CorrelateStats out;
  EXPECT_THROW(be->correlate(ints.view, std::span(&cs, 1), std::span(&out, 1)), Error);
  TensorView strided = a.view;
  strided.shape = {16, 16};
  strided.strides = {1, 16};
  EXPECT_THROW(be->correlate(strided, std::span(&cs, 1), std::span(&out, 1)), Error);
  TensorView dev = a.view;
  dev.device = Device::cuda;
  EXPECT_THROW(be->correlate(dev, std::span(&cs, 1), std::span(&out, 1)), Error);
}

TEST(Backend, SelectionFollowsEnvironmentAndBuild) {
  EXPECT_EQ(make_backend(Device::cpu)->device(), Device::cpu);
  if (!cuda_compiled()) {
    try {
      make_backend(Device::cuda);
      FAIL() << "cuda backend in a build without CUDA";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::unsupported);
      EXPECT_NE(std::string(e.what()).find("DIDMARK_CUDA=ON"), std::string::npos);
    }
  } else if (!cuda_available()) {
    EXPECT_THROW(make_backend(Device::cuda), Error);
    EXPECT_EQ(make_backend()->device(), Device::cpu);  // no GPU: the CPU is picked
  }
}
