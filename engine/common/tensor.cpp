#include "didmark/tensor.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>

#include "didmark/error.hpp"

namespace didmark {

std::size_t dtype_size(DType t) noexcept {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: case DType::i16: return 2;
    case DType::f8_e4m3: case DType::f8_e5m2: case DType::i8: case DType::u8: case DType::boolean: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::f64: return "f64";
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f8_e4m3: return "f8_e4m3";
    case DType::f8_e5m2: return "f8_e5m2";
    case DType::i64: return "i64";
    case DType::i32: return "i32";
    case DType::i16: return "i16";
    case DType::i8: return "i8";
    case DType::u8: return "u8";
    case DType::boolean: return "bool";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) noexcept {
  std::string s(name);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  struct Alias {
    const char* name;
    DType t;
  };
  static constexpr Alias aliases[] = {
      {"f64", DType::f64},       {"float64", DType::f64},  {"double", DType::f64},
      {"f32", DType::f32},       {"float32", DType::f32},  {"float", DType::f32},
      {"f16", DType::f16},       {"float16", DType::f16},  {"half", DType::f16},
      {"bf16", DType::bf16},     {"bfloat16", DType::bf16}, {"f8_e4m3", DType::f8_e4m3},
      {"f8_e5m2", DType::f8_e5m2}, {"i64", DType::i64},    {"int64", DType::i64},
      {"i32", DType::i32},       {"int32", DType::i32},    {"i16", DType::i16},
      {"int16", DType::i16},     {"i8", DType::i8},        {"int8", DType::i8},
      {"u8", DType::u8},         {"uint8", DType::u8},     {"bool", DType::boolean},
  };
  for (const auto& a : aliases)
    if (s == a.name) return a.t;
  return std::nullopt;
}

bool is_watermarkable(DType t) noexcept {
  return t == DType::f64 || t == DType::f32 || t == DType::f16 || t == DType::bf16;
}

std::string_view device_name(Device d) noexcept { return d == Device::cpu ? "cpu" : "cuda"; }

TensorView TensorView::contiguous(void* data, DType dtype, std::vector<int64_t> shape, Device device,
                                  int device_index) {
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.shape = std::move(shape);
  v.device = device;
  v.device_index = device_index;
  return v;
}

int64_t TensorView::numel() const noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

bool TensorView::is_contiguous() const noexcept {
  if (strides.empty()) return true;
  if (strides.size() != shape.size()) return false;
  int64_t expect = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

std::string TensorView::describe() const {
  std::ostringstream os;
  os << dtype_name(dtype) << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "] on " << device_name(device);
  if (device == Device::cuda) os << ':' << device_index;
  return os.str();
}

void validate_view(const TensorView& v, std::string_view what) {
  DIDMARK_EXPECTS(v.strides.empty() || v.strides.size() == v.shape.size(), invalid_argument, what,
                  ": strides have ", v.strides.size(), " entries for a shape of rank ", v.shape.size());
  int64_t n = 1;
  for (std::size_t i = 0; i < v.shape.size(); ++i) {
    DIDMARK_EXPECTS(v.shape[i] >= 0, invalid_argument, what, ": dimension ", i, " is negative (", v.shape[i], ")");
    DIDMARK_EXPECTS(v.shape[i] == 0 || n <= INT64_MAX / v.shape[i], invalid_argument, what,
                    ": element count overflows 64 bits");
    n *= v.shape[i];
  }
  DIDMARK_EXPECTS(n == 0 || v.data != nullptr, invalid_argument, what, ": null data pointer for ", v.describe());
}

}  // namespace didmark
