#pragma once
// Dense linear algebra for the CPU op table: Eigen kernels compiled for the build's own
// target and, when that is narrower, again for x86-64-v3 (AVX2+FMA) and x86-64-v4 (AVX-512),
// picked once at run time, so one binary runs everywhere and uses the wide units present. All matrices are row-major
// with explicit leading dimensions; single-threaded (the op table splits work over threads).
//
// The wide variants include Eigen under a renamed namespace (cpu_dense_v3.cpp), so their
// template instantiations never collide with the baseline ones at link time.

#include <cstdint>

namespace didmark::attribution::dense {

/// C (m x n) = alpha * A (m x k) * B^T + beta * C, B stored n x k.
void gemm_abt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
              int64_t k, float alpha, float beta);
void gemm_abt(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m, int64_t n,
              int64_t k, double alpha, double beta);

/// C (m x n) += A (m x k) * B (k x n).
void gemm_ab_acc(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
                 int64_t k);
void gemm_ab_acc(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m,
                 int64_t n, int64_t k);

/// C (m x n) += A^T B, A stored r x m, B stored r x n.
void gemm_atb_acc(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m,
                  int64_t n, int64_t r);

/// Rows [row0, row0 + rows) and columns [col0, col0 + cols) of the keyed Rademacher matrix
/// (attribution_math.hpp), col0 a multiple of 128, into out (rows x cols, leading dim ld).
/// Pure bit manipulation: the same bits on every variant and every device.
void rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                     float scale, float* out, int64_t ld);
void rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                     double scale, double* out, int64_t ld);

/// In place, a (k x k, symmetric) becomes its lower Cholesky factor L (upper part left as
/// is); false when a is not positive definite.
bool cholesky_lower(double* a, int64_t k);
/// Each of the m rows of b (m x k) becomes (L L^T)^-1 b_i.
void cholesky_solve_rows(const double* l, int64_t k, double* b, int64_t m);

/// "x86-64-v4", "x86-64-v3", or the build's own -march ("baseline" when none): the variant in use.
const char* isa() noexcept;

}  // namespace didmark::attribution::dense
