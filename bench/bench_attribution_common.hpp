#pragma once
// Shared by bench_attribution.cpp and bench_attribution_cuda.cu: owned synthetic inputs.
#include <cstdint>
#include <random>
#include <vector>

#include "didmark/tensor.hpp"

namespace bench_attr {

struct KnnData {
  int64_t n, q, d;
  std::vector<float> x, qx;
  std::vector<int64_t> y, yq;
  didmark::TensorView xv, yv, qv, yqv;
  KnnData(int64_t n_, int64_t q_, int64_t d_, int classes, uint64_t seed) : n(n_), q(q_), d(d_) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_int_distribution<int> li(0, classes - 1);
    x.resize(static_cast<std::size_t>(n * d));
    qx.resize(static_cast<std::size_t>(q * d));
    y.resize(static_cast<std::size_t>(n));
    yq.resize(static_cast<std::size_t>(q));
    for (auto& v : x) v = nd(rng);
    for (auto& v : qx) v = nd(rng);
    for (auto& v : y) v = li(rng);
    for (auto& v : yq) v = li(rng);
    xv = didmark::TensorView::contiguous(x.data(), didmark::DType::f32, {n, d});
    qv = didmark::TensorView::contiguous(qx.data(), didmark::DType::f32, {q, d});
    yv = didmark::TensorView::contiguous(y.data(), didmark::DType::i64, {n});
    yqv = didmark::TensorView::contiguous(yq.data(), didmark::DType::i64, {q});
  }
};

// rows x p gradients, filled cheaply (a hash, not a Gaussian: 10^9 values).
struct Grads {
  std::vector<float> g;
  didmark::TensorView view;
  Grads(int64_t rows, int64_t p) : g(static_cast<std::size_t>(rows * p)) {
    uint32_t h = 0x9E3779B9u;
    for (auto& v : g) {
      h ^= h << 13;
      h ^= h >> 17;
      h ^= h << 5;
      v = static_cast<float>(static_cast<int32_t>(h)) * (1.0f / 2147483648.0f);
    }
    view = didmark::TensorView::contiguous(g.data(), didmark::DType::f32, {rows, p});
  }
};

}  // namespace bench_attr
