// x86-64-v3 (AVX2 + FMA) variant of cpu_dense.hpp, built with -march=x86-64-v3. Eigen lives
// in its own namespace here so that none of its instantiations merge with the baseline ones.
// Only Eigen and <cstdint> are included: no standard-library template is instantiated
// out of line with wide instructions (checked: `nm -C` shows no weak std:: symbols).
#define Eigen didmark_eigen_x86_64_v3
#define DIDMARK_DENSE_NS v3
#include "backend/cpu/dense/dense_variant.hpp"
#include "backend/cpu/dense/dense_impl.hpp"
