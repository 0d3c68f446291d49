// x86-64-v4 (AVX-512) variant of cpu_dense.hpp; see cpu_dense_v3.cpp.
#define Eigen didmark_eigen_x86_64_v4
#define DIDMARK_DENSE_NS v4
#include "backend/cpu/dense/dense_variant.hpp"
#include "backend/cpu/dense/dense_impl.hpp"
