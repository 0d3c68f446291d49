// The CPU attribution op table: Eigen GEMMs (cpu_dense.hpp), a stable LSD radix sort per
// query, the shared recursion of attribution_math.hpp, all spread over the thread pool.
#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "didmark/detail/attribution_math.hpp"
#include "didmark/detail/convert.hpp"
#include "backend/attribution_ops.hpp"
#include "backend/cpu/dense/dense.hpp"
#include "common/radix_sort.hpp"
#include "common/thread_pool.hpp"
#include "didmark/error.hpp"

namespace didmark::attribution {
namespace {

constexpr std::size_t kDefaultHostBudget = std::size_t{512} << 20;
constexpr int64_t kMaxQueryTile = 4096;
constexpr int64_t kQueryBlock = 8;    // query rows per GEMM are a multiple of this
constexpr int64_t kTrainChunk = 512;  // training rows per GEMM (and per summing task)

// ---- Stable LSD radix sort of (key, index) pairs --------------------------------------

// Float bits -> unsigned keys in the same order (negatives reversed, positives above).
inline uint32_t sortable(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline uint64_t sortable(double f) {
  uint64_t u;
  std::memcpy(&u, &f, 8);
  return (u & 0x8000000000000000ull) ? ~u : (u | 0x8000000000000000ull);
}

// Items pack (sortable distance key, match bit, row index) into one integer, the key on
// top: u64 for f32 distances, u128 for f64. The radix passes look at the key bits only, and
// LSD radix sort is stable, so equal keys keep ascending row index.
__extension__ typedef unsigned __int128 u128;

template <class Item, class Key>
struct RadixScratch {
  static constexpr int kPayloadBits = static_cast<int>(sizeof(Item) * 8 - sizeof(Key) * 8);
  static constexpr int kBits = 11;
  static constexpr int kPasses = static_cast<int>((sizeof(Key) * 8 + kBits - 1) / kBits);
  static constexpr uint32_t kRadix = 1u << kBits;
  std::vector<Item> items[2];
  std::vector<uint32_t> hist;  // kPasses x kRadix

  void reserve(int64_t n) {
    for (auto& b : items) b.resize(static_cast<std::size_t>(n));
    hist.resize(static_cast<std::size_t>(kPasses) * kRadix);
  }

  static uint32_t digit(Item it, int p) {
    return static_cast<uint32_t>(it >> (kPayloadBits + p * kBits)) & (kRadix - 1);
  }

  // Sort items[0]; returns the index (0 or 1) of the buffer holding the result.
  int sort(int64_t n) {
    const Item* r = detail::lsd_radix_sort(items[0].data(), items[1].data(), static_cast<std::size_t>(n), kPasses, kRadix,
                                   digit, hist.data());
    return r == items[0].data() ? 0 : 1;
  }
};

// ---- KNN-Shapley session -----------------------------------------------------------------

template <class T>
class CpuKnnSession final : public KnnSession {
  using Key = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  using Item = std::conditional_t<sizeof(T) == 8, u128, uint64_t>;
  static constexpr int kPayloadBits = static_cast<int>(sizeof(Item) * 8 - sizeof(Key) * 8);

 public:
  CpuKnnSession(const KnnTrainSet& t, detail::ThreadPool& pool)
      : t_(t), pool_(pool), acc_(static_cast<std::size_t>(t.n), 0.0), scratch_(static_cast<std::size_t>(pool.size())) {
    const std::size_t budget = t.memory_budget ? t.memory_budget : kDefaultHostBudget;
    const std::size_t per_query = static_cast<std::size_t>(t.n) * (sizeof(T) + sizeof(double));
    max_tile_ = std::clamp<int64_t>(static_cast<int64_t>(budget / std::max<std::size_t>(per_query, 1)), 1, kMaxQueryTile);
  }

  int64_t max_query_tile() const override { return max_tile_; }

  void accumulate(const void* queries, const int64_t* labels, int64_t m) override {
    DIDMARK_ASSERT(m >= 1 && m <= max_tile_);
    const int64_t n = t_.n, d = t_.d;
    const auto* x = static_cast<const T*>(t_.x);
    // Fixed GEMM shapes keep every dot product's rounding independent of the tile and the
    // thread count: queries padded with zero rows to a multiple of kQueryBlock (no GEMV or
    // remainder-row paths), training rows in chunks at fixed offsets.
    const int64_t mp = (m + kQueryBlock - 1) / kQueryBlock * kQueryBlock;
    qpad_.assign(static_cast<std::size_t>(mp * d), T(0));
    std::memcpy(qpad_.data(), queries, sizeof(T) * static_cast<std::size_t>(m * d));
    if (mp * n > dots_size_) {  // uninitialized: every entry is written before it is read
      dots_.reset(new T[static_cast<std::size_t>(mp * n)]);
      values_.reset(new double[static_cast<std::size_t>(mp * n)]);
      dots_size_ = mp * n;
    }

    // 1. dots[q][j] = q . x_j.
    const int64_t chunks = (n + kTrainChunk - 1) / kTrainChunk;
    pool_.parallel_for(chunks, [&](int, int64_t c) {
      const int64_t j0 = c * kTrainChunk, nj = std::min(kTrainChunk, n - j0);
      dense::gemm_abt(qpad_.data(), d, x + j0 * d, d, dots_.get() + j0, n, mp, nj, d, T(1), T(0));
    });

    // 2. per query: sort keys, ties by index, then the recursion in rank order.
    pool_.parallel_for(m, [&](int worker, int64_t qi) { value_query(worker, qi, labels[qi]); });

    // 3. sums += values, query after query (so tiling never changes the result).
    pool_.parallel_for(chunks, [&](int, int64_t c) {
      const int64_t j0 = c * kTrainChunk, j1 = std::min(n, j0 + kTrainChunk);
      double* acc = acc_.data();
      for (int64_t qi = 0; qi < m; ++qi) {
        const double* s = values_.get() + qi * n;
        for (int64_t j = j0; j < j1; ++j) acc[j] += s[j];
      }
    });
  }

  std::vector<double> sums() override { return acc_; }

 private:
  void value_query(int worker, int64_t qi, int64_t label) {
    const int64_t n = t_.n;
    auto& rs = scratch_[static_cast<std::size_t>(worker)];
    if (static_cast<int64_t>(rs.items[0].size()) < n) rs.reserve(n);
    const T* dot = dots_.get() + qi * n;
    const auto* norms = static_cast<const T*>(t_.sq_norms);
    const int64_t* labels = t_.labels;
    Item* items = rs.items[0].data();
    auto pack = [&](int64_t j, T dist) {
      const Item payload = static_cast<Item>(static_cast<uint32_t>(j)) | (static_cast<Item>(labels[j] == label) << 31);
      return (static_cast<Item>(sortable(dist)) << kPayloadBits) | payload;
    };
    if (t_.canonical) {
      for (int64_t j = 0; j < n; ++j) {
        const int64_t c = t_.canonical[j];
        items[j] = pack(j, norms[c] - T(2) * dot[c]);
      }
    } else {
      for (int64_t j = 0; j < n; ++j) items[j] = pack(j, norms[j] - T(2) * dot[j]);
    }
    const Item* order = rs.items[rs.sort(n)].data();

    // The recursion, farthest first; rank i (1-based) is order[i - 1].
    const int k = t_.k;
    double* s = values_.get() + qi * n;
    auto row = [](Item it) { return static_cast<uint32_t>(it) & 0x7FFFFFFFu; };
    auto match = [](Item it) { return ((static_cast<uint32_t>(it) >> 31) & 1u) != 0; };
    bool next = match(order[n - 1]);
    double v = knn_shapley_last(next, n, k);
    s[row(order[n - 1])] = v;
    for (int64_t i = n - 1; i >= 1; --i) {
      const bool cur = match(order[i - 1]);
      v += knn_shapley_step(cur, next, i, k);
      s[row(order[i - 1])] = v;
      next = cur;
    }
  }

  KnnTrainSet t_;
  detail::ThreadPool& pool_;
  std::vector<double> acc_;
  std::vector<RadixScratch<Item, Key>> scratch_;
  std::vector<T> qpad_;
  std::unique_ptr<T[]> dots_;
  std::unique_ptr<double[]> values_;
  int64_t dots_size_ = 0;
  int64_t max_tile_ = 1;
};

// ---- Gram and Cholesky -------------------------------------------------------------------

class CpuGram final : public GramAccumulator {
 public:
  CpuGram(int64_t k, detail::ThreadPool& pool) : k_(k), pool_(pool), a_(static_cast<std::size_t>(k * k), 0.0) {}

  void add(const float* x, int64_t rows) override {
    if (rows <= 0) return;
    xd_.resize(static_cast<std::size_t>(rows * k_));
    for (int64_t i = 0; i < rows * k_; ++i) xd_[static_cast<std::size_t>(i)] = static_cast<double>(x[i]);
    // Lower triangle by column blocks: A[c0:, c0:c1] += X[:, c0:]^T X[:, c0:c1].
    constexpr int64_t kBlock = 64;
    const int64_t blocks = (k_ + kBlock - 1) / kBlock;
    pool_.parallel_for(blocks, [&](int, int64_t b) {
      const int64_t c0 = b * kBlock, c1 = std::min(k_, c0 + kBlock);
      dense::gemm_atb_acc(xd_.data() + c0, k_, xd_.data() + c0, k_, a_.data() + c0 * k_ + c0, k_, k_ - c0, c1 - c0,
                          rows);
    });
  }

  std::vector<double> result() override {
    std::vector<double> r = a_;
    for (int64_t i = 0; i < k_; ++i)
      for (int64_t j = i + 1; j < k_; ++j) r[static_cast<std::size_t>(i * k_ + j)] = r[static_cast<std::size_t>(j * k_ + i)];
    return r;
  }

 private:
  int64_t k_;
  detail::ThreadPool& pool_;
  std::vector<double> a_, xd_;
};

class CpuSpdSolver final : public SpdSolver {
 public:
  CpuSpdSolver(std::span<const double> a, int64_t k, double lambda, const char* what, detail::ThreadPool& pool)
      : k_(k), pool_(pool), l_(a.begin(), a.end()) {
    for (int64_t i = 0; i < k; ++i) l_[static_cast<std::size_t>(i * k + i)] += lambda;
    DIDMARK_EXPECTS(dense::cholesky_lower(l_.data(), k), invalid_argument, what,
                    ": the kernel matrix is not positive definite (lambda = ", lambda,
                    "); raise the ridge or the lambda");
  }

  void solve(double* b, int64_t m) override {
    constexpr int64_t kRows = 64;
    const int64_t tasks = (m + kRows - 1) / kRows;
    pool_.parallel_for(tasks, [&](int, int64_t t) {
      const int64_t r0 = t * kRows;
      dense::cholesky_solve_rows(l_.data(), k_, b + r0 * k_, std::min(kRows, m - r0));
    });
  }

 private:
  int64_t k_;
  detail::ThreadPool& pool_;
  std::vector<double> l_;
};

// ---- The table ------------------------------------------------------------------------------

class CpuAttributionOps final : public AttributionOps {
 public:
  explicit CpuAttributionOps(detail::ThreadPool& pool) : pool_(pool) {}

  std::string description() const override {
    return detail::concat("cpu (", pool_.size(), pool_.size() == 1 ? " thread, " : " threads, ", dense::isa(), ")");
  }

  std::unique_ptr<KnnSession> knn_session(const KnnTrainSet& t) override {
    if (t.dtype == DType::f64) return std::make_unique<CpuKnnSession<double>>(t, pool_);
    return std::make_unique<CpuKnnSession<float>>(t, pool_);
  }

  void project(const TensorView& g, const Projection& proj, void* out, DType out_dtype, int64_t feature_tile) override {
    if (out_dtype == DType::f64) {
      project_t<double>(g, proj, static_cast<double*>(out), feature_tile);
    } else {
      project_t<float>(g, proj, static_cast<float*>(out), feature_tile);
    }
  }

  void rademacher_rows(const Projection& proj, int64_t row0, int64_t rows, float* out) override {
    const detail::u32x2 key = rademacher_key(proj.seed);
    pool_.parallel_for(rows, [&](int, int64_t r) {
      dense::rademacher_fill(key.x, key.y, row0 + r, 1, 0, proj.k, proj.scale(), out + r * proj.k, proj.k);
    });
  }

  std::unique_ptr<GramAccumulator> gram(int64_t k) override { return std::make_unique<CpuGram>(k, pool_); }

  std::unique_ptr<SpdSolver> spd_solver(std::span<const double> a, int64_t k, double lambda,
                                        const char* what) override {
    return std::make_unique<CpuSpdSolver>(a, k, lambda, what, pool_);
  }

  void gemm_abt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t kk) override {
    const int64_t chunk = std::max<int64_t>(128, (n + 2 * pool_.size() - 1) / (2 * pool_.size()));
    pool_.parallel_for((n + chunk - 1) / chunk, [&](int, int64_t t) {
      const int64_t j0 = t * chunk;
      dense::gemm_abt(a, kk, b + j0 * kk, kk, c + j0, n, m, std::min(chunk, n - j0), kk, 1.0f, 0.0f);
    });
  }

  void row_dots(const float* a, int64_t n, int64_t kk, const double* x, double* y) override {
    constexpr int64_t kRows = 1024;
    pool_.parallel_for((n + kRows - 1) / kRows, [&](int, int64_t t) {
      const int64_t i1 = std::min(n, (t + 1) * kRows);
      for (int64_t i = t * kRows; i < i1; ++i) {
        const float* r = a + i * kk;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int64_t j = 0;
        for (; j + 4 <= kk; j += 4) {
          s0 += static_cast<double>(r[j]) * x[j];
          s1 += static_cast<double>(r[j + 1]) * x[j + 1];
          s2 += static_cast<double>(r[j + 2]) * x[j + 2];
          s3 += static_cast<double>(r[j + 3]) * x[j + 3];
        }
        for (; j < kk; ++j) s0 += static_cast<double>(r[j]) * x[j];
        y[i] = (s0 + s1) + (s2 + s3);
      }
    });
  }

 private:
  // out (rows x k) = g (rows x p) * R. Each task owns a range of 128-column blocks and walks
  // all of p in tiles: it generates its own slice of R and runs one GEMM per tile, so the
  // tasks share nothing and R is never stored beyond a tile.
  template <class T>
  void project_t(const TensorView& g, const Projection& proj, T* out, int64_t feature_tile) {
    const int64_t rows = g.shape[0], p = g.shape[1], k = proj.k;
    std::fill(out, out + rows * k, T(0));
    if (rows == 0 || p == 0) return;
    const int64_t blocks = (k + kRademacherBlock - 1) / kRademacherBlock;
    const int64_t tasks = std::min<int64_t>(blocks, pool_.size());
    const detail::u32x2 key = rademacher_key(proj.seed);
    const T scale = static_cast<T>(proj.scale());
    const std::size_t esize = dtype_size(g.dtype);
    constexpr DType want = sizeof(T) == 8 ? DType::f64 : DType::f32;
    pool_.parallel_for(tasks, [&](int, int64_t t) {
      const int64_t c0 = (t * blocks / tasks) * kRademacherBlock;
      const int64_t c1 = std::min(k, ((t + 1) * blocks / tasks) * kRademacherBlock);
      const int64_t nc = c1 - c0;
      // A tile of R of about 1 MiB: stays in L2 while the GEMM streams the gradients by it.
      const int64_t pt = feature_tile > 0 ? feature_tile
                                          : std::max<int64_t>(16, static_cast<int64_t>((std::size_t{1} << 20) /
                                                                                        (sizeof(T) * static_cast<std::size_t>(nc))));
      std::vector<T> r(static_cast<std::size_t>(std::min(pt, p) * nc));
      std::vector<T> gbuf;
      for (int64_t p0 = 0; p0 < p; p0 += pt) {
        const int64_t np = std::min(pt, p - p0);
        dense::rademacher_fill(key.x, key.y, p0, np, c0, nc, scale, r.data(), nc);
        const T* gt;
        int64_t ld;
        if (g.dtype == want) {
          gt = static_cast<const T*>(g.data) + p0;
          ld = p;
        } else {
          gbuf.resize(static_cast<std::size_t>(rows * np));
          for (int64_t i = 0; i < rows; ++i)
            detail::convert<T>(static_cast<const char*>(g.data) + (static_cast<std::size_t>(i * p + p0)) * esize, g.dtype, np,
                       gbuf.data() + i * np);
          gt = gbuf.data();
          ld = np;
        }
        dense::gemm_ab_acc(gt, ld, r.data(), nc, out + c0, k, rows, nc, np);
      }
    });
  }

  detail::ThreadPool& pool_;
};

}  // namespace

std::unique_ptr<AttributionOps> make_cpu_attribution_ops(detail::ThreadPool& pool) {
  return std::make_unique<CpuAttributionOps>(pool);
}

}  // namespace didmark::attribution
