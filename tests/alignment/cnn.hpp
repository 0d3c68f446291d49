#pragma once
// ResNet-shaped test models under torchvision's names (conv1, bn1, layerS.B.convK, bnK,
// downsample.0/1, fc), basic or bottleneck blocks, and a plain eval-mode forward pass
// (convolutions, batch norm with running statistics, ReLU, max pool, residual adds, global
// average pool, fc) that the tests run before and after an attack to prove it preserves the
// function.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "models.hpp"

namespace didmark::test::cnn {

using tf::f32;
using tf::Gauss;

struct Config {
  std::vector<int64_t> widths{64, 128, 256, 512};
  std::vector<int> blocks{3, 4, 6, 3};  // ResNet-34: 21.8M parameters
  bool bottleneck = false;              // 1x1 / 3x3 / 1x1 blocks, 4x expansion (ResNet-50)
  int64_t stem = 64, classes = 1000;
  uint64_t seed = 1;
};

inline Config small_config(bool bottleneck, uint64_t seed) {
  Config c;
  c.widths = {8, 16, 24, 32};
  c.blocks = {2, 1, 2, 1};
  c.bottleneck = bottleneck;
  c.stem = 8;
  c.classes = 10;
  c.seed = seed;
  return c;
}

/// [out, in, k, k], He-scaled, with log-normal per-output and per-input-channel scales.
inline Buffer conv(const std::string& name, int64_t out, int64_t in, int64_t k, Gauss& g) {
  Buffer b(name, DType::f32, {out, in, k, k});
  std::vector<double> os(static_cast<std::size_t>(out)), is(static_cast<std::size_t>(in));
  for (auto& s : os) s = std::exp(0.3 * g.next());
  for (auto& s : is) s = std::exp(0.3 * g.next());
  const double sigma = std::sqrt(2.0 / static_cast<double>(in * k * k));
  float* p = f32(b);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t e = 0; e < k * k; ++e)
        *p++ = static_cast<float>(sigma * os[static_cast<std::size_t>(o)] * is[static_cast<std::size_t>(i)] * g.next());
  return b;
}

inline void batch_norm(std::vector<Buffer>& T, const std::string& p, int64_t n, Gauss& g) {
  T.push_back(tf::vec(p + ".weight", n, 1.0, 0.2, g));
  T.push_back(tf::vec(p + ".bias", n, 0.0, 0.1, g));
  T.push_back(tf::vec(p + ".running_mean", n, 0.0, 0.2, g));
  Buffer var = tf::vec(p + ".running_var", n, 1.0, 0.3, g);
  for (int64_t i = 0; i < n; ++i) f32(var)[i] = std::fabs(f32(var)[i]) + 0.05f;
  T.push_back(std::move(var));
  Buffer count(p + ".num_batches_tracked", DType::i64, {});
  *static_cast<int64_t*>(count.view.data) = 1000;
  T.push_back(std::move(count));
}

inline tf::Model make_resnet(const Config& c) {
  tf::Model m;
  Gauss g(c.seed);
  auto& T = m.tensors;
  T.push_back(conv("conv1.weight", c.stem, 3, 7, g));
  batch_norm(T, "bn1", c.stem, g);
  int64_t in = c.stem;
  const int64_t expansion = c.bottleneck ? 4 : 1;
  for (std::size_t s = 0; s < c.widths.size(); ++s) {
    const int64_t w = c.widths[s], out = w * expansion;
    for (int b = 0; b < c.blocks[s]; ++b) {
      const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      if (c.bottleneck) {
        T.push_back(conv(p + "conv1.weight", w, in, 1, g));
        batch_norm(T, p + "bn1", w, g);
        T.push_back(conv(p + "conv2.weight", w, w, 3, g));
        batch_norm(T, p + "bn2", w, g);
        T.push_back(conv(p + "conv3.weight", out, w, 1, g));
        batch_norm(T, p + "bn3", out, g);
      } else {
        T.push_back(conv(p + "conv1.weight", w, in, 3, g));
        batch_norm(T, p + "bn1", w, g);
        T.push_back(conv(p + "conv2.weight", w, w, 3, g));
        batch_norm(T, p + "bn2", w, g);
      }
      const bool stride = s > 0 && b == 0;
      if (b == 0 && (stride || in != out)) {
        T.push_back(conv(p + "downsample.0.weight", out, in, 1, g));
        batch_norm(T, p + "downsample.1", out, g);
      }
      in = out;
    }
  }
  T.push_back(tf::matrix("fc.weight", c.classes, in, 1.0 / std::sqrt(static_cast<double>(in)), g));
  T.push_back(tf::vec("fc.bias", c.classes, 0.0, 0.05, g));
  return m;
}

// ---- forward pass (one image, channels x height x width, double) ---------------------------

struct Image {
  int64_t c = 0, h = 0, w = 0;
  std::vector<double> v;
  double& at(int64_t ch, int64_t y, int64_t x) { return v[static_cast<std::size_t>((ch * h + y) * w + x)]; }
  double at(int64_t ch, int64_t y, int64_t x) const { return v[static_cast<std::size_t>((ch * h + y) * w + x)]; }
};

inline Image conv2d(const Image& x, const Buffer& W, int64_t stride) {
  const auto& s = W.view.shape;
  const int64_t O = s[0], I = s[1], K = s[2], pad = K / 2;
  Image y{O, (x.h + 2 * pad - K) / stride + 1, (x.w + 2 * pad - K) / stride + 1, {}};
  y.v.assign(static_cast<std::size_t>(O * y.h * y.w), 0.0);
  const float* w = f32(W);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < I; ++i)
      for (int64_t ky = 0; ky < K; ++ky)
        for (int64_t kx = 0; kx < K; ++kx) {
          const double wt = w[((o * I + i) * K + ky) * K + kx];
          for (int64_t oy = 0; oy < y.h; ++oy) {
            const int64_t iy = oy * stride + ky - pad;
            if (iy < 0 || iy >= x.h) continue;
            for (int64_t ox = 0; ox < y.w; ++ox) {
              const int64_t ix = ox * stride + kx - pad;
              if (ix >= 0 && ix < x.w) y.at(o, oy, ox) += wt * x.at(i, iy, ix);
            }
          }
        }
  return y;
}

inline void bn(Image& x, const tf::Model& m, const std::string& p, bool relu) {
  const float *g = f32(m.at(p + ".weight")), *b = f32(m.at(p + ".bias")), *mu = f32(m.at(p + ".running_mean")),
              *var = f32(m.at(p + ".running_var"));
  for (int64_t c = 0; c < x.c; ++c)
    for (int64_t i = 0; i < x.h * x.w; ++i) {
      double& v = x.v[static_cast<std::size_t>(c * x.h * x.w + i)];
      v = (v - mu[c]) / std::sqrt(static_cast<double>(var[c]) + 1e-5) * g[c] + b[c];
      if (relu) v = std::max(v, 0.0);
    }
}

inline Image max_pool(const Image& x) {  // 3x3, stride 2, pad 1
  Image y{x.c, (x.h - 1) / 2 + 1, (x.w - 1) / 2 + 1, {}};
  y.v.assign(static_cast<std::size_t>(y.c * y.h * y.w), -1e300);
  for (int64_t c = 0; c < x.c; ++c)
    for (int64_t oy = 0; oy < y.h; ++oy)
      for (int64_t ox = 0; ox < y.w; ++ox)
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t iy = 2 * oy + dy, ix = 2 * ox + dx;
            if (iy >= 0 && iy < x.h && ix >= 0 && ix < x.w) y.at(c, oy, ox) = std::max(y.at(c, oy, ox), x.at(c, iy, ix));
          }
  return y;
}

/// Logits of one image (3 x size x size) under the model's weights; tensor names carry
/// `m.prefix`.
inline std::vector<double> forward(const tf::Model& m, const Config& c, const Image& img) {
  Image x = conv2d(img, m.at("conv1.weight"), 2);
  bn(x, m, "bn1", true);
  x = max_pool(x);
  for (std::size_t s = 0; s < c.widths.size(); ++s)
    for (int b = 0; b < c.blocks[s]; ++b) {
      const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
      const int64_t stride = s > 0 && b == 0 ? 2 : 1;
      Image y;
      if (c.bottleneck) {
        y = conv2d(x, m.at(p + "conv1.weight"), 1);
        bn(y, m, p + "bn1", true);
        y = conv2d(y, m.at(p + "conv2.weight"), stride);
        bn(y, m, p + "bn2", true);
        y = conv2d(y, m.at(p + "conv3.weight"), 1);
        bn(y, m, p + "bn3", false);
      } else {
        y = conv2d(x, m.at(p + "conv1.weight"), stride);
        bn(y, m, p + "bn1", true);
        y = conv2d(y, m.at(p + "conv2.weight"), 1);
        bn(y, m, p + "bn2", false);
      }
      Image id = x;
      if (m.has(p + "downsample.0.weight")) {
        id = conv2d(x, m.at(p + "downsample.0.weight"), stride);
        bn(id, m, p + "downsample.1", false);
      }
      for (std::size_t i = 0; i < y.v.size(); ++i) y.v[i] = std::max(y.v[i] + id.v[i], 0.0);
      x = std::move(y);
    }
  std::vector<double> pooled(static_cast<std::size_t>(x.c), 0.0);
  for (int64_t ch = 0; ch < x.c; ++ch)
    for (int64_t i = 0; i < x.h * x.w; ++i) pooled[static_cast<std::size_t>(ch)] += x.v[static_cast<std::size_t>(ch * x.h * x.w + i)] / static_cast<double>(x.h * x.w);
  const Buffer& W = m.at("fc.weight");
  const Buffer& B = m.at("fc.bias");
  const int64_t K = W.view.shape[0], D = W.view.shape[1];
  std::vector<double> out(static_cast<std::size_t>(K));
  for (int64_t k = 0; k < K; ++k) {
    double a = f32(B)[k];
    for (int64_t d = 0; d < D; ++d) a += f32(W)[k * D + d] * pooled[static_cast<std::size_t>(d)];
    out[static_cast<std::size_t>(k)] = a;
  }
  return out;
}

inline Image random_image(int64_t size, uint64_t seed) {
  Gauss g(seed);
  Image x{3, size, size, {}};
  x.v.resize(static_cast<std::size_t>(3 * size * size));
  for (auto& v : x.v) v = g.next();
  return x;
}

}  // namespace didmark::test::cnn
