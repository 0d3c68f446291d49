// The body of cpu_dense.hpp for one instruction-set variant. Included once per variant
// with DIDMARK_DENSE_NS naming the variant's namespace (and, for the wide variants, the
// Eigen namespace renamed by a macro before this header). No include guard on purpose.
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <cstdint>

#include "didmark/detail/attribution_math.hpp"

namespace didmark::attribution::dense::DIDMARK_DENSE_NS {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class T>
void gemm_abt_t(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int64_t n, int64_t k,
                T alpha, T beta) {
  CMap<T> A(a, m, k, Eigen::OuterStride<>(lda));
  CMap<T> B(b, n, k, Eigen::OuterStride<>(ldb));
  MMap<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) {
    C.noalias() = alpha * (A * B.transpose());
  } else {
    C *= beta;
    C.noalias() += alpha * (A * B.transpose());
  }
}

template <class T>
void gemm_ab_acc_t(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, int64_t m, int64_t n,
                   int64_t k) {
  CMap<T> A(a, m, k, Eigen::OuterStride<>(lda));
  CMap<T> B(b, k, n, Eigen::OuterStride<>(ldb));
  MMap<T> C(c, m, n, Eigen::OuterStride<>(ldc));
  C.noalias() += A * B;
}

void gemm_abt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
              int64_t k, float alpha, float beta) {
  gemm_abt_t(a, lda, b, ldb, c, ldc, m, n, k, alpha, beta);
}
void gemm_abt(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m, int64_t n,
              int64_t k, double alpha, double beta) {
  gemm_abt_t(a, lda, b, ldb, c, ldc, m, n, k, alpha, beta);
}
void gemm_ab_acc(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
                 int64_t k) {
  gemm_ab_acc_t(a, lda, b, ldb, c, ldc, m, n, k);
}
void gemm_ab_acc(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m,
                 int64_t n, int64_t k) {
  gemm_ab_acc_t(a, lda, b, ldb, c, ldc, m, n, k);
}
void gemm_atb_acc(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m,
                  int64_t n, int64_t r) {
  CMap<double> A(a, r, m, Eigen::OuterStride<>(lda));
  CMap<double> B(b, r, n, Eigen::OuterStride<>(ldb));
  MMap<double> C(c, m, n, Eigen::OuterStride<>(ldc));
  C.noalias() += A.transpose() * B;
}

template <class T, class U>
void rademacher_fill_t(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                       T scale, T* out, int64_t ld) {
  // Sign flip by XOR on the bit pattern: -scale and +scale differ only in the sign bit, so
  // this equals the ternary of rademacher_value() bit for bit, and it vectorizes.
  constexpr int kSignShift = static_cast<int>(sizeof(T) * 8 - 1);
  U sbits;
  __builtin_memcpy(&sbits, &scale, sizeof(T));
  const detail::u32x2 key{key_lo, key_hi};
  const auto b0 = static_cast<uint32_t>(col0 / kRademacherBlock);
  for (int64_t r = 0; r < rows; ++r) {
    T* row = out + r * ld;
    for (int64_t c = 0; c < cols; c += kRademacherBlock) {
      const detail::u32x4 bits =
          rademacher_bits(key, static_cast<uint64_t>(row0 + r), b0 + static_cast<uint32_t>(c / kRademacherBlock));
      const uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
      const int64_t n = cols - c < kRademacherBlock ? cols - c : kRademacherBlock;
      if (n == kRademacherBlock) {
        U tmp[kRademacherBlock];
        for (int w = 0; w < 4; ++w)
          for (int e = 0; e < 32; ++e) tmp[32 * w + e] = sbits ^ (static_cast<U>((words[w] >> e) & 1u) << kSignShift);
        __builtin_memcpy(row + c, tmp, sizeof tmp);
      } else {
        for (int64_t e = 0; e < n; ++e) row[c + e] = rademacher_value<T>(bits, static_cast<uint32_t>(e), scale);
      }
    }
  }
}

void rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                     float scale, float* out, int64_t ld) {
  rademacher_fill_t<float, uint32_t>(key_lo, key_hi, row0, rows, col0, cols, scale, out, ld);
}
void rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                     double scale, double* out, int64_t ld) {
  rademacher_fill_t<double, uint64_t>(key_lo, key_hi, row0, rows, col0, cols, scale, out, ld);
}

bool cholesky_lower(double* a, int64_t k) {
  // Row-major symmetric = its own transpose, so a column-major map sees the same matrix.
  Eigen::Map<Eigen::MatrixXd> A(a, k, k);
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(A);
  return llt.info() == Eigen::Success;
}

void cholesky_solve_rows(const double* l, int64_t k, double* b, int64_t m) {
  Eigen::Map<const Eigen::MatrixXd> L(l, k, k);
  Eigen::Map<Eigen::MatrixXd> B(b, k, m);  // row-major m x k == column-major k x m
  L.triangularView<Eigen::Lower>().solveInPlace(B);
  L.transpose().triangularView<Eigen::Upper>().solveInPlace(B);
}

}  // namespace didmark::attribution::dense::DIDMARK_DENSE_NS
