// Baseline x86-64 (or the target's default) variant of cpu_dense.hpp.
#include "backend/cpu/dense/dense_variant.hpp"
#define DIDMARK_DENSE_NS base
#include "backend/cpu/dense/dense_impl.hpp"
