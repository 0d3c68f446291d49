// The image mark's host planes (planes.hpp): box means over clipped windows, row by row.
#include "images/planes.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace didmark::images {

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

namespace {

// Box means over (2R+1)^2 windows clipped to the image, row after row (y = 0, 1, 2, ...).
// Vertically, the column sums of the window's rows are updated by the row that enters and the
// row that leaves (two rows read per output row, not 2R+1), and recomputed from scratch every
// kRestart rows, so float rounding cannot build up along a tall image. Horizontally, the 2R+1
// taps run over a zero-padded copy (vectorised across x), so clipped edges need only a
// rescale. Row y of the mean of in (Plain) and of in^2 (Square) go to o1 and o2.
template <int R, bool Plain, bool Square>
class BoxRows {
 public:
  BoxRows(const float* in, int w, int h)
      : in_(in), w_(w), h_(h), c1_(Plain ? padded(w) : 0, 0.0f), c2_(Square ? padded(w) : 0, 0.0f) {}

  void row(int y, float* o1, float* o2) {
    const int a = std::max(0, y - R), b = std::min(h_, y + R + 1);
    if (y % kRestart == 0 || y != next_) {
      clear();
      for (int k = a; k < b; ++k) add(k, false);
    } else {
      for (int k = b_; k < b; ++k) add(k, false);
      for (int k = a_; k < a; ++k) add(k, true);
    }
    a_ = a, b_ = b, next_ = y + 1;
    const float* p1 = c1_.data();
    const float* p2 = c2_.data();
    const float inv = 1.0f / static_cast<float>((b - a) * (2 * R + 1));
    for (int x = 0; x < w_; ++x) {
      float s1 = 0, s2 = 0;
      for (int t = 0; t <= 2 * R; ++t) {
        if constexpr (Plain) s1 += p1[x + t];
        if constexpr (Square) s2 += p2[x + t];
      }
      if constexpr (Plain) o1[x] = s1 * inv;
      if constexpr (Square) o2[x] = s2 * inv;
    }
    // The first and last R columns see fewer than 2R+1 columns.
    auto fix = [&](int x) {
      const float f = static_cast<float>(2 * R + 1) / static_cast<float>(std::min(w_, x + R + 1) - std::max(0, x - R));
      if constexpr (Plain) o1[x] *= f;
      if constexpr (Square) o2[x] *= f;
    };
    for (int x = 0; x < std::min(R, w_); ++x) fix(x);
    for (int x = std::max(R, w_ - R); x < w_; ++x) fix(x);
  }

 private:
  static constexpr int kRestart = 32;
  static std::size_t padded(int w) { return static_cast<std::size_t>(w) + 2 * R; }

  void clear() {
    std::fill(c1_.begin(), c1_.end(), 0.0f);
    std::fill(c2_.begin(), c2_.end(), 0.0f);
  }
  // Adds (or takes away) row k of the input to the column sums.
  void add(int k, bool remove) {
    const float* __restrict p = in_ + static_cast<std::size_t>(k) * static_cast<std::size_t>(w_);
    float* __restrict c1 = c1_.data() + R;
    float* __restrict c2 = c2_.data() + R;
    if (!remove) {
      for (int x = 0; x < w_; ++x) {
        if constexpr (Plain) c1[x] += p[x];
        if constexpr (Square) c2[x] += p[x] * p[x];
      }
    } else {
      for (int x = 0; x < w_; ++x) {
        if constexpr (Plain) c1[x] -= p[x];
        if constexpr (Square) c2[x] -= p[x] * p[x];
      }
    }
  }

  const float* in_;
  int w_, h_;
  std::vector<float> c1_, c2_;  // column sums, R zeros on each side
  int a_ = 0, b_ = 0, next_ = -1;
};

}  // namespace

void luma_into(const Image& img, float* y) {
  const std::size_t n = static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height);
  const uint8_t* p = img.pixels.data();
  switch (img.channels) {
    case 1:
      for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<float>(p[i]);
      break;
    case 2:
      for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<float>(p[2 * i]);
      break;
    case 3:
      for (std::size_t i = 0; i < n; ++i) y[i] = 0.299f * p[3 * i] + 0.587f * p[3 * i + 1] + 0.114f * p[3 * i + 2];
      break;
    default:
      for (std::size_t i = 0; i < n; ++i) y[i] = 0.299f * p[4 * i] + 0.587f * p[4 * i + 1] + 0.114f * p[4 * i + 2];
      break;
  }
}

// The perceptual mask: clamp(sd5x5(Y) / kMaskRef, kMaskMin, kMaskMax), row by row.
void mask_into(const float* y, int w, int h, float* mask) {
  BoxRows<kMaskRadius, true, true> box(y, w, h);
  std::vector<float> m1(static_cast<std::size_t>(w)), m2(static_cast<std::size_t>(w));
  for (int r = 0; r < h; ++r) {
    box.row(r, m1.data(), m2.data());
    float* __restrict o = mask + static_cast<std::size_t>(r) * static_cast<std::size_t>(w);
    const float* __restrict a = m1.data();
    const float* __restrict b = m2.data();
    for (int x = 0; x < w; ++x) {
      float v = b[x] - a[x] * a[x];
      v = v > 0.0f ? v : 0.0f;
      float m = std::sqrt(v) / kMaskRef;
      m = m < kMaskMin ? kMaskMin : m;
      o[x] = m > kMaskMax ? kMaskMax : m;
    }
  }
}

// The detector's whitened residual: (Y - mean9(Y)) / (rms15(residual) + 1). `res` holds the
// raw residual on the way; `out` the result.
void residual_into(const float* y, int w, int h, float* res, float* out) {
  {
    BoxRows<kMeanRadius, true, false> box(y, w, h);
    std::vector<float> m(static_cast<std::size_t>(w));
    for (int r = 0; r < h; ++r) {
      box.row(r, m.data(), nullptr);
      const std::size_t o = static_cast<std::size_t>(r) * static_cast<std::size_t>(w);
      for (int x = 0; x < w; ++x) res[o + static_cast<std::size_t>(x)] = y[o + static_cast<std::size_t>(x)] - m[static_cast<std::size_t>(x)];
    }
  }
  BoxRows<kNormRadius, false, true> box(res, w, h);
  std::vector<float> ms(static_cast<std::size_t>(w));
  for (int r = 0; r < h; ++r) {
    box.row(r, nullptr, ms.data());
    const std::size_t o = static_cast<std::size_t>(r) * static_cast<std::size_t>(w);
    const float* __restrict rr = res + o;
    const float* __restrict mr = ms.data();
    float* __restrict orow = out + o;
    for (int x = 0; x < w; ++x) {
      const float v = mr[x] > 0.0f ? mr[x] : 0.0f;
      orow[x] = rr[x] / (std::sqrt(v) + 1.0f);
    }
  }
}

}  // namespace didmark::images
