// The registry screen on the GPU against the CPU backend: host views streamed in small chunks,
// device views (the direct path at stride 1, the pitched gather otherwise), and the whole
// screen-then-confirm. Block sums are exact integers, so the two must agree exactly. Skips
// without a GPU (fails under DIDMARK_REQUIRE_CUDA=1).
#include <gtest/gtest.h>

#include "didmark/backend.hpp"
#include "didmark/registry_scan.hpp"
#include "test_util.hpp"

#if DIDMARK_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace didmark {
namespace {

#if DIDMARK_HAVE_CUDA
std::vector<uint64_t> packed(const std::vector<Payload>& ps) {
  const std::size_t words = (ps[0].size() + 63) / 64;
  std::vector<uint64_t> out(ps.size() * words, 0);
  for (std::size_t k = 0; k < ps.size(); ++k)
    for (std::size_t b = 0; b < ps[k].size(); ++b)
      if (ps[k].bits[b]) out[k * words + b / 64] |= uint64_t{1} << (b % 64);
  return out;
}

void expect_same(const ScreenSums& a, const ScreenSums& b, const std::string& what) {
  ASSERT_EQ(a.t.size(), b.t.size()) << what;
  for (std::size_t k = 0; k < a.t.size(); ++k) EXPECT_EQ(a.t[k], b.t[k]) << what << " key " << k;
  EXPECT_EQ(a.sum_sq, b.sum_sq) << what;
  EXPECT_EQ(a.elements, b.elements) << what;
  EXPECT_EQ(a.nonfinite, b.nonfinite) << what;
}
#endif

TEST(ScreenCuda, HostAndDeviceViewsMatchTheCpu) {
  DIDMARK_SKIP_WITHOUT_GPU();
#if DIDMARK_HAVE_CUDA
  BackendOptions bo;
  bo.staging_bytes = std::size_t{1} << 20;  // host tensors cross many chunks
  const auto gpu = make_cuda_backend(bo);
  const auto cpu = make_cpu_backend(2);
  std::vector<detail::CarrierSpec> cs;
  std::vector<Payload> ps;
  for (uint64_t k = 0; k < 2100; ++k) {  // two key tiles on the GPU, a partial one
    cs.push_back(derive_carrier(test::random_key(300 + k), "blocks.0.weight", 61));
    ps.push_back(test::random_payload(900 + k, 61));
  }
  const auto bits = packed(ps);
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    test::Buffer w = test::gaussian("w", t, {2'000'077}, 12, 0.05);
    test::set(w.view, 17, std::nan(""));
    test::set(w.view, 5000, 1e4);
    void* dev = nullptr;
    ASSERT_EQ(cudaMalloc(&dev, w.view.nbytes()), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dev, w.view.data, w.view.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
    TensorView dv = w.view;
    dv.data = dev;
    dv.device = Device::cuda;
    for (const ScreenSample s : {ScreenSample{1, 0}, ScreenSample{3, 2}, ScreenSample{5, 4}, ScreenSample{400, 9}}) {
      ScreenSums want, host, device;
      cpu->screen(w.view, s, cs, bits, want);
      gpu->screen(w.view, s, cs, bits, host);
      gpu->screen(dv, s, cs, bits, device);
      const std::string what = std::string(dtype_name(t)) + " stride " + std::to_string(s.stride);
      expect_same(host, want, what + " (host view)");
      expect_same(device, want, what + " (device view)");
    }
    cudaFree(dev);
  }
#endif
}

// Backend::screen_many on the GPU (screen() per item) against the CPU's one-dispatch version.
TEST(ScreenCuda, ManyMatchesTheCpu) {
  DIDMARK_SKIP_WITHOUT_GPU();
#if DIDMARK_HAVE_CUDA
  const auto gpu = make_cuda_backend(0);
  const auto cpu = make_cpu_backend(2);
  std::vector<test::Buffer> ws;
  ws.push_back(test::gaussian("a", DType::f32, {300'077}, 1));
  ws.push_back(test::gaussian("b", DType::f16, {7, 1531}, 2));
  ws.push_back(test::gaussian("c", DType::bf16, {100'003}, 3));
  const std::size_t K = 100;
  std::vector<detail::CarrierSpec> cs;
  std::vector<Payload> ps;
  for (std::size_t k = 0; k < K; ++k) ps.push_back(test::random_payload(50 + k, 61));
  for (std::size_t t = 0; t < ws.size(); ++t)
    for (std::size_t k = 0; k < K; ++k) cs.push_back(derive_carrier(test::random_key(k), ws[t].name, 61));
  const auto bits = packed(ps);
  std::vector<ScreenItem> items;
  for (std::size_t t = 0; t < ws.size(); ++t) {
    items.push_back({ws[t].view, {3, 1}, t});
    items.push_back({ws[t].view, {3, 2}, t});
  }
  items.push_back({ws[2].view, {1, 0}, 0});
  std::vector<ScreenSums> want(items.size()), got(items.size());
  cpu->screen_many(items, K, cs, bits, want);
  gpu->screen_many(items, K, cs, bits, got);
  for (std::size_t i = 0; i < items.size(); ++i) expect_same(got[i], want[i], "item " + std::to_string(i));
#endif
}

TEST(ScreenCuda, ScreenThenConfirmMatchesTheCpu) {
  DIDMARK_SKIP_WITHOUT_GPU();
  std::vector<test::Buffer> m;
  for (int l = 0; l < 4; ++l) m.push_back(test::gaussian("l" + std::to_string(l) + ".weight", DType::bf16, {1024, 1024}, 40 + l));
  std::vector<Claim> claims;
  for (uint64_t k = 0; k < 300; ++k) claims.push_back({test::random_key(7000 + k), test::random_payload(8000 + k)});
  WatermarkOptions o;
  o.set_strength(0.02);
  embed_in_place(test::named(m), claims[123].key, claims[123].payload, o, *make_cpu_backend());
  ScreenOptions so;
  so.seed = 3;
  const auto gpu = make_cuda_backend(0);
  ScreenSummary hc, hg;
  const auto a = verify_screened(test::named(m), claims, o, so, *make_cpu_backend(), &hc);
  const auto b = verify_screened(test::named(m), claims, o, so, *gpu, &hg);
  ASSERT_TRUE(hc.screened && hg.screened);
  EXPECT_EQ(hc.candidates, hg.candidates);
  for (std::size_t k = 0; k < claims.size(); ++k) {
    EXPECT_EQ(a[k].screened, b[k].screened) << k;
    if (a[k].screened) {
      EXPECT_EQ(a[k].z, b[k].z) << k;
    } else {
      EXPECT_NEAR(a[k].z, b[k].z, 1e-9 * std::abs(a[k].z)) << k;  // the full pass: GPU atomics
    }
  }
  EXPECT_TRUE(b[123].detected);
}

}  // namespace
}  // namespace didmark
