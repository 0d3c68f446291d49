// CPU and CUDA alignment ops give the same answers: descriptor sums, gathers and realigned
// values bit for bit (host and device inputs), rotations to rounding, and a whole
// realignment the same tensors. Skips without a GPU.
#include <gtest/gtest.h>

#include <cstring>

#include "alignment_test_util.hpp"
#include "backend/alignment_ops.hpp"

#if DIDMARK_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

using namespace didmark;
using namespace didmark::test;

TEST(AlignmentCuda, OpsMatchTheCpuBitForBit) {
  DIDMARK_SKIP_WITHOUT_GPU();
#if DIDMARK_HAVE_CUDA
  auto cpu_b = make_cpu_backend();
  auto gpu_b = make_cuda_backend(0);
  alignment::AlignmentOps* c = &cpu_b->alignment_ops();
  alignment::AlignmentOps* g = &gpu_b->alignment_ops();
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const Buffer w = gaussian("w", t, {1037, 333}, 5, 0.5);
    std::vector<double> r1(1037), c1(333), r2(1037), c2(333);
    c->axis_sumsq(w.view, r1, c1);
    g->axis_sumsq(w.view, r2, c2);
    EXPECT_EQ(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(double)), 0);
    EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(double)), 0);
    for (int axis = 0; axis < 2; ++axis) {
      const std::vector<int64_t> idx = {3, -1, axis == 0 ? 1036 : 332, 0, 17};
      std::vector<float> o1(5 * static_cast<std::size_t>(axis == 0 ? 333 : 1037)), o2(o1.size());
      c->gather(w.view, axis, idx, o1);
      g->gather(w.view, axis, idx, o2);
      EXPECT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(float)), 0);
    }
    for (bool tr : {false, true}) {
      const int64_t R = tr ? 333 : 1000, C = tr ? 1000 : 333;
      auto rp = tf::random_perm(tr ? 333 : 1037, 1), cp = tf::random_perm(tr ? 1037 : 333, 2);
      std::vector<int64_t> rs(rp.begin(), rp.begin() + R), cs(cp.begin(), cp.begin() + C);
      rs[2] = -1;
      cs[5] = -1;
      std::vector<float> rm(static_cast<std::size_t>(R), -1.5f), cm(static_cast<std::size_t>(C), 0.75f);
      rm[4] = 0.0f;
      std::vector<float> o1(static_cast<std::size_t>(R * C)), o2(o1.size());
      c->realign(w.view, tr, rs, cs, rm, cm, TensorView::contiguous(o1.data(), DType::f32, {R, C}));
      g->realign(w.view, tr, rs, cs, rm, cm, TensorView::contiguous(o2.data(), DType::f32, {R, C}));
      EXPECT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(float)), 0) << "transposed " << tr;
    }
  }
  // Device-resident input.
  const Buffer w = gaussian("w", DType::f32, {700, 129}, 6, 1.0);
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, w.view.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d, w.view.data, w.view.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  TensorView dv = w.view;
  dv.data = d;
  dv.device = Device::cuda;
  std::vector<double> r1(700), r2(700);
  c->axis_sumsq(w.view, r1, {});
  g->axis_sumsq(dv, r2, {});
  EXPECT_EQ(std::memcmp(r1.data(), r2.data(), r1.size() * sizeof(double)), 0);
  // Rotation: a GEMM on both sides, equal to rounding.
  const Buffer q = gaussian("q", DType::f32, {129, 129}, 7, 0.1);
  std::vector<int64_t> rows = {699, 0, 5, 5, 300};
  std::vector<float> y1(rows.size() * 129), y2(y1.size());
  c->rotate(w.view, rows, std::span(static_cast<const float*>(q.view.data), 129 * 129), y1);
  g->rotate(dv, rows, std::span(static_cast<const float*>(q.view.data), 129 * 129), y2);
  for (std::size_t i = 0; i < y1.size(); ++i) EXPECT_NEAR(y1[i], y2[i], 1e-4f * (1.0f + std::fabs(y1[i])));
  cudaFree(d);
#endif
}

TEST(AlignmentCuda, WholeRealignmentIsTheSame) {
  DIDMARK_SKIP_WITHOUT_GPU();
  auto cpu_b = make_cpu_backend();
  auto gpu_b = make_cuda_backend(0);
  tf::Config cfg = tf::big_config(tf::Arch::llama, 3);
  cfg.layers = 2;
  tf::Model m = tf::make_model(cfg);
  const auto o = test_owner(3);
  mark(m, o);
  SketchOptions so;
  so.all = true;
  const auto s1 = make_sketch(m.named(), o.did, so, *cpu_b), s2 = make_sketch(m.named(), o.did, so, *gpu_b);
  EXPECT_EQ(s1.serialize(), s2.serialize());
  tf::Model s = m;
  tf::permute_hidden(s, tf::random_perm(cfg.hidden, 4));
  for (int64_t l = 0; l < cfg.layers; ++l) tf::add_dummy_neurons(s, l, 16, 5 + static_cast<uint64_t>(l));
  tf::quantize_int8(s);
  const auto a = realign_for_owner(s.named(), s1, {}, *cpu_b);
  const auto b = realign_for_owner(s.named(), s1, {}, *gpu_b);
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  EXPECT_EQ(a.report().rows_moved, b.report().rows_moved);
  EXPECT_EQ(a.report().rows_dropped, b.report().rows_dropped);
  for (std::size_t i = 0; i < a.tensors().size(); ++i) {
    EXPECT_EQ(a.tensors()[i].name, b.tensors()[i].name);
    EXPECT_EQ(std::memcmp(a.tensors()[i].view.data, b.tensors()[i].view.data, a.tensors()[i].view.nbytes()), 0);
  }
  const Claim c = o.claim();
  const auto v1 = verify_realigned(s.named(), s1, std::span(&c, 1), {}, *cpu_b)[0];
  const auto v2 = verify_realigned(s.named(), s1, std::span(&c, 1), {}, *gpu_b)[0];
  EXPECT_TRUE(v1.detected);
  EXPECT_NEAR(v1.z, v2.z, 1e-9 * std::fabs(v1.z));
}
