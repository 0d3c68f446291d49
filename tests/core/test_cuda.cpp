// CUDA-specific parity: device-resident tensors (the host-view path is covered by the
// backend tests, which run every primitive on every backend present). Skips without a GPU.
#include <gtest/gtest.h>

#include <cstring>

#include "didmark/backend.hpp"
#include "didmark/watermark.hpp"
#include "test_util.hpp"

#if DIDMARK_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

using namespace didmark;

#if DIDMARK_HAVE_CUDA
namespace {
struct DeviceCopy {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  explicit DeviceCopy(const test::Buffer& b) : bytes(b.view.nbytes()) {
    EXPECT_EQ(cudaMalloc(&ptr, bytes), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(ptr, b.view.data, bytes, cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceCopy() { cudaFree(ptr); }
  TensorView view(const test::Buffer& like) const {
    TensorView v = like.view;
    v.data = ptr;
    v.device = Device::cuda;
    return v;
  }
  std::vector<unsigned char> to_host() const {
    std::vector<unsigned char> h(bytes);
    EXPECT_EQ(cudaMemcpy(h.data(), ptr, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    return h;
  }
};
}  // namespace
#endif

TEST(Cuda, DeviceViewsMatchCpuBitForBit) {
  DIDMARK_SKIP_WITHOUT_GPU();
#if DIDMARK_HAVE_CUDA
  auto cpu = make_cpu_backend();
  auto gpu = make_cuda_backend(0);
  const auto key = test::random_key(1);
  const auto payload = test::random_payload(2);
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    test::Buffer host = test::gaussian("layer.weight", t, {1000, 777}, 3, 0.02);
    DeviceCopy dev(host);
    std::vector<NamedTensor> h{host.named()}, d{{"layer.weight", dev.view(host)}};
    WatermarkOptions o;
    o.strength = 0.01;
    const auto er_cpu = embed_in_place(h, key, payload, o, *cpu);
    const auto er_gpu = embed_in_place(d, key, payload, o, *gpu);
    EXPECT_EQ(dev.to_host(), std::vector<unsigned char>(host.bytes.begin(), host.bytes.end() - 1)) << dtype_name(t);
    EXPECT_NEAR(er_cpu.relative_change, er_gpu.relative_change, 1e-6);
    const auto v_cpu = verify(h, key, payload, o, *cpu);
    const auto v_gpu = verify(d, key, payload, o, *gpu);
    EXPECT_NEAR(v_cpu.z, v_gpu.z, 1e-6 * std::abs(v_cpu.z) + 1e-9);
    for (std::size_t b = 0; b < v_cpu.soft_bits.size(); ++b)
      EXPECT_NEAR(v_cpu.soft_bits[b], v_gpu.soft_bits[b], 1e-4);
    EXPECT_EQ(v_cpu.decoded, v_gpu.decoded);
  }
#endif
}

TEST(Cuda, StreamsLargeHostTensorsInChunks) {
  DIDMARK_SKIP_WITHOUT_GPU();
  // 40M f32 elements (160 MB) through the default 64 MiB staging: three chunks, the last one
  // partial; and a 1 MiB staging on odd sizes: hundreds of chunks, none of them tile-aligned
  // at the end. Each dtype in place and out of place.
  auto cpu = make_cpu_backend();
  const auto key = test::random_key(5);
  const auto payload = test::random_payload(6);
  struct Case {
    std::size_t staging;
    DType dtype;
    std::vector<int64_t> shape;
  };
  for (const Case& c : {Case{0, DType::f32, {10'000'001, 4}}, Case{std::size_t{1} << 20, DType::bf16, {3001, 1777}},
                        Case{std::size_t{1} << 20, DType::f64, {1999, 1001}}}) {
    BackendOptions o;
    o.staging_bytes = c.staging;
    auto gpu = make_cuda_backend(o);
    const test::Buffer orig = test::gaussian("big.weight", c.dtype, c.shape, 4, 1.0);
    test::Buffer a = orig, b = orig, out = orig;
    std::vector<NamedTensor> ta{a.named()}, tb{b.named()}, src{orig.named()}, dst{out.named()};
    const auto ea = embed_in_place(ta, key, payload, {}, *cpu);
    const auto eb = embed_in_place(tb, key, payload, {}, *gpu);
    ASSERT_EQ(ea.tensors_marked, 1) << "the policy must mark this tensor, else the test compares two no-ops";
    ASSERT_EQ(eb.tensors_marked, 1);
    EXPECT_NE(a.bytes, orig.bytes);
    EXPECT_EQ(a.bytes, b.bytes) << dtype_name(c.dtype) << " staging " << c.staging;
    embed(src, dst, key, payload, {}, *gpu);  // out of place: the source must stay as it was
    EXPECT_EQ(out.bytes, a.bytes);
    const auto v1 = verify(ta, key, payload, {}, *cpu), v2 = verify(tb, key, payload, {}, *gpu);
    EXPECT_TRUE(v2.detected);
    EXPECT_NEAR(v1.z, v2.z, 1e-6 * v1.z);
    EXPECT_EQ(v1.decoded, v2.decoded);
  }
}
