#include "backend/cpu/dense/dense.hpp"

#include "backend/cpu/dense/dense_variant.hpp"

namespace didmark::attribution::dense {
namespace {

enum class Isa { base, v3, v4 };

Isa detect() noexcept {
#if DIDMARK_DENSE_V3 || DIDMARK_DENSE_V4
  __builtin_cpu_init();
#endif
#if DIDMARK_DENSE_V4
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::v4;
#endif
#if DIDMARK_DENSE_V3
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::v3;
#endif
  return Isa::base;
}

Isa isa_in_use() noexcept {
  static const Isa i = detect();
  return i;
}

}  // namespace

#if DIDMARK_DENSE_V4
#define DIDMARK_DENSE_CASE_V4(fn, ...) \
  case Isa::v4: return v4::fn(__VA_ARGS__);
#else
#define DIDMARK_DENSE_CASE_V4(fn, ...)
#endif
#if DIDMARK_DENSE_V3
#define DIDMARK_DENSE_CASE_V3(fn, ...) \
  case Isa::v3: return v3::fn(__VA_ARGS__);
#else
#define DIDMARK_DENSE_CASE_V3(fn, ...)
#endif
#define DIDMARK_DENSE_DISPATCH(fn, ...)         \
  switch (isa_in_use()) {                       \
    DIDMARK_DENSE_CASE_V4(fn, __VA_ARGS__)      \
    DIDMARK_DENSE_CASE_V3(fn, __VA_ARGS__)      \
    default: break;                             \
  }                                             \
  return base::fn(__VA_ARGS__)

void gemm_abt(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
              int64_t k, float alpha, float beta) {
  DIDMARK_DENSE_DISPATCH(gemm_abt, a, lda, b, ldb, c, ldc, m, n, k, alpha, beta);
}
void gemm_abt(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m, int64_t n,
              int64_t k, double alpha, double beta) {
  DIDMARK_DENSE_DISPATCH(gemm_abt, a, lda, b, ldb, c, ldc, m, n, k, alpha, beta);
}
void gemm_ab_acc(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t m, int64_t n,
                 int64_t k) {
  DIDMARK_DENSE_DISPATCH(gemm_ab_acc, a, lda, b, ldb, c, ldc, m, n, k);
}
void gemm_ab_acc(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m,
                 int64_t n, int64_t k) {
  DIDMARK_DENSE_DISPATCH(gemm_ab_acc, a, lda, b, ldb, c, ldc, m, n, k);
}
void gemm_atb_acc(const double* a, int64_t lda, const double* b, int64_t ldb, double* c, int64_t ldc, int64_t m,
                  int64_t n, int64_t r) {
  DIDMARK_DENSE_DISPATCH(gemm_atb_acc, a, lda, b, ldb, c, ldc, m, n, r);
}

void rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                     float scale, float* out, int64_t ld) {
  DIDMARK_DENSE_DISPATCH(rademacher_fill, key_lo, key_hi, row0, rows, col0, cols, scale, out, ld);
}
void rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t col0, int64_t cols,
                     double scale, double* out, int64_t ld) {
  DIDMARK_DENSE_DISPATCH(rademacher_fill, key_lo, key_hi, row0, rows, col0, cols, scale, out, ld);
}
bool cholesky_lower(double* a, int64_t k) { DIDMARK_DENSE_DISPATCH(cholesky_lower, a, k); }
void cholesky_solve_rows(const double* l, int64_t k, double* b, int64_t m) {
  DIDMARK_DENSE_DISPATCH(cholesky_solve_rows, l, k, b, m);
}

const char* isa() noexcept {
  switch (isa_in_use()) {
    case Isa::v4: return "x86-64-v4";
    case Isa::v3: return "x86-64-v3";
    case Isa::base: break;
  }
#ifdef DIDMARK_DENSE_BASE_NAME
  if (DIDMARK_DENSE_BASE_NAME[0] != '\0') return DIDMARK_DENSE_BASE_NAME;
#endif
  return "baseline";
}

}  // namespace didmark::attribution::dense
