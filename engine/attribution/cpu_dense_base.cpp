// Baseline x86-64 (or the target's default) variant of cpu_dense.hpp.
#include "attribution/cpu_dense_variant.hpp"
#define DIDMARK_DENSE_NS base
#include "attribution/cpu_dense_impl.hpp"
