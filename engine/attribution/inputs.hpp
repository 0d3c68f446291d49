#pragma once
// Input checks and conversions shared by the attribution algorithms: every public entry
// point refuses the same malformed inputs with the same words.

#include <cstdint>
#include <string>
#include <vector>

#include "didmark/attribution.hpp"
#include "didmark/tensor.hpp"

namespace didmark::attribution {

/// A rank-2 host matrix of f64/f32/f16/bf16, contiguous; throws naming `what` otherwise.
void require_float_matrix(const TensorView& v, const char* what);
/// A rank-1 (or N x 1) host vector of `expected` entries; throws naming `what` otherwise.
void require_vector(const TensorView& v, int64_t expected, const char* what, const char* expected_what);

/// 1 <= k <= 2^31-1; throws naming `what` otherwise.
void require_projection(const Projection& proj, const char* what);

/// Integer values of a label or id vector: integer dtypes as they are, floating dtypes only
/// when every value is a whole number (NaN refused).
std::vector<int64_t> read_integers(const TensorView& v, const char* what);

/// Element i of a floating view as double.
double float_at(const TensorView& v, int64_t i) noexcept;

/// Throw Errc::invalid_argument naming `what`, the row and the column of the first NaN/Inf.
void require_finite(const TensorView& v, const char* what);

/// The contents of a floating host matrix in T (f32 or f64): zero-copy when the dtype
/// already matches (returns v.data), else converted into `storage`.
template <class T>
const T* as_compute(const TensorView& v, std::vector<T>& storage);

}  // namespace didmark::attribution
