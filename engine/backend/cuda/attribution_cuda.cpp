// The attribution op table on CUDA: cuBLAS for distances, projections and Gram matrices,
// cuSOLVER for the Cholesky solve, CUB for the per-query sort, kernels/attribution_*.cu for
// the shared formulas. Inputs arrive in host memory and are staged here; what a session
// reuses (the training set, the running sums, the Gram matrix) stays on the device.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/attribution_ops.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "didmark/detail/attribution_math.hpp"
#include "backend/cuda/cuda_libs.hpp"
#include "kernels/cuda_check.cuh"
#include "backend/cuda/cuda_resources.hpp"
#include "didmark/error.hpp"
#include "kernels/attribution_knn.cuh"
#include "kernels/attribution_projection.cuh"

namespace didmark::attribution {
namespace {

using cuda::CudaResources;
using cuda::DeviceBuffer;
using cuda::DeviceScope;

constexpr int64_t kMaxQueryTile = 4096;
constexpr std::size_t kProjectTileBytes = std::size_t{256} << 20;

void h2d(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
  if (bytes) DIDMARK_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
}
void d2h(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
  if (bytes) DIDMARK_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
}

// cuBLAS is column-major: a row-major r x c matrix is a column-major c x r one.
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  DIDMARK_CUBLAS_TRY(cuda_libs::cublas().sgemm_64(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
}
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  DIDMARK_CUBLAS_TRY(cuda_libs::cublas().dgemm_64(h, ta, tb, m, n, k, &alpha, a, lda, b, ldb, &beta, c, ldc));
}

std::size_t free_device_memory(int device) {
  DeviceScope scope(device);
  std::size_t free = 0, total = 0;
  DIDMARK_CUDA_TRY(cudaMemGetInfo(&free, &total));
  return free;
}

// ---- KNN-Shapley ---------------------------------------------------------------------------

template <class T>
class CudaKnnSession final : public KnnSession {
 public:
  CudaKnnSession(CudaResources& res, const KnnTrainSet& t) : res_(res), t_(t) {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const auto n = static_cast<std::size_t>(t.n), d = static_cast<std::size_t>(t.d);
    x_.reserve(n * d * sizeof(T));
    norms_.reserve(n * sizeof(T));
    labels_.reserve(n * sizeof(int64_t));
    acc_.reserve(n * sizeof(double));
    h2d(x_.get(), t.x, n * d * sizeof(T), s);
    h2d(norms_.get(), t.sq_norms, n * sizeof(T), s);
    h2d(labels_.get(), t.labels, n * sizeof(int64_t), s);
    if (t.canonical) {
      canon_.reserve(n * sizeof(int32_t));
      h2d(canon_.get(), t.canonical, n * sizeof(int32_t), s);
    }
    DIDMARK_CUDA_TRY(cudaMemsetAsync(acc_.get(), 0, n * sizeof(double), s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    // Per query: -2 q.x, keys in and out, indices in and out, values; the sort's temporary
    // storage is about one more set of keys and indices.
    const std::size_t per_query = n * (4 * sizeof(T) + 4 * sizeof(int32_t) + sizeof(double)) + d * sizeof(T);
    const std::size_t budget =
        t.memory_budget ? t.memory_budget : static_cast<std::size_t>(0.6 * static_cast<double>(free_device_memory(res_.device())));
    max_tile_ = std::clamp<int64_t>(static_cast<int64_t>(budget / per_query), 1, kMaxQueryTile);
  }

  int64_t max_query_tile() const override { return max_tile_; }

  void accumulate(const void* queries, const int64_t* labels, int64_t m) override {
    DIDMARK_ASSERT(m >= 1 && m <= max_tile_);
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const int64_t n = t_.n, d = t_.d;
    const std::size_t mn = static_cast<std::size_t>(m * n);
    q_.reserve(static_cast<std::size_t>(m * d) * sizeof(T));
    qlabels_.reserve(static_cast<std::size_t>(m) * sizeof(int64_t));
    dots_.reserve(mn * sizeof(T));
    keys_in_.reserve(mn * sizeof(T));
    keys_out_.reserve(mn * sizeof(T));
    idx_in_.reserve(mn * sizeof(int32_t));
    idx_out_.reserve(mn * sizeof(int32_t));
    values_.reserve(mn * sizeof(double));
    offsets_.reserve(static_cast<std::size_t>(m + 1) * sizeof(int64_t));
    std::vector<int64_t> offsets(static_cast<std::size_t>(m + 1));
    for (int64_t i = 0; i <= m; ++i) offsets[static_cast<std::size_t>(i)] = i * n;
    h2d(q_.get(), queries, static_cast<std::size_t>(m * d) * sizeof(T), s);
    h2d(qlabels_.get(), labels, static_cast<std::size_t>(m) * sizeof(int64_t), s);
    h2d(offsets_.get(), offsets.data(), offsets.size() * sizeof(int64_t), s);

    // neg2dots (row-major m x n) = -2 Q X^T: column-major n x m = (X^T as n x d) (Q^T as d x m).
    gemm(res_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, n, m, d, T(-2), x_.as<T>(), d, q_.as<T>(), d, T(0), dots_.as<T>(), n);
    kernels::launch_knn_keys<T>(dots_.as<T>(), norms_.as<T>(), t_.canonical ? canon_.as<int32_t>() : nullptr, m, n,
                                keys_in_.as<T>(), idx_in_.as<int32_t>(), s);
    const std::size_t temp = kernels::knn_sort_temp_bytes<T>(m, n);
    temp_.reserve(std::max<std::size_t>(temp, 1));
    kernels::launch_knn_sort<T>(temp_.get(), temp, keys_in_.as<T>(), keys_out_.as<T>(), idx_in_.as<int32_t>(),
                                idx_out_.as<int32_t>(), offsets_.as<int64_t>(), m, n, s);
    kernels::launch_knn_recursion(idx_out_.as<int32_t>(), labels_.as<int64_t>(), qlabels_.as<int64_t>(), m, n, t_.k,
                                  values_.as<double>(), s);
    kernels::launch_knn_accumulate(values_.as<double>(), m, n, acc_.as<double>(), s);
    // The host query buffers may be reused by the caller once this returns.
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  std::vector<double> sums() override {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    std::vector<double> out(static_cast<std::size_t>(t_.n));
    d2h(out.data(), acc_.get(), out.size() * sizeof(double), res_.stream());
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(res_.stream()));
    return out;
  }

 private:
  CudaResources& res_;
  KnnTrainSet t_;
  DeviceBuffer x_, norms_, labels_, canon_, acc_;
  DeviceBuffer q_, qlabels_, dots_, keys_in_, keys_out_, idx_in_, idx_out_, values_, offsets_, temp_;
  int64_t max_tile_ = 1;
};

// ---- Gram and Cholesky ---------------------------------------------------------------------

class CudaGram final : public GramAccumulator {
 public:
  CudaGram(CudaResources& res, int64_t k) : res_(res), k_(k) {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    a_.reserve(static_cast<std::size_t>(k * k) * sizeof(double));
    DIDMARK_CUDA_TRY(cudaMemsetAsync(a_.get(), 0, static_cast<std::size_t>(k * k) * sizeof(double), res_.stream()));
  }

  void add(const float* x, int64_t rows) override {
    if (rows <= 0) return;
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const auto count = static_cast<std::size_t>(rows * k_);
    x32_.reserve(count * sizeof(float));
    x64_.reserve(count * sizeof(double));
    h2d(x32_.get(), x, count * sizeof(float), s);
    kernels::launch_convert<double>(x32_.get(), DType::f32, rows * k_, x64_.as<double>(), s);
    // A += X^T X: X row-major rows x k is column-major k x rows (= Xc), so A += Xc Xc^T.
    const double one = 1.0;
    DIDMARK_CUBLAS_TRY(cuda_libs::cublas().dsyrk_64(res_.cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, k_, rows, &one,
                                      x64_.as<double>(), k_, &one, a_.as<double>(), k_));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  std::vector<double> result() override {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    std::vector<double> a(static_cast<std::size_t>(k_ * k_));
    d2h(a.data(), a_.get(), a.size() * sizeof(double), res_.stream());
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(res_.stream()));
    // Column-major lower = row-major upper: mirror it down.
    for (int64_t r = 0; r < k_; ++r)
      for (int64_t c = r + 1; c < k_; ++c) a[static_cast<std::size_t>(c * k_ + r)] = a[static_cast<std::size_t>(r * k_ + c)];
    return a;
  }

 private:
  CudaResources& res_;
  int64_t k_;
  DeviceBuffer a_, x32_, x64_;
};

class CudaSpdSolver final : public SpdSolver {
 public:
  CudaSpdSolver(CudaResources& res, std::span<const double> a, int64_t k, double lambda, const char* what)
      : res_(res), k_(k) {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    std::vector<double> host(a.begin(), a.end());
    for (int64_t i = 0; i < k; ++i) host[static_cast<std::size_t>(i * k + i)] += lambda;
    l_.reserve(host.size() * sizeof(double));
    info_.reserve(sizeof(int));
    h2d(l_.get(), host.data(), host.size() * sizeof(double), s);
    cusolverDnHandle_t h = res_.cusolver();
    const int ki = static_cast<int>(k);
    int lwork = 0;
    DIDMARK_CUSOLVER_TRY(cuda_libs::cusolver().dpotrf_buffer_size(h, CUBLAS_FILL_MODE_LOWER, ki, l_.as<double>(), ki, &lwork));
    work_.reserve(static_cast<std::size_t>(std::max(lwork, 1)) * sizeof(double));
    DIDMARK_CUSOLVER_TRY(cuda_libs::cusolver().dpotrf(h, CUBLAS_FILL_MODE_LOWER, ki, l_.as<double>(), ki, work_.as<double>(), lwork,
                                          info_.as<int>()));
    int info = 0;
    d2h(&info, info_.get(), sizeof(int), s);
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    DIDMARK_EXPECTS(info == 0, invalid_argument, what, ": the kernel matrix is not positive definite (lambda = ", lambda,
                    "); raise the ridge or the lambda");
  }

  void solve(double* b, int64_t m) override {
    if (m <= 0) return;
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const std::size_t bytes = static_cast<std::size_t>(m * k_) * sizeof(double);
    b_.reserve(bytes);
    h2d(b_.get(), b, bytes, s);
    // Row-major m x k right-hand sides are column-major k x m: B, ldb = k.
    DIDMARK_CUSOLVER_TRY(cuda_libs::cusolver().dpotrs(res_.cusolver(), CUBLAS_FILL_MODE_LOWER, static_cast<int>(k_),
                                          static_cast<int>(m), l_.as<double>(), static_cast<int>(k_), b_.as<double>(),
                                          static_cast<int>(k_), info_.as<int>()));
    d2h(b, b_.get(), bytes, s);
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

 private:
  CudaResources& res_;
  int64_t k_;
  DeviceBuffer l_, work_, info_, b_;
};

// ---- The table ------------------------------------------------------------------------------

class CudaAttributionOps final : public AttributionOps {
 public:
  CudaAttributionOps(CudaResources& res, AttributionOps& host) : res_(res), host_(host) {}

  std::string description() const override { return res_.description(); }

  std::unique_ptr<KnnSession> knn_session(const KnnTrainSet& t) override {
    if (t.dtype == DType::f64) return std::make_unique<CudaKnnSession<double>>(res_, t);
    return std::make_unique<CudaKnnSession<float>>(res_, t);
  }

  void project(const TensorView& g, const Projection& proj, void* out, DType out_dtype, int64_t feature_tile) override {
    if (out_dtype == DType::f64) {
      project_t<double>(g, proj, static_cast<double*>(out), feature_tile);
    } else {
      project_t<float>(g, proj, static_cast<float*>(out), feature_tile);
    }
  }

  void rademacher_rows(const Projection& proj, int64_t row0, int64_t rows, float* out) override {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const std::size_t bytes = static_cast<std::size_t>(rows * proj.k) * sizeof(float);
    DeviceBuffer r(bytes);
    const detail::u32x2 key = rademacher_key(proj.seed);
    kernels::launch_rademacher_fill<float>(key.x, key.y, row0, rows, proj.k, proj.scale(), r.as<float>(), s);
    d2h(out, r.get(), bytes, s);
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  std::unique_ptr<GramAccumulator> gram(int64_t k) override { return std::make_unique<CudaGram>(res_, k); }

  std::unique_ptr<SpdSolver> spd_solver(std::span<const double> a, int64_t k, double lambda,
                                        const char* what) override {
    return std::make_unique<CudaSpdSolver>(res_, a, k, lambda, what);
  }

  void gemm_abt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t kk) override {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    da_.reserve(static_cast<std::size_t>(m * kk) * sizeof(float));
    db_.reserve(static_cast<std::size_t>(n * kk) * sizeof(float));
    dc_.reserve(static_cast<std::size_t>(m * n) * sizeof(float));
    h2d(da_.get(), a, static_cast<std::size_t>(m * kk) * sizeof(float), s);
    h2d(db_.get(), b, static_cast<std::size_t>(n * kk) * sizeof(float), s);
    // C^T (column-major n x m) = B (n x kk, i.e. op T of column-major kk x n) A^T.
    gemm(res_.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, n, m, kk, 1.0f, db_.as<float>(), kk, da_.as<float>(), kk, 0.0f,
         dc_.as<float>(), n);
    d2h(c, dc_.get(), static_cast<std::size_t>(m * n) * sizeof(float), s);
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  void row_dots(const float* a, int64_t n, int64_t kk, const double* x, double* y) override {
    host_.row_dots(a, n, kk, x, y);  // host data, host result: the CPU does it in one pass
  }

 private:
  // out (rows x k) = g (rows x p) R, R generated on the device tile by tile.
  template <class T>
  void project_t(const TensorView& g, const Projection& proj, T* out, int64_t feature_tile) {
    const auto lock = res_.lock();
    DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const int64_t rows = g.shape[0], p = g.shape[1], k = proj.k;
    const std::size_t esize = dtype_size(g.dtype);
    constexpr DType want = sizeof(T) == 8 ? DType::f64 : DType::f32;
    const bool direct = g.dtype == want;
    const int64_t by_r = static_cast<int64_t>(kProjectTileBytes / (static_cast<std::size_t>(k) * sizeof(T)));
    const int64_t by_g = static_cast<int64_t>(kProjectTileBytes / (static_cast<std::size_t>(std::max<int64_t>(rows, 1)) * sizeof(T)));
    const int64_t pt = std::min(p, feature_tile > 0 ? feature_tile : std::max<int64_t>(1, std::min(by_r, by_g)));
    DeviceBuffer d_out(static_cast<std::size_t>(rows * k) * sizeof(T));
    DeviceBuffer d_raw(static_cast<std::size_t>(rows * pt) * esize);
    DeviceBuffer d_conv(direct ? 0 : static_cast<std::size_t>(rows * pt) * sizeof(T));
    DeviceBuffer d_r(static_cast<std::size_t>(pt * k) * sizeof(T));
    const detail::u32x2 key = rademacher_key(proj.seed);
    const T scale = static_cast<T>(proj.scale());
    DIDMARK_CUDA_TRY(cudaMemsetAsync(d_out.get(), 0, static_cast<std::size_t>(rows * k) * sizeof(T), s));
    for (int64_t p0 = 0; p0 < p; p0 += pt) {
      const int64_t np = std::min(pt, p - p0);
      DIDMARK_CUDA_TRY(cudaMemcpy2DAsync(d_raw.get(), static_cast<std::size_t>(np) * esize,
                                         static_cast<const char*>(g.data) + static_cast<std::size_t>(p0) * esize,
                                         static_cast<std::size_t>(p) * esize, static_cast<std::size_t>(np) * esize,
                                         static_cast<std::size_t>(rows), cudaMemcpyHostToDevice, s));
      const T* gt = d_raw.as<T>();
      if (!direct) {
        kernels::launch_convert<T>(d_raw.get(), g.dtype, rows * np, d_conv.as<T>(), s);
        gt = d_conv.as<T>();
      }
      kernels::launch_rademacher_fill<T>(key.x, key.y, p0, np, k, scale, d_r.as<T>(), s);
      // out^T (column-major k x rows) += R^T (k x np) G^T (np x rows).
      gemm(res_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, k, rows, np, T(1), d_r.as<T>(), k, gt, np, T(1), d_out.as<T>(), k);
    }
    d2h(out, d_out.get(), static_cast<std::size_t>(rows * k) * sizeof(T), s);
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  CudaResources& res_;
  AttributionOps& host_;
  DeviceBuffer da_, db_, dc_;
};

}  // namespace

std::unique_ptr<AttributionOps> make_cuda_attribution_ops(CudaResources& res, AttributionOps& host) {
  return std::make_unique<CudaAttributionOps>(res, host);
}

}  // namespace didmark::attribution
