#pragma once
// Declarations of the per-variant entry points behind cpu_dense.hpp (see cpu_dense.cpp).
#include <cstdint>

#define DIDMARK_DENSE_DECLARE(ns)                                                                                 \
  namespace didmark::attribution::dense::ns {                                                                      \
  void gemm_abt(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int64_t, int64_t, float,   \
                float);                                                                                            \
  void gemm_abt(const double*, int64_t, const double*, int64_t, double*, int64_t, int64_t, int64_t, int64_t,       \
                double, double);                                                                                   \
  void gemm_ab_acc(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int64_t, int64_t);      \
  void gemm_ab_acc(const double*, int64_t, const double*, int64_t, double*, int64_t, int64_t, int64_t, int64_t);   \
  void gemm_atb_acc(const double*, int64_t, const double*, int64_t, double*, int64_t, int64_t, int64_t, int64_t);  \
  void rademacher_fill(uint32_t, uint32_t, int64_t, int64_t, int64_t, int64_t, float, float*, int64_t);            \
  void rademacher_fill(uint32_t, uint32_t, int64_t, int64_t, int64_t, int64_t, double, double*, int64_t);          \
  bool cholesky_lower(double*, int64_t);                                                                           \
  void cholesky_solve_rows(const double*, int64_t, double*, int64_t);                                              \
  }

DIDMARK_DENSE_DECLARE(base)
#if DIDMARK_DENSE_V3
DIDMARK_DENSE_DECLARE(v3)
#endif
#if DIDMARK_DENSE_V4
DIDMARK_DENSE_DECLARE(v4)
#endif
