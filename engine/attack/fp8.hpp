#pragma once
// FP8 (OCP 8-bit floating point, as torch.float8_e4m3fn / float8_e5m2 and safetensors F8_*):
// decode by formula, encode by nearest value with ties to the even code, saturating at the
// largest finite value (what quantization tools do; a plain cast would give NaN or Inf).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

#include "didmark/tensor.hpp"

namespace didmark::attack_detail {

inline double fp8_to_double(uint8_t c, DType t) {
  const bool neg = (c & 0x80) != 0;
  const int e4 = t == DType::f8_e4m3;
  const int mbits = e4 ? 3 : 2, ebits = e4 ? 4 : 5, bias = e4 ? 7 : 15;
  const int e = (c >> mbits) & ((1 << ebits) - 1);
  const int m = c & ((1 << mbits) - 1);
  double v;
  if (e4 && e == 15 && m == 7) return std::nan("");
  if (!e4 && e == 31) return m ? std::nan("") : (neg ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity());
  if (e == 0)
    v = std::ldexp(m, 1 - bias - mbits);
  else
    v = std::ldexp((1 << mbits) + m, e - bias - mbits);
  return neg ? -v : v;
}

/// Positive finite values of a format by code (codes 0..n-1 ascending).
inline const std::array<double, 128>& fp8_table(DType t, int* count) {
  static const auto make = [](DType d, int& n) {
    std::array<double, 128> a{};
    n = 0;
    for (int c = 0; c < 128; ++c) {
      const double v = fp8_to_double(static_cast<uint8_t>(c), d);
      if (!std::isfinite(v)) break;
      a[static_cast<std::size_t>(n++)] = v;
    }
    return a;
  };
  static int n4 = 0, n5 = 0;
  static const std::array<double, 128> e4 = make(DType::f8_e4m3, n4), e5 = make(DType::f8_e5m2, n5);
  *count = t == DType::f8_e4m3 ? n4 : n5;
  return t == DType::f8_e4m3 ? e4 : e5;
}

inline uint8_t double_to_fp8(double x, DType t) {
  int n = 0;
  const auto& tab = fp8_table(t, &n);
  if (std::isnan(x)) return 0x7F;  // a NaN code in both formats
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  const auto* end = tab.data() + n;
  const auto* hi = std::lower_bound(tab.data(), end, a);
  int code;
  if (hi == end) {
    code = n - 1;  // saturate
  } else if (hi == tab.data() || *hi == a) {
    code = static_cast<int>(hi - tab.data());
  } else {
    const int h = static_cast<int>(hi - tab.data()), l = h - 1;
    const double dl = a - tab[static_cast<std::size_t>(l)], dh = tab[static_cast<std::size_t>(h)] - a;
    code = dl < dh ? l : dh < dl ? h : (l % 2 == 0 ? l : h);
  }
  return static_cast<uint8_t>(sign | code);
}

}  // namespace didmark::attack_detail
