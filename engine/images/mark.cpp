// The image mark: perceptual mask and residual planes on the host, the per-pixel embed, the
// tile fold and the shift search through Backend::image_ops() (detail/image_math.hpp).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/image_ops.hpp"
#include "didmark/error.hpp"
#include "didmark/images.hpp"

namespace didmark {
namespace {

using detail::kImageCell;
using detail::kImageCells;
using detail::kImageCellsSide;
using detail::kImageTile;
using detail::kImageTileArea;

constexpr std::string_view kImageCarrierName = "didmark/image/v1";
constexpr int kMaskRadius = 2;      // 5 x 5 local contrast for the mask
constexpr float kMaskRef = 8.0f;    // contrast (8-bit levels) where the mask is 1
constexpr float kMaskMin = 0.5f, kMaskMax = 2.0f;
constexpr int kMeanRadius = 4;      // 9 x 9 local mean removed from the luminance
constexpr int kNormRadius = 7;      // 15 x 15 local RMS the residual is divided by

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<float> luma_of(const Image& img) {
  const std::size_t n = static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height);
  std::vector<float> y(n);
  const uint8_t* p = img.pixels.data();
  const auto c = static_cast<std::size_t>(img.channels);
  if (img.channels >= 3) {
    for (std::size_t i = 0; i < n; ++i)
      y[i] = 0.299f * p[i * c] + 0.587f * p[i * c + 1] + 0.114f * p[i * c + 2];
  } else {
    for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<float>(p[i * c]);
  }
  return y;
}

// Mean over the (2r+1)^2 window clipped to the image (separable, running sums in double).
std::vector<float> box_mean(const std::vector<float>& in, int w, int h, int r) {
  std::vector<float> tmp(in.size()), out(in.size());
  std::vector<double> pre(static_cast<std::size_t>(w) + 1);
  for (int y = 0; y < h; ++y) {
    const float* row = in.data() + static_cast<std::size_t>(y) * w;
    pre[0] = 0;
    for (int x = 0; x < w; ++x) pre[static_cast<std::size_t>(x) + 1] = pre[static_cast<std::size_t>(x)] + static_cast<double>(row[x]);
    float* o = tmp.data() + static_cast<std::size_t>(y) * w;
    for (int x = 0; x < w; ++x) {
      const int a = std::max(0, x - r), b = std::min(w, x + r + 1);
      o[x] = static_cast<float>((pre[static_cast<std::size_t>(b)] - pre[static_cast<std::size_t>(a)]) / (b - a));
    }
  }
  std::vector<double> col(static_cast<std::size_t>(w), 0.0);
  int lo = 0, hi = 0;  // rows [lo, hi) are in col
  for (int y = 0; y < h; ++y) {
    const int a = std::max(0, y - r), b = std::min(h, y + r + 1);
    for (; hi < b; ++hi) {
      const float* row = tmp.data() + static_cast<std::size_t>(hi) * w;
      for (int x = 0; x < w; ++x) col[static_cast<std::size_t>(x)] += static_cast<double>(row[x]);
    }
    for (; lo < a; ++lo) {
      const float* row = tmp.data() + static_cast<std::size_t>(lo) * w;
      for (int x = 0; x < w; ++x) col[static_cast<std::size_t>(x)] -= static_cast<double>(row[x]);
    }
    float* o = out.data() + static_cast<std::size_t>(y) * w;
    const double inv = 1.0 / (b - a);
    for (int x = 0; x < w; ++x) o[x] = static_cast<float>(col[static_cast<std::size_t>(x)] * inv);
  }
  return out;
}

std::vector<float> mask_of(const std::vector<float>& y, int w, int h) {
  std::vector<float> y2(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) y2[i] = y[i] * y[i];
  const std::vector<float> m1 = box_mean(y, w, h, kMaskRadius);
  std::vector<float> m2 = box_mean(y2, w, h, kMaskRadius);
  for (std::size_t i = 0; i < y.size(); ++i) {
    const float sd = std::sqrt(std::max(0.0f, m2[i] - m1[i] * m1[i]));
    m2[i] = std::clamp(sd / kMaskRef, kMaskMin, kMaskMax);
  }
  return m2;
}

// The detector's whitened residual: (Y - mean9(Y)) / (rms15(residual) + 1).
std::vector<float> residual_of(const std::vector<float>& y, int w, int h) {
  const std::vector<float> mean = box_mean(y, w, h, kMeanRadius);
  std::vector<float> r(y.size()), r2(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    r[i] = y[i] - mean[i];
    r2[i] = r[i] * r[i];
  }
  const std::vector<float> ms = box_mean(r2, w, h, kNormRadius);
  for (std::size_t i = 0; i < y.size(); ++i) r[i] /= std::sqrt(std::max(0.0f, ms[i])) + 1.0f;
  return r;
}

struct ClaimTables {
  detail::CarrierSpec spec;
  std::vector<float> signs;    // per payload bit
  std::vector<float> weights;  // kImageCells, image_cell_weight
};

ClaimTables tables_of(const ImageClaim& c) {
  DIDMARK_EXPECTS(c.payload.size() > 0, invalid_argument, "image mark: empty payload");
  ClaimTables t;
  t.spec = derive_carrier(c.key, kImageCarrierName, static_cast<uint32_t>(c.payload.size()));
  t.signs.resize(c.payload.size());
  for (std::size_t b = 0; b < c.payload.size(); ++b) t.signs[b] = c.payload.bits[b] ? -1.0f : 1.0f;
  t.weights.resize(kImageCells);
  for (int i = 0; i < kImageCells; ++i) t.weights[static_cast<std::size_t>(i)] = detail::image_cell_weight(t.spec, t.signs.data(), i);
  return t;
}

// g = the folded tile correlated (cyclically) with the cell bump: the value a cell whose
// top-left pixel sits at q would read.
std::vector<float> bump_match(const std::vector<float>& fold) {
  std::vector<float> g(kImageTileArea, 0.0f);
  for (int qy = 0; qy < kImageTile; ++qy)
    for (int qx = 0; qx < kImageTile; ++qx) {
      float s = 0;
      for (int u = 0; u < kImageCell; ++u)
        for (int v = 0; v < kImageCell; ++v)
          s += detail::image_bump(u) * detail::image_bump(v) *
               fold[static_cast<std::size_t>(((qy + u) & (kImageTile - 1)) * kImageTile + ((qx + v) & (kImageTile - 1)))];
      g[static_cast<std::size_t>(qy * kImageTile + qx)] = s;
    }
  return g;
}

double log10_hoeffding(double z) { return z > 0 ? -z * z / (2.0 * std::log(10.0)) : 0.0; }

}  // namespace

ImageEmbedReport embed_image(Image& image, const ImageClaim& claim, const ImageMarkOptions& o, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  DIDMARK_EXPECTS(o.strength > 0 && o.strength <= 20, invalid_argument, "image strength must be in (0, 20] (8-bit levels), got ",
                  o.strength);
  DIDMARK_EXPECTS(image.width >= o.min_side && image.height >= o.min_side, invalid_argument, "image of ", image.width,
                  " x ", image.height, " is too small to carry a provable mark (at least ", o.min_side, " x ", o.min_side, ")");
  const ClaimTables t = tables_of(claim);
  const std::vector<float> y = luma_of(image);
  const std::vector<float> mask = mask_of(y, image.width, image.height);
  const std::vector<uint8_t> before = image.pixels;
  images::EmbedJob job;
  job.pixels = image.pixels.data();
  job.stride = static_cast<int64_t>(image.width) * image.channels;
  job.width = image.width;
  job.height = image.height;
  job.channels = image.channels;
  job.mask = mask.data();
  job.cell_weights = t.weights.data();
  job.amplitude = static_cast<float>(o.strength);
  backend.image_ops().embed({&job, 1});
  ImageEmbedReport r;
  r.width = image.width;
  r.height = image.height;
  r.channels = image.channels;
  r.strength = o.strength;
  const int colour = image.channels >= 3 ? 3 : 1;
  double se = 0, ae = 0;
  int64_t n = 0;
  for (std::size_t i = 0; i < before.size(); i += static_cast<std::size_t>(image.channels))
    for (int c = 0; c < colour; ++c) {
      const double d = double(image.pixels[i + static_cast<std::size_t>(c)]) - before[i + static_cast<std::size_t>(c)];
      se += d * d;
      ae += std::abs(d);
      ++n;
    }
  r.mean_abs_change = n ? ae / static_cast<double>(n) : 0;
  r.psnr = se > 0 ? 10 * std::log10(255.0 * 255.0 * static_cast<double>(n) / se) : std::numeric_limits<double>::infinity();
  r.seconds = seconds_since(t0);
  return r;
}

ImageScores score_image(const Image& image, std::span<const ImageClaim> claims, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  ImageScores out;
  out.width = image.width;
  out.height = image.height;
  const std::vector<float> y = luma_of(image);
  const std::vector<float> r = residual_of(y, image.width, image.height);
  std::vector<float> fold(kImageTileArea);
  const images::FoldJob fj{r.data(), image.width, image.height};
  auto& ops = backend.image_ops();
  ops.fold({&fj, 1}, fold);
  const std::vector<float> g = bump_match(fold);

  const std::size_t n = claims.size();
  std::vector<ClaimTables> tables;
  tables.reserve(n);
  std::vector<float> gs(n * kImageTileArea), sync(n * kImageCells, 0.0f), score(n * kImageTileArea), norm(n * kImageTileArea);
  for (std::size_t k = 0; k < n; ++k) {
    tables.push_back(tables_of(claims[k]));
    std::copy(g.begin(), g.end(), gs.begin() + static_cast<std::ptrdiff_t>(k * kImageTileArea));
    for (int i = 0; i < kImageCells; ++i)
      if (detail::image_sync_cell(i)) sync[k * kImageCells + static_cast<std::size_t>(i)] = tables[k].weights[static_cast<std::size_t>(i)];
  }
  ops.shift_correlate(gs, sync, score, norm);

  for (std::size_t k = 0; k < n; ++k) {
    const ClaimTables& t = tables[k];
    int best = 0;
    double best_z = -std::numeric_limits<double>::infinity();
    for (int s = 0; s < kImageTileArea; ++s) {
      const auto nr = static_cast<double>(norm[k * kImageTileArea + static_cast<std::size_t>(s)]);
      const double z = nr > 0 ? static_cast<double>(score[k * kImageTileArea + static_cast<std::size_t>(s)]) / std::sqrt(nr) : 0.0;
      if (z > best_z) best_z = z, best = s;
    }
    const int sy = best / kImageTile, sx = best % kImageTile;
    ImageOwnerScore os;
    os.sync_z = best_z;
    os.offset_x = sx;
    os.offset_y = sy;
    os.evidence.reserve(kImageCells / 2);
    double dot = 0, ss = 0;
    std::vector<double> soft(t.signs.size(), 0.0);
    std::vector<int> count(t.signs.size(), 0);
    for (int i = 0; i < kImageCells; ++i) {
      if (detail::image_sync_cell(i)) continue;
      const int cy = i / kImageCellsSide, cx = i % kImageCellsSide;
      const float a = g[static_cast<std::size_t>(((sy + kImageCell * cy) & (kImageTile - 1)) * kImageTile +
                                                 ((sx + kImageCell * cx) & (kImageTile - 1)))];
      const float w = t.weights[static_cast<std::size_t>(i)];
      os.evidence.push_back(a);
      dot += static_cast<double>(w) * static_cast<double>(a);
      ss += static_cast<double>(a) * static_cast<double>(a);
      const uint32_t b = detail::image_cell_bit(t.spec, i);
      soft[b] += static_cast<double>(w * t.signs[b] * a);  // the carrier sign alone: w / s_b
      ++count[b];
    }
    const double len = std::sqrt(ss);
    os.z = len > 0 ? dot / len : 0.0;
    os.log10_p = log10_hoeffding(os.z);
    os.p_value = std::pow(10.0, os.log10_p);
    if (len > 0)
      for (float& e : os.evidence) e = static_cast<float>(static_cast<double>(e) / len);
    os.bits = static_cast<int>(t.signs.size());
    for (std::size_t b = 0; b < t.signs.size(); ++b) {
      const bool bit = soft[b] < 0;
      if (count[b] == 0 || soft[b] == 0 || bit != (claims[k].payload.bits[b] != 0)) ++os.bit_errors;
    }
    out.owners.push_back(std::move(os));
  }
  out.seconds = seconds_since(t0);
  return out;
}

ImageDatasetScore combine_image_scores(std::span<const ImageScores* const> images, std::size_t owner,
                                       const ImageClaim& claim) {
  const ClaimTables t = tables_of(claim);
  std::vector<double> sum(kImageCells / 2, 0.0);
  ImageDatasetScore d;
  for (const ImageScores* s : images) {
    if (!s || owner >= s->owners.size() || s->owners[owner].evidence.size() != sum.size()) continue;
    const auto& e = s->owners[owner].evidence;
    for (std::size_t j = 0; j < sum.size(); ++j) sum[j] += static_cast<double>(e[j]);
    ++d.images;
  }
  double dot = 0, ss = 0;
  std::size_t j = 0;
  for (int i = 0; i < kImageCells; ++i) {
    if (detail::image_sync_cell(i)) continue;
    dot += static_cast<double>(t.weights[static_cast<std::size_t>(i)]) * sum[j];
    ss += sum[j] * sum[j];
    ++j;
  }
  d.z = ss > 0 ? dot / std::sqrt(ss) : 0.0;
  d.log10_p = log10_hoeffding(d.z);
  d.p_value = std::pow(10.0, d.log10_p);
  return d;
}

}  // namespace didmark
