#pragma once
// The deterministic RMS sample (Backend::sample) read from host memory; shared by the CPU
// backend and the CUDA backend when handed a host view, so both return the same values.
#include <cstdint>
#include <vector>

#include "didmark/detail/convert.hpp"
#include "didmark/error.hpp"
#include "didmark/tensor.hpp"

namespace didmark::backend_detail {

inline int64_t sample_index(int64_t i, int64_t numel, int64_t count) {
  __extension__ typedef unsigned __int128 u128;
  return static_cast<int64_t>(static_cast<u128>(i) * static_cast<u128>(numel) / static_cast<u128>(count));
}

inline std::vector<double> sample_host(const TensorView& w, int64_t count) {
  DIDMARK_EXPECTS(is_watermarkable(w.dtype), unsupported, "sample: dtype ", dtype_name(w.dtype), " is not a floating type");
  const int64_t numel = w.numel();
  const int64_t m = std::min(count, numel);
  std::vector<double> out(static_cast<std::size_t>(m > 0 ? m : 0));
  for (int64_t i = 0; i < m; ++i) {
    const int64_t j = sample_index(i, numel, m);
    out[static_cast<std::size_t>(i)] = detail::load_as<double>(w.data, w.dtype, j);
  }
  return out;
}

}  // namespace didmark::backend_detail
