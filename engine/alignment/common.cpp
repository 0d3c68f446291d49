#include "alignment/common.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "alignment/architecture.hpp"
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

std::vector<int> spread_layers(int L) {
  std::vector<int> out;
  std::vector<uint8_t> taken(static_cast<std::size_t>(std::max(L, 0)), 0);
  auto add = [&](int l) {
    if (l >= 0 && l < L && !taken[static_cast<std::size_t>(l)]) {
      taken[static_cast<std::size_t>(l)] = 1;
      out.push_back(l);
    }
  };
  add(0);
  add(L - 1);
  for (int div = 2; static_cast<int>(out.size()) < L && div <= 2 * L; div *= 2)
    for (int k = 1; k < div; k += 2) add(static_cast<int>(static_cast<int64_t>(k) * L / div));
  for (int l = 0; l < L; ++l) add(l);
  return out;
}

Descriptors describe_tensor(AlignmentOps& ops, const TensorView& v) {
  auto [R, C] = matrix_shape(v);
  // The profiles are distributions: a spread sample of rows gives them (and the RMS) without a
  // pass over a large tensor. Sizes decide the sample, never values.
  std::vector<float> sample;
  TensorView m = v;
  if (R > kDescriptorRows) {
    const auto idx = spread_indices(R, kDescriptorRows);
    sample.resize(idx.size() * static_cast<std::size_t>(C));
    ops.gather(v, 0, idx, sample);
    R = kDescriptorRows;
    m = TensorView::contiguous(sample.data(), DType::f32, {R, C});
  }
  std::vector<double> rows(static_cast<std::size_t>(R)), cols(static_cast<std::size_t>(C));
  ops.axis_sumsq(m, rows, cols);
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

namespace {

// One released mapping is kept for the next realignment: the kernel zeroes every fresh page,
// and for a 1 GB model that costs as much as the realignment itself.
std::mutex g_spare_mu;
void* g_spare = nullptr;
std::size_t g_spare_bytes = 0;

void give_back(void* p, std::size_t bytes) {
  std::lock_guard<std::mutex> lock(g_spare_mu);
  if (bytes > g_spare_bytes) std::swap(p, g_spare), std::swap(bytes, g_spare_bytes);
  if (p) munmap(p, bytes);
}

}  // namespace

Arena::Arena(std::size_t floats) {
  if (floats == 0) return;
  bytes_ = (floats * sizeof(float) + 64 * 16 + (std::size_t{2} << 20) - 1) & ~((std::size_t{2} << 20) - 1);
  {
    std::lock_guard<std::mutex> lock(g_spare_mu);
    if (g_spare && g_spare_bytes >= bytes_) {
      base_ = g_spare;
      bytes_ = g_spare_bytes;
      g_spare = nullptr;
      g_spare_bytes = 0;
      return;
    }
  }
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  DIDMARK_EXPECTS(p != MAP_FAILED, io_error, "cannot reserve ", bytes_, " bytes for realigned tensors");
  base_ = p;
#ifdef MADV_HUGEPAGE
  madvise(base_, bytes_, MADV_HUGEPAGE);
#endif
}

Arena::~Arena() {
  if (base_) give_back(base_, bytes_);
}

void release_spare_arena() noexcept {
  std::lock_guard<std::mutex> lock(g_spare_mu);
  if (g_spare) munmap(g_spare, g_spare_bytes);
  g_spare = nullptr;
  g_spare_bytes = 0;
}

Arena::Arena(Arena&& o) noexcept : base_(o.base_), bytes_(o.bytes_), used_(o.used_) {
  o.base_ = nullptr;
  o.bytes_ = o.used_ = 0;
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    if (base_) give_back(base_, bytes_);
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

std::vector<float> vector_values(AlignmentOps& ops, const TensorView& v) {
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  const int64_t zero = 0;
  ops.gather(v, 0, std::span(&zero, 1), out);
  return out;
}

std::vector<float> batch_norm_gains(AlignmentOps& ops, std::span<const NamedTensor> tensors, const std::string& conv,
                                    int64_t channels) {
  const std::string bn = batch_norm_of(conv);
  if (bn.empty()) return {};
  const TensorView *w = nullptr, *var = nullptr;
  for (const auto& t : tensors) {
    if (t.name == bn + ".weight") w = &t.view;
    if (t.name == bn + ".running_var") var = &t.view;
  }
  auto fits = [&](const TensorView* v) {
    return v && v->rank() == 1 && v->numel() == channels && is_watermarkable(v->dtype);
  };
  if (!fits(w) || !fits(var)) return {};
  std::vector<float> g = vector_values(ops, *w);
  const std::vector<float> s = vector_values(ops, *var);
  for (std::size_t i = 0; i < g.size(); ++i) {
    g[i] = static_cast<float>(static_cast<double>(g[i]) / std::sqrt(std::max(0.0, static_cast<double>(s[i])) + kBatchNormEps));
    if (!std::isfinite(g[i])) g[i] = 0.0f;
  }
  return g;
}

}  // namespace didmark::alignment
