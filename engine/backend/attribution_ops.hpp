#pragma once
// The attribution op table: the device primitives that knn_shapley.cpp, projection.cpp and
// trak.cpp are written against, once. Two implementations: the CPU
// (engine/backend/cpu/attribution_cpu.cpp: Eigen, radix sort, the backend's thread pool) and
// CUDA (engine/backend/cuda/attribution_cuda.cpp: cuBLAS, cuSOLVER, CUB,
// kernels/attribution_*.cu). The algorithms get theirs from Backend::attribution_ops() and
// never ask which one they hold. Every entry point takes and returns host memory; the CUDA table stages data
// through the GPU itself and keeps what is reused (a training set, a Gram matrix) resident.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "didmark/attribution.hpp"
#include "didmark/backend.hpp"

namespace didmark::detail {
class ThreadPool;
}

namespace didmark::attribution {

/// A KNN-Shapley training set, already validated and converted by the algorithm.
struct KnnTrainSet {
  DType dtype = DType::f32;            ///< compute type of x, sq_norms and queries: f32 or f64
  const void* x = nullptr;             ///< n x d, row-major
  const void* sq_norms = nullptr;      ///< n: ||x_j||^2 in the compute type
  const int64_t* labels = nullptr;     ///< n
  const int32_t* canonical = nullptr;  ///< n or null: row j uses the distance of row canonical[j] <= j
  int64_t n = 0;
  int64_t d = 0;
  int k = 1;
  std::size_t memory_budget = 0;  ///< bytes for per-tile buffers; 0 = the table's default
};

/// A training set resident on one device, valuing queries tile by tile.
class KnnSession {
 public:
  virtual ~KnnSession() = default;
  /// The largest `m` accumulate() accepts (at least 1).
  virtual int64_t max_query_tile() const = 0;
  /// For each of the `m` queries (m x d in the compute type; labels m), in order: order the
  /// training rows by (||x_j||^2 - 2 q.x_j, j), run the exact recursion and add the values
  /// to the per-row sums. Summing query by query keeps the sums independent of tiling.
  virtual void accumulate(const void* queries, const int64_t* labels, int64_t m) = 0;
  /// The per-row sums so far (n values).
  virtual std::vector<double> sums() = 0;
};

/// Running A = sum X^T X over row tiles of X (rows x k, f32), accumulated in f64.
class GramAccumulator {
 public:
  virtual ~GramAccumulator() = default;
  virtual void add(const float* x, int64_t rows) = 0;
  /// The k x k symmetric matrix, both triangles filled.
  virtual std::vector<double> result() = 0;
};

/// A Cholesky factorization of A + lambda I (k x k, f64).
class SpdSolver {
 public:
  virtual ~SpdSolver() = default;
  /// In place: each of the `m` rows of `b` (m x k, row-major) becomes (A + lambda I)^-1 b_i.
  virtual void solve(double* b, int64_t m) = 0;
};

class AttributionOps {
 public:
  virtual ~AttributionOps() = default;
  /// "cpu (2 threads, x86-64-v4)", "cuda:0 ...".
  virtual std::string description() const = 0;

  virtual std::unique_ptr<KnnSession> knn_session(const KnnTrainSet& train) = 0;

  /// out (rows x k, `out_dtype` f32 or f64, row-major) = g (rows x p, host, contiguous, any
  /// floating dtype) * R, R generated in tiles of `feature_tile` rows (0 = the table's choice).
  virtual void project(const TensorView& g, const Projection& proj, void* out, DType out_dtype,
                       int64_t feature_tile) = 0;
  /// Rows [row0, row0 + rows) of R, as this table generates its tiles (rows x k floats).
  virtual void rademacher_rows(const Projection& proj, int64_t row0, int64_t rows, float* out) = 0;

  virtual std::unique_ptr<GramAccumulator> gram(int64_t k) = 0;
  /// Factor A + lambda I; Errc::invalid_argument naming `what` when it is not positive definite.
  virtual std::unique_ptr<SpdSolver> spd_solver(std::span<const double> a, int64_t k, double lambda,
                                                const char* what) = 0;

  /// c (m x n) = a (m x kk) * b^T, b stored n x kk; f32, row-major.
  virtual void gemm_abt(const float* a, const float* b, float* c, int64_t m, int64_t n, int64_t kk) = 0;
  /// y[i] = sum_j a[i][j] * x[j] for i < n (a: n x kk, f32; x and y f64).
  virtual void row_dots(const float* a, int64_t n, int64_t kk, const double* x, double* y) = 0;
};

/// The CPU table, running on `pool` (the CPU backend's).
std::unique_ptr<AttributionOps> make_cpu_attribution_ops(detail::ThreadPool& pool);

}  // namespace didmark::attribution
