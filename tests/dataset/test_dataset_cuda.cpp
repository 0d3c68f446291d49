// CPU/GPU parity of the dataset op table (skips without a GPU): table slots and embedded
// array values bit for bit, correlation sums to a stated tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "backend/dataset_ops.hpp"
#include "didmark/dataset.hpp"
#include "test_util.hpp"

using namespace didmark;

namespace {
// Staging of 1 MiB: the host arrays below cross many chunks.
std::shared_ptr<Backend> gpu(int64_t table_gpu_min_rows = 1) {
  BackendOptions o;
  o.staging_bytes = std::size_t{1} << 20;
  o.table_gpu_min_rows = table_gpu_min_rows;
  return test::gpu_backend(o);
}
dataset::DatasetOps& cpu_ops() {
  static const auto b = make_cpu_backend(1);
  return b->dataset_ops();
}
}  // namespace

TEST(DatasetCudaParity, TableSlots) {
  DIDMARK_SKIP_WITHOUT_GPU();
  auto be = gpu();
  dataset::DatasetOps& cuda = be->dataset_ops();
  const dataset::TableSpec spec{{0x12345678u, 0x9abcdef0u}, {7u, 9u}, 10, 2, 256, 5};
  const std::vector<uint64_t> keys{5, 1, 99, 1ull << 63, 42};
  std::vector<uint64_t> ids(3'000'017);
  std::mt19937_64 rng(1);
  for (auto& i : ids) i = rng();
  std::vector<uint32_t> a(ids.size()), b(ids.size());
  cpu_ops().table_select(ids, spec, keys, a);
  cuda.table_select(ids, spec, keys, b);
  EXPECT_EQ(a, b);
}

TEST(DatasetCudaParity, ArrayEmbedAndCorrelate) {
  DIDMARK_SKIP_WITHOUT_GPU();
  auto be = gpu();
  dataset::DatasetOps& cuda = be->dataset_ops();
  for (DType t : {DType::f32, DType::f16, DType::bf16, DType::f64}) {
    for (int64_t dim : {int64_t{1}, int64_t{37}, int64_t{128}, int64_t{769}}) {
      const int64_t rows = 3001;
      auto src = test::gaussian("x", t, {rows, dim}, 7 + static_cast<uint64_t>(dim), 0.1);
      test::set(src.view, 5 * dim, std::nan(""));
      auto d_cpu = src, d_gpu = src;
      const WatermarkKey key = test::random_key(3);
      const Payload payload = test::random_payload(4, 64);
      std::vector<detail::CarrierSpec> specs(static_cast<std::size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) specs[static_cast<std::size_t>(r)] = derive_carrier(key, static_cast<uint64_t>(r * 3), 64);
      std::vector<float> signs(64);
      for (int b = 0; b < 64; ++b) signs[static_cast<std::size_t>(b)] = payload.bits[static_cast<std::size_t>(b)] ? -1.0f : 1.0f;
      std::vector<dataset::RowEmbedStats> sa(static_cast<std::size_t>(rows)), sb(static_cast<std::size_t>(rows));
      cpu_ops().array_embed(src.view, d_cpu.view, specs, signs, 0.03, sa);
      cuda.array_embed(src.view, d_gpu.view, specs, signs, 0.03, sb);
      EXPECT_EQ(d_cpu.bytes, d_gpu.bytes) << dtype_name(t) << " dim " << dim;
      for (std::size_t r = 0; r < sa.size(); ++r) {
        ASSERT_EQ(sa[r].status, sb[r].status);
        EXPECT_EQ(sa[r].src_sq, sb[r].src_sq);  // the fixed-order sum
        EXPECT_NEAR(sa[r].dot, sb[r].dot, 1e-9 * std::abs(sa[r].dot) + 1e-12);
      }
      std::vector<detail::CarrierSpec> two = specs;
      for (int64_t r = 0; r < rows; ++r) two.push_back(derive_carrier(test::random_key(9), static_cast<uint64_t>(r), 64));
      std::vector<float> signs2 = signs;
      signs2.insert(signs2.end(), signs.begin(), signs.end());
      std::vector<uint8_t> use(static_cast<std::size_t>(rows), 1);
      use[10] = 0;
      std::vector<dataset::ClaimSums> ca(2), cb(2);
      cpu_ops().array_correlate(d_cpu.view, two, use, signs2, ca);
      cuda.array_correlate(d_cpu.view, two, use, signs2, cb);
      for (int k = 0; k < 2; ++k) {
        EXPECT_EQ(ca[k].rows, cb[k].rows);
        EXPECT_EQ(ca[k].skipped, cb[k].skipped);
        EXPECT_NEAR(ca[k].t, cb[k].t, 1e-9 * std::max(1.0, std::abs(ca[k].t)));
        for (int b = 0; b < 64; ++b) {
          EXPECT_NEAR(ca[k].bit_sums[b], cb[k].bit_sums[b], 1e-9 * std::max(1.0, std::abs(ca[k].bit_sums[b])));
          EXPECT_NEAR(ca[k].bit_weight[b], cb[k].bit_weight[b], 1e-9 * std::max(1.0, ca[k].bit_weight[b]));
        }
      }
    }
  }
}

TEST(DatasetCudaParity, EndToEndTableOnTheGpuBackend) {
  DIDMARK_SKIP_WITHOUT_GPU();
  auto be = gpu();
  // gpu() sends even this short table to the GPU (the default threshold is 10^7 rows).
  const auto t = CsvTable::parse(synthetic_table_csv(50000, 3));
  const WatermarkKey k = test::random_key(1);
  const Payload p = test::random_payload(2);
  const auto a = embed_table(t, k, p, {}, *make_cpu_backend());
  const auto b = embed_table(t, k, p, {}, *be);
  EXPECT_NE(b.report.backend.find("cuda"), std::string::npos) << b.report.backend;
  EXPECT_EQ(t.render(a.edits), t.render(b.edits));
  const auto marked = CsvTable::parse(t.render(b.edits));
  const Claim c{k, p};
  const auto va = verify_table(marked, std::span(&c, 1), {}, *make_cpu_backend())[0];
  const auto vb = verify_table(marked, std::span(&c, 1), {}, *be)[0];
  EXPECT_TRUE(vb.detected);
  EXPECT_EQ(va.matches, vb.matches);
  EXPECT_EQ(va.marked_rows, vb.marked_rows);
  EXPECT_EQ(va.votes, vb.votes);
}

TEST(DatasetCudaParity, ArrayReportsOnTheGpuBackend) {
  DIDMARK_SKIP_WITHOUT_GPU();
  auto be = gpu();
  auto src = test::gaussian("x", DType::f32, {5000, 96}, 5, 0.2);
  auto a = src, b = src;
  const WatermarkKey k = test::random_key(6);
  const Payload p = test::random_payload(7);
  const auto ra = embed_array(src.view, a.view, {}, k, p, {}, *make_cpu_backend());
  const auto rb = embed_array(src.view, b.view, {}, k, p, {}, *be);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_NEAR(ra.min_cosine, rb.min_cosine, 1e-9);
  const Claim c{k, p};
  const auto va = verify_array(a.view, {}, std::span(&c, 1), {}, *make_cpu_backend())[0];
  const auto vb = verify_array(a.view, {}, std::span(&c, 1), {}, *be)[0];
  EXPECT_TRUE(vb.detected);
  EXPECT_NEAR(va.z, vb.z, 1e-9 * std::abs(va.z));
  EXPECT_EQ(va.decoded, vb.decoded);
}
