#include "alignment/common.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>

#include "didmark/error.hpp"

namespace didmark::alignment {

std::vector<int64_t> spread_indices(int64_t n, int64_t count) {
  count = std::min(count, n);
  std::vector<int64_t> out(static_cast<std::size_t>(std::max<int64_t>(count, 0)));
  for (int64_t k = 0; k < count; ++k) out[static_cast<std::size_t>(k)] = ((2 * k + 1) * n) / (2 * count);
  return out;
}

std::vector<float> rms_quantiles(std::span<const double> sums, int64_t len, double rms) {
  if (sums.empty() || len <= 0 || !(rms > 0)) return {};
  std::vector<double> v(sums.size());
  for (std::size_t i = 0; i < sums.size(); ++i) v[i] = std::sqrt(sums[i] / static_cast<double>(len)) / rms;
  std::sort(v.begin(), v.end());
  std::vector<float> q(kQuantiles);
  for (int k = 0; k < kQuantiles; ++k) {
    const auto pos = static_cast<std::size_t>((2 * static_cast<double>(k) + 1) / (2 * kQuantiles) * static_cast<double>(v.size()));
    q[static_cast<std::size_t>(k)] = static_cast<float>(v[std::min(pos, v.size() - 1)]);
  }
  return q;
}

Descriptors describe_tensor(AlignmentOps& ops, const TensorView& v) {
  const auto [R, C] = matrix_shape(v);
  std::vector<double> rows(static_cast<std::size_t>(R)), cols(static_cast<std::size_t>(C));
  ops.axis_sumsq(v, rows, cols);
  double total = 0;
  for (double s : rows) total += s;
  Descriptors d;
  const double n = static_cast<double>(R) * static_cast<double>(C);
  d.rms = n > 0 ? std::sqrt(total / n) : 0;
  if (!std::isfinite(d.rms)) d.rms = 0;
  if (R > 1) d.row_q = rms_quantiles(rows, C, d.rms);
  if (C > 1) d.col_q = rms_quantiles(cols, R, d.rms);
  return d;
}

double profile_distance(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return 1e9;
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(a[i] > 0) || !(b[i] > 0)) return 1e9;
    s += std::fabs(std::log(static_cast<double>(a[i]) / static_cast<double>(b[i])));
  }
  return s / static_cast<double>(a.size());
}

int64_t cols_of(const std::vector<int64_t>& shape) {
  if (shape.empty()) return 1;
  if (shape.size() == 1) return shape[0];
  int64_t c = 1;
  for (std::size_t d = 1; d < shape.size(); ++d) c *= shape[d];
  return c;
}

Arena::Arena(std::size_t floats) {
  if (floats == 0) return;
  bytes_ = (floats * sizeof(float) + 64 * 16 + (std::size_t{2} << 20) - 1) & ~((std::size_t{2} << 20) - 1);
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  DIDMARK_EXPECTS(p != MAP_FAILED, io_error, "cannot reserve ", bytes_, " bytes for realigned tensors");
  base_ = p;
#ifdef MADV_HUGEPAGE
  madvise(base_, bytes_, MADV_HUGEPAGE);
#endif
}

Arena::~Arena() {
  if (base_) munmap(base_, bytes_);
}

Arena::Arena(Arena&& o) noexcept : base_(o.base_), bytes_(o.bytes_), used_(o.used_) {
  o.base_ = nullptr;
  o.bytes_ = o.used_ = 0;
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    if (base_) munmap(base_, bytes_);
    base_ = o.base_;
    bytes_ = o.bytes_;
    used_ = o.used_;
    o.base_ = nullptr;
    o.bytes_ = o.used_ = 0;
  }
  return *this;
}

float* Arena::take(std::size_t n) {
  const std::size_t need = (n * sizeof(float) + 63) & ~std::size_t{63};
  DIDMARK_ASSERT(base_ != nullptr && used_ + need <= bytes_);
  float* p = reinterpret_cast<float*>(static_cast<unsigned char*>(base_) + used_);
  used_ += need;
  return p;
}

}  // namespace didmark::alignment
