#include "attack/ops.hpp"

#include <cmath>
#include <cstring>
#include <numeric>

#include "didmark/error.hpp"

namespace didmark::attack_detail {

AxisSplit split_axis(const OwnedTensor& t, int axis) {
  DIDMARK_ASSERT(axis >= 0 && axis < static_cast<int>(t.shape.size()));
  AxisSplit s;
  for (int i = 0; i < axis; ++i) s.outer *= t.shape[static_cast<std::size_t>(i)];
  s.length = t.shape[static_cast<std::size_t>(axis)];
  for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < t.shape.size(); ++i) s.inner *= t.shape[i];
  return s;
}

void permute_axis(OwnedTensor& t, int axis, int64_t offset, std::span<const int64_t> perm) {
  const AxisSplit s = split_axis(t, axis);
  const auto n = static_cast<int64_t>(perm.size());
  DIDMARK_ASSERT(offset >= 0 && offset + n <= s.length);
  const std::size_t slice = static_cast<std::size_t>(s.inner) * dtype_size(t.dtype);
  std::vector<unsigned char> tmp(static_cast<std::size_t>(n) * slice);
  for (int64_t o = 0; o < s.outer; ++o) {
    unsigned char* base = t.bytes.data() + (static_cast<std::size_t>(o * s.length + offset)) * slice;
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(tmp.data() + static_cast<std::size_t>(i) * slice, base + static_cast<std::size_t>(perm[static_cast<std::size_t>(i)]) * slice, slice);
    std::memcpy(base, tmp.data(), tmp.size());
  }
}

void scale_axis(OwnedTensor& t, int axis, int64_t offset, std::span<const double> f) {
  const AxisSplit s = split_axis(t, axis);
  const auto n = static_cast<int64_t>(f.size());
  DIDMARK_ASSERT(offset >= 0 && offset + n <= s.length);
  std::vector<double> v = t.values();
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < n; ++i) {
      double* p = v.data() + (o * s.length + offset + i) * s.inner;
      for (int64_t j = 0; j < s.inner; ++j) p[j] *= f[static_cast<std::size_t>(i)];
    }
  t.assign(v);
}

void append_axis(OwnedTensor& t, int axis, int64_t n, const std::function<double(int64_t, int64_t)>& fill) {
  const AxisSplit s = split_axis(t, axis);
  const std::vector<double> v = t.values();
  OwnedTensor out(t.name, t.dtype, t.shape);
  out.shape[static_cast<std::size_t>(axis)] += n;
  out.bytes.assign(static_cast<std::size_t>(out.numel()) * dtype_size(out.dtype), 0);
  std::vector<double> w(static_cast<std::size_t>(out.numel()));
  const int64_t len = s.length + n;
  for (int64_t o = 0; o < s.outer; ++o) {
    std::memcpy(w.data() + o * len * s.inner, v.data() + o * s.length * s.inner,
                static_cast<std::size_t>(s.length * s.inner) * sizeof(double));
    for (int64_t k = 0; k < n; ++k)
      for (int64_t j = 0; j < s.inner; ++j) w[static_cast<std::size_t>((o * len + s.length + k) * s.inner + j)] = fill(k, o * s.inner + j);
  }
  out.assign(w);
  t = std::move(out);
}

namespace {
uint64_t splitmix(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

std::mt19937_64 stream(uint64_t seed, int attack, std::string_view what) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a of the name
  for (unsigned char c : what) h = (h ^ c) * 0x100000001b3ull;
  uint64_t x = seed ^ (static_cast<uint64_t>(attack) * 0xD1B54A32D192ED03ull);
  const uint64_t a = splitmix(x);
  x ^= h;
  const uint64_t b = splitmix(x);
  std::seed_seq seq{static_cast<uint32_t>(a), static_cast<uint32_t>(a >> 32), static_cast<uint32_t>(b),
                    static_cast<uint32_t>(b >> 32)};
  return std::mt19937_64(seq);
}

std::vector<int64_t> random_permutation(int64_t n, std::mt19937_64& rng) {
  std::vector<int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  // Fisher-Yates with our own index draw: std::shuffle's use of the engine is unspecified
  // across standard libraries, this is not.
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

double rms(std::span<const double> v) {
  double ss = 0;
  int64_t n = 0;
  for (double x : v)
    if (std::isfinite(x)) {
      ss += x * x;
      ++n;
    }
  return n ? std::sqrt(ss / static_cast<double>(n)) : 0;
}

}  // namespace didmark::attack_detail
