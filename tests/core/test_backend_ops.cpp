// Every operation of every area on every backend this machine has, against the one-thread CPU
// backend (after ggml's test-backend-ops): the watermark primitives, the dataset table and the
// attribution table. Outputs sit between guard bytes that must come back untouched. Backends:
// the CPU with 3 threads (threads must not change a bit where the contract says so) and, when
// a GPU is present, CUDA with 1 MiB staging so host inputs cross many chunks. With
// DIDMARK_REQUIRE_CUDA=1 a missing GPU is a failure, not a quiet CPU-only pass.
//
// Also the thread-safety contract of backend.hpp: many verifications at once on one backend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <thread>

#include "backend/attribution_ops.hpp"
#include "backend/dataset_ops.hpp"
#include "didmark/backend.hpp"
#include "didmark/watermark.hpp"
#include "test_util.hpp"

using namespace didmark;
using test::Buffer;

namespace {

struct Named {
  std::string name;
  std::shared_ptr<Backend> backend;
};

const std::shared_ptr<Backend>& reference() {
  static const auto ref = make_cpu_backend(1);
  return ref;
}

std::vector<Named> others() {
  std::vector<Named> out{{"cpu x3", make_cpu_backend(3)}};
  if (cuda_available()) {
    BackendOptions o;
    o.staging_bytes = std::size_t{1} << 20;
    o.table_gpu_min_rows = 1;
    out.push_back({"cuda", make_cuda_backend(o)});
  }
  return out;
}

// Output memory with guard bytes before and after the `bytes` handed out.
struct Guarded {
  static constexpr std::size_t kGuard = 64;
  static constexpr unsigned char kByte = 0xA5;
  std::vector<unsigned char> mem;
  std::size_t bytes;
  explicit Guarded(std::size_t n) : mem(n + 2 * kGuard, kByte), bytes(n) {}
  unsigned char* data() { return mem.data() + kGuard; }
  bool guards_intact() const {
    for (std::size_t i = 0; i < kGuard; ++i)
      if (mem[i] != kByte || mem[kGuard + bytes + i] != kByte) return false;
    return true;
  }
};

double rel(double a, double b) { return std::abs(a - b) / std::max(1.0, std::max(std::abs(a), std::abs(b))); }

TEST(BackendOps, GpuPresentWhenRequired) {
  if (cuda_required()) {
    EXPECT_TRUE(cuda_available()) << "DIDMARK_REQUIRE_CUDA=1 but no usable GPU";
  }
  EXPECT_GE(others().size(), 1u);
  EXPECT_EQ(reference()->options().threads, 1);
}

TEST(BackendOps, WatermarkPrimitives) {
  const WatermarkKey key = test::random_key(11);
  std::vector<detail::CarrierSpec> carriers;
  for (uint32_t k = 0; k < 3; ++k) carriers.push_back(derive_carrier(key, "t" + std::to_string(k), 37 + k));
  for (const auto& [name, be] : others()) {
    for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      const Buffer w = test::gaussian("w", t, {300'007}, 5, 0.7);
      std::vector<CorrelateStats> a(3), b(3);
      reference()->correlate(w.view, carriers, a);
      be->correlate(w.view, carriers, b);
      for (std::size_t k = 0; k < 3; ++k) {
        ASSERT_EQ(a[k].bit_sums.size(), b[k].bit_sums.size());
        for (std::size_t i = 0; i < a[k].bit_sums.size(); ++i)
          EXPECT_LT(rel(a[k].bit_sums[i], b[k].bit_sums[i]), 1e-9) << name << " " << dtype_name(t);
        EXPECT_LT(rel(a[k].sum_sq, b[k].sum_sq), 1e-9) << name;
      }
      const std::vector<float> delta(carriers[1].num_bits, 3e-3f);
      Guarded ga(w.view.nbytes()), gb(w.view.nbytes());
      TensorView da = w.view, db = w.view;
      da.data = ga.data();
      db.data = gb.data();
      reference()->carrier_add(w.view, da, carriers[1], delta);
      be->carrier_add(w.view, db, carriers[1], delta);
      EXPECT_EQ(ga.mem, gb.mem) << name << " " << dtype_name(t) << ": marked values differ";
      EXPECT_TRUE(gb.guards_intact()) << name;
      EXPECT_EQ(reference()->sample(w.view, 1001), be->sample(w.view, 1001)) << name;
      Guarded gc(w.view.nbytes());
      TensorView dc = w.view;
      dc.data = gc.data();
      be->copy(w.view, dc);
      EXPECT_EQ(std::memcmp(gc.data(), w.view.data, w.view.nbytes()), 0) << name;
      EXPECT_TRUE(gc.guards_intact()) << name;
    }
  }
}

// Backend::screen (registry screening): exact integer block sums, so every backend and thread
// count must give the same numbers, host views crossing chunks included.
TEST(BackendOps, Screen) {
  std::vector<detail::CarrierSpec> carriers;
  std::vector<uint64_t> payload;
  for (uint32_t k = 0; k < 45; ++k) {
    carriers.push_back(derive_carrier(test::random_key(40 + k), "t", 70));
    payload.push_back(0x9E3779B97F4A7C15ull * (k + 1));
    payload.push_back(k);
  }
  for (const auto& [name, be] : others()) {
    for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
      Buffer w = test::gaussian("w", t, {300'007}, 6, 0.7);
      test::set(w.view, 1000, std::nan(""));
      for (const ScreenSample s : {ScreenSample{1, 0}, ScreenSample{7, 3}}) {
        ScreenSums a, b;
        reference()->screen(w.view, s, carriers, payload, a);
        be->screen(w.view, s, carriers, payload, b);
        EXPECT_EQ(a.t, b.t) << name << " " << dtype_name(t) << " stride " << s.stride;
        EXPECT_EQ(a.sum_sq, b.sum_sq) << name;
        EXPECT_EQ(a.elements, b.elements) << name;
        EXPECT_EQ(a.nonfinite, b.nonfinite) << name;
      }
    }
  }
}

TEST(BackendOps, DatasetTable) {
  const dataset::TableSpec spec{{0x1234u, 0x5678u}, {3u, 4u}, 7, 3, 300, 4};
  const std::vector<uint64_t> keys{9, 1, 77, 1ull << 62};
  std::vector<uint64_t> ids(200'003);
  std::mt19937_64 rng(3);
  for (auto& i : ids) i = rng();
  std::vector<uint32_t> a(ids.size());
  reference()->dataset_ops().table_select(ids, spec, keys, a);
  for (const auto& [name, be] : others()) {
    std::vector<uint32_t> b(ids.size());
    be->dataset_ops().table_select(ids, spec, keys, b);
    EXPECT_EQ(a, b) << name;
  }

  const int64_t rows = 2001, dim = 97;
  const WatermarkKey key = test::random_key(2);
  std::vector<detail::CarrierSpec> specs;
  for (int64_t r = 0; r < rows; ++r) specs.push_back(derive_carrier(key, static_cast<uint64_t>(r * 5), 64));
  std::vector<float> signs(64);
  for (std::size_t i = 0; i < signs.size(); ++i) signs[i] = i % 3 ? 1.0f : -1.0f;
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    Buffer src = test::gaussian("x", t, {rows, dim}, 8, 0.3);
    test::set(src.view, 17 * dim + 3, std::nan(""));  // a non-finite row is copied through
    Guarded ga(src.view.nbytes());
    TensorView da = src.view;
    da.data = ga.data();
    std::vector<dataset::RowEmbedStats> sa(static_cast<std::size_t>(rows));
    reference()->dataset_ops().array_embed(src.view, da, specs, signs, 0.05, sa);
    std::vector<dataset::ClaimSums> ca(1);
    reference()->dataset_ops().array_correlate(da, specs, {}, signs, ca);
    for (const auto& [name, be] : others()) {
      Guarded gb(src.view.nbytes());
      TensorView db = src.view;
      db.data = gb.data();
      std::vector<dataset::RowEmbedStats> sb(static_cast<std::size_t>(rows));
      be->dataset_ops().array_embed(src.view, db, specs, signs, 0.05, sb);
      EXPECT_EQ(ga.mem, gb.mem) << name << " " << dtype_name(t);
      for (std::size_t r = 0; r < sa.size(); ++r) {
        ASSERT_EQ(sa[r].status, sb[r].status) << name << " row " << r;
        if (sa[r].status == dataset::kRowOk) {
          ASSERT_EQ(sa[r].src_sq, sb[r].src_sq) << name << " row " << r;  // the fixed-order sum
        }
      }
      std::vector<dataset::ClaimSums> cb(1);
      be->dataset_ops().array_correlate(da, specs, {}, signs, cb);
      EXPECT_EQ(ca[0].rows, cb[0].rows);
      EXPECT_EQ(ca[0].skipped, cb[0].skipped);
      EXPECT_LT(rel(ca[0].t, cb[0].t), 1e-9) << name;
      for (std::size_t i = 0; i < 64; ++i) EXPECT_LT(rel(ca[0].bit_sums[i], cb[0].bit_sums[i]), 1e-9) << name;
    }
  }
}

TEST(BackendOps, AttributionTable) {
  using attribution::KnnTrainSet;
  const int64_t n = 1500, d = 24, m = 40;
  std::mt19937_64 rng(4);
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> x(static_cast<std::size_t>(n * d)), q(static_cast<std::size_t>(m * d)), norms(static_cast<std::size_t>(n));
  for (auto& v : x) v = nd(rng);
  for (auto& v : q) v = nd(rng);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(x[static_cast<std::size_t>(i * d + j)]) * x[static_cast<std::size_t>(i * d + j)];
    norms[static_cast<std::size_t>(i)] = static_cast<float>(s);
  }
  std::vector<int64_t> labels(static_cast<std::size_t>(n)), qlabels(static_cast<std::size_t>(m));
  for (auto& l : labels) l = static_cast<int64_t>(rng() % 3);
  for (auto& l : qlabels) l = static_cast<int64_t>(rng() % 3);
  KnnTrainSet set;
  set.x = x.data();
  set.sq_norms = norms.data();
  set.labels = labels.data();
  set.n = n;
  set.d = d;
  set.k = 5;
  auto values = [&](Backend& be) {
    auto s = be.attribution_ops().knn_session(set);
    s->accumulate(q.data(), qlabels.data(), m);
    return s->sums();
  };
  const auto ref_values = values(*reference());
  const Projection proj{.seed = 5, .k = 300};
  const auto ref_rows = [&] {
    std::vector<float> r(static_cast<std::size_t>(50 * proj.k));
    reference()->attribution_ops().rademacher_rows(proj, 7, 50, r.data());
    return r;
  }();
  std::vector<float> ref_proj(static_cast<std::size_t>(n * proj.k));
  reference()->attribution_ops().project(TensorView::contiguous(x.data(), DType::f32, {n, d}), proj, ref_proj.data(),
                                        DType::f32, 0);
  std::vector<float> ref_c(static_cast<std::size_t>(m * n));
  reference()->attribution_ops().gemm_abt(q.data(), x.data(), ref_c.data(), m, n, d);
  auto gram = [&](Backend& be) {
    auto g = be.attribution_ops().gram(d);
    g->add(x.data(), 700);
    g->add(x.data() + 700 * d, n - 700);
    return g->result();
  };
  const auto ref_gram = gram(*reference());
  auto solve = [&](Backend& be) {
    std::vector<double> b(static_cast<std::size_t>(3 * d), 1.0);
    be.attribution_ops().spd_solver(ref_gram, d, 0.1, "gram")->solve(b.data(), 3);
    return b;
  };
  const auto ref_solve = solve(*reference());
  std::vector<double> xv(static_cast<std::size_t>(d), 0.5), ref_dots(static_cast<std::size_t>(n));
  reference()->attribution_ops().row_dots(x.data(), n, d, xv.data(), ref_dots.data());

  for (const auto& [name, be] : others()) {
    const auto v = values(*be);
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_LT(std::abs(v[i] - ref_values[i]), 1e-9) << name << " row " << i;
    std::vector<float> r(ref_rows.size());
    be->attribution_ops().rademacher_rows(proj, 7, 50, r.data());
    EXPECT_EQ(r, ref_rows) << name;
    std::vector<float> p(ref_proj.size());
    be->attribution_ops().project(TensorView::contiguous(x.data(), DType::f32, {n, d}), proj, p.data(), DType::f32, 0);
    for (std::size_t i = 0; i < p.size(); ++i) ASSERT_LT(std::abs(p[i] - ref_proj[i]), 1e-4f) << name;
    std::vector<float> c(ref_c.size());
    be->attribution_ops().gemm_abt(q.data(), x.data(), c.data(), m, n, d);
    for (std::size_t i = 0; i < c.size(); ++i) ASSERT_LT(std::abs(c[i] - ref_c[i]), 1e-3f) << name;
    const auto g = gram(*be);
    for (std::size_t i = 0; i < g.size(); ++i) ASSERT_LT(rel(g[i], ref_gram[i]), 1e-9) << name;
    const auto s = solve(*be);
    for (std::size_t i = 0; i < s.size(); ++i) ASSERT_LT(rel(s[i], ref_solve[i]), 1e-8) << name;
    std::vector<double> dots(ref_dots.size());
    be->attribution_ops().row_dots(x.data(), n, d, xv.data(), dots.data());
    for (std::size_t i = 0; i < dots.size(); ++i) ASSERT_LT(rel(dots[i], ref_dots[i]), 1e-9) << name;
  }
}

// backend.hpp: every member may be called from several threads at once. Eight threads verify
// their own marked tensors (and embed into their own outputs) on one backend; each must get
// exactly what a lone call gets.
TEST(BackendOps, ConcurrentCallsOnOneBackendGiveLoneCallResults) {
  std::vector<Named> all = others();
  all.push_back({"cpu shared", make_cpu_backend()});
  for (const auto& [name, be] : all) {
    constexpr int kThreads = 8;
    std::vector<Buffer> bufs;
    std::vector<WatermarkKey> keys;
    const Payload payload = test::random_payload(1);
    std::vector<VerifyReport> lone(kThreads);
    for (int i = 0; i < kThreads; ++i) {
      bufs.push_back(test::gaussian("layer.weight", i % 2 ? DType::bf16 : DType::f32, {700, 301}, 100 + static_cast<uint64_t>(i)));
      keys.push_back(test::random_key(200 + static_cast<uint64_t>(i)));
      const std::vector<NamedTensor> t{bufs.back().named()};
      WatermarkOptions o;
      o.set_strength(0.03);  // z about 13 on 210k elements
      embed_in_place(t, keys.back(), payload, o, *be);
      lone[static_cast<std::size_t>(i)] = verify(t, keys.back(), payload, o, *be);
      ASSERT_TRUE(lone[static_cast<std::size_t>(i)].detected);
    }
    std::vector<double> z(kThreads * 20, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] {
        const std::vector<NamedTensor> t{bufs[static_cast<std::size_t>(i)].named()};
        for (int rep = 0; rep < 20; ++rep)
          z[static_cast<std::size_t>(i * 20 + rep)] = verify(t, keys[static_cast<std::size_t>(i)], payload, {}, *be).z;
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i)
      for (int rep = 0; rep < 20; ++rep)
        EXPECT_EQ(z[static_cast<std::size_t>(i * 20 + rep)], lone[static_cast<std::size_t>(i)].z) << name << " thread " << i;
  }
}

}  // namespace
