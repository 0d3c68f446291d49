#include "attribution/inputs.hpp"

#include <cmath>

#include "didmark/detail/convert.hpp"
#include "didmark/error.hpp"

namespace didmark::attribution {

void require_float_matrix(const TensorView& v, const char* what) {
  validate_view(v, what);
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, what, ": expected a matrix (rows x columns), got ", v.describe());
  DIDMARK_EXPECTS(is_watermarkable(v.dtype), invalid_argument, what, ": dtype ", dtype_name(v.dtype),
                  " is not one of f64, f32, f16, bf16");
  DIDMARK_EXPECTS(v.device == Device::cpu, invalid_argument, what, ": expected host memory, got ", v.describe());
  DIDMARK_EXPECTS(v.is_contiguous(), invalid_argument, what, ": non-contiguous view ", v.describe(),
                  " (make it contiguous first)");
}

void require_vector(const TensorView& v, int64_t expected, const char* what, const char* expected_what) {
  validate_view(v, what);
  const bool column = v.rank() == 2 && v.shape[1] == 1;
  DIDMARK_EXPECTS(v.rank() == 1 || column, invalid_argument, what, ": expected a vector, got ", v.describe());
  DIDMARK_EXPECTS(v.device == Device::cpu, invalid_argument, what, ": expected host memory, got ", v.describe());
  DIDMARK_EXPECTS(v.is_contiguous(), invalid_argument, what, ": non-contiguous view ", v.describe());
  DIDMARK_EXPECTS(v.shape[0] == expected, invalid_argument, what, ": ", v.shape[0], " entries for ", expected, " ",
                  expected_what);
}

double float_at(const TensorView& v, int64_t i) noexcept { return detail::load_as<double>(v.data, v.dtype, i); }

std::vector<int64_t> read_integers(const TensorView& v, const char* what) {
  const int64_t n = v.numel();
  std::vector<int64_t> out(static_cast<std::size_t>(n));
  auto get = [&](auto* p) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<std::size_t>(i)] = static_cast<int64_t>(p[i]);
  };
  switch (v.dtype) {
    case DType::i64: get(static_cast<const int64_t*>(v.data)); break;
    case DType::i32: get(static_cast<const int32_t*>(v.data)); break;
    case DType::i16: get(static_cast<const int16_t*>(v.data)); break;
    case DType::i8: get(static_cast<const int8_t*>(v.data)); break;
    case DType::u8: get(static_cast<const uint8_t*>(v.data)); break;
    case DType::boolean: get(static_cast<const uint8_t*>(v.data)); break;
    case DType::f64:
    case DType::f32:
    case DType::f16:
    case DType::bf16:
      for (int64_t i = 0; i < n; ++i) {
        const double x = float_at(v, i);
        DIDMARK_EXPECTS(std::isfinite(x) && x == std::floor(x) && std::fabs(x) < 9.0e15, invalid_argument, what,
                        ": entry ", i, " is ", x, "; expected whole numbers (use an integer dtype)");
        out[static_cast<std::size_t>(i)] = static_cast<int64_t>(x);
      }
      break;
    default:
      DIDMARK_THROW(Errc::invalid_argument, what, ": dtype ", dtype_name(v.dtype), " is not an integer type");
  }
  return out;
}

void require_finite(const TensorView& v, const char* what) {
  const int64_t n = v.numel();
  const int64_t cols = v.rank() == 2 ? v.shape[1] : 1;
  auto fail = [&](int64_t i, double x) {
    DIDMARK_THROW(Errc::invalid_argument, what, ": row ", i / cols, " column ", i % cols, " is ", x,
                  " (NaN/Inf values cannot be attributed)");
  };
  switch (v.dtype) {
    case DType::f64: {
      const auto* p = static_cast<const double*>(v.data);
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) fail(i, p[i]);
      break;
    }
    case DType::f32: {
      const auto* p = static_cast<const float*>(v.data);
      for (int64_t i = 0; i < n; ++i)
        if (!std::isfinite(p[i])) fail(i, static_cast<double>(p[i]));
      break;
    }
    default:
      for (int64_t i = 0; i < n; ++i) {
        const double x = float_at(v, i);
        if (!std::isfinite(x)) fail(i, x);
      }
  }
}

template <class T>
const T* as_compute(const TensorView& v, std::vector<T>& storage) {
  constexpr DType want = sizeof(T) == 8 ? DType::f64 : DType::f32;
  if (v.dtype == want) return static_cast<const T*>(v.data);
  storage.resize(static_cast<std::size_t>(v.numel()));
  DIDMARK_EXPECTS(is_watermarkable(v.dtype), internal, "as_compute: dtype ", dtype_name(v.dtype), " is not floating");
  detail::convert<T>(v.data, v.dtype, v.numel(), storage.data());
  return storage.data();
}

template const float* as_compute<float>(const TensorView&, std::vector<float>&);
template const double* as_compute<double>(const TensorView&, std::vector<double>&);

}  // namespace didmark::attribution
