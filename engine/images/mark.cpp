// The image mark: perceptual mask and residual planes on the host, the per-pixel embed, the
// tile fold and the shift search through Backend::image_ops() (detail/image_math.hpp).
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "backend/image_ops.hpp"
#include "images/planes.hpp"
#include "didmark/error.hpp"
#include "didmark/images.hpp"
#include "identity/crypto.hpp"

namespace didmark {
namespace {

using detail::kImageCell;
using detail::kImageCells;
using detail::kImageCellsSide;
using detail::kImageTile;
using detail::kImageTileArea;
using images::luma_into;
using images::mask_into;
using images::residual_into;
using images::scratch;
using images::Scratch;
using images::TrimOnExit;

constexpr std::string_view kImageCarrierName = "didmark/image/v1";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The pattern's phase for one image: HKDF-SHA256 of the owner's key, salted with a digest of the
// image's size and every 32nd row (a 1080p image hashes ~200 KB), two bytes giving a multiple of
// 4 in 0..124 each. Without the key the phase is unpredictable (1024 of them), so the tiles of
// many marked images do not line up. Multiples of 4 keep the 4 x 4 cells inside JPEG's 8 x 8
// blocks: with any phase, cells straddling block edges lost up to a quarter of their z to JPEG 50
// on the photographs of bench/images_bench.py (brick 11.8 -> 8.7, clock 16.4 -> 11.5).
std::pair<int, int> derived_phase(const Image& image, const ImageClaim& claim) {
  const std::size_t row = static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.channels);
  std::vector<uint8_t> sample;
  sample.reserve(16 + row * static_cast<std::size_t>(image.height / 32 + 1));
  for (const int v : {image.width, image.height, image.channels})
    for (int b = 0; b < 4; ++b) sample.push_back(static_cast<uint8_t>(static_cast<uint32_t>(v) >> (8 * b)));
  for (int y = 0; y < image.height; y += 32) {
    const uint8_t* p = image.pixels.data() + static_cast<std::size_t>(y) * row;
    sample.insert(sample.end(), p, p + row);
  }
  const std::array<uint8_t, 32> digest = detail::sha256(sample);
  const std::vector<uint8_t> b = detail::hkdf_sha256(claim.key.bytes, digest, detail::as_bytes("didmark/image/phase/v1"), 2);
  return {kImageCell * (b[0] % kImageCellsSide), kImageCell * (b[1] % kImageCellsSide)};
}

// The whitened residual of the image's luminance folded onto one tile.
std::vector<float> fold_residual(const Image& image, Backend& backend) {
  const TrimOnExit trim;
  Scratch& sc = scratch();
  const std::size_t area = static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height);
  float* y = sc.plane(0, area);
  float* res = sc.plane(1, area);
  float* r = sc.plane(2, area);
  luma_into(image, y);
  residual_into(y, image.width, image.height, res, r);
  std::vector<float> fold(kImageTileArea);
  const images::FoldJob fj{r, image.width, image.height};
  backend.image_ops().fold({&fj, 1}, fold);
  return fold;
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

// Sums of |change| and change^2 over the colour samples (alpha left out), in integers: the
// inner loop runs over chunks whose int32 sums cannot overflow (4096 * 255^2 < 2^31).
struct ChangeSums {
  int64_t abs = 0, sq = 0, n = 0;
};
ChangeSums change_sums(const uint8_t* a, const uint8_t* b, std::size_t size, int channels) {
  ChangeSums s;
  if (channels == 1 || channels == 3) {
    for (std::size_t i0 = 0; i0 < size; i0 += 4096) {
      const std::size_t i1 = std::min(size, i0 + 4096);
      int32_t sa = 0, sq = 0;
      for (std::size_t i = i0; i < i1; ++i) {
        const int32_t d = static_cast<int32_t>(b[i]) - static_cast<int32_t>(a[i]);
        sa += d < 0 ? -d : d;
        sq += d * d;
      }
      s.abs += sa;
      s.sq += sq;
    }
    s.n = static_cast<int64_t>(size);
    return s;
  }
  const auto c = static_cast<std::size_t>(channels);
  const std::size_t colour = channels == 2 ? 1 : 3;
  for (std::size_t i = 0; i < size; i += c)
    for (std::size_t k = 0; k < colour; ++k) {
      const int64_t d = static_cast<int64_t>(b[i + k]) - static_cast<int64_t>(a[i + k]);
      s.abs += d < 0 ? -d : d;
      s.sq += d * d;
      ++s.n;
    }
  return s;
}

double log10_hoeffding(double z) { return z > 0 ? -z * z / (2.0 * std::log(10.0)) : 0.0; }

}  // namespace

ImageEmbedReport embed_image(Image& image, const ImageClaim& claim, const ImageMarkOptions& o, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  DIDMARK_EXPECTS(o.strength > 0 && o.strength <= 20, invalid_argument, "image strength must be in (0, 20] (8-bit levels), got ",
                  o.strength);
  DIDMARK_EXPECTS(image.width >= o.min_side && image.height >= o.min_side, invalid_argument, "image of ", image.width,
                  " x ", image.height, " is too small to carry a provable mark (at least ", o.min_side, " x ", o.min_side, ")");
  DIDMARK_EXPECTS((o.offset_x == -1 && o.offset_y == -1) ||
                      (o.offset_x >= 0 && o.offset_x < kImageTile && o.offset_y >= 0 && o.offset_y < kImageTile),
                  invalid_argument, "image phase must be -1, -1 (derived) or in 0..127 each, got ", o.offset_x, ", ",
                  o.offset_y);
  const ClaimTables t = tables_of(claim);
  const auto [ox, oy] = o.offset_x >= 0 ? std::pair{o.offset_x, o.offset_y} : derived_phase(image, claim);
  const TrimOnExit trim;
  Scratch& sc = scratch();
  const std::size_t area = static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height);
  float* y = sc.plane(0, area);
  float* mask = sc.plane(1, area);
  luma_into(image, y);
  mask_into(y, image.width, image.height, mask);
  // The samples before the mark, for the report's PSNR (scratch bytes; aliasing through
  // unsigned char is allowed).
  auto* before = reinterpret_cast<uint8_t*>(sc.plane(2, (image.pixels.size() + 3) / 4));
  std::memcpy(before, image.pixels.data(), image.pixels.size());
  images::EmbedJob job;
  job.pixels = image.pixels.data();
  job.stride = static_cast<int64_t>(image.width) * image.channels;
  job.width = image.width;
  job.height = image.height;
  job.channels = image.channels;
  job.mask = mask;
  job.cell_weights = t.weights.data();
  job.amplitude = static_cast<float>(o.strength);
  job.offset_x = ox;
  job.offset_y = oy;
  backend.image_ops().embed({&job, 1});
  ImageEmbedReport r;
  r.width = image.width;
  r.height = image.height;
  r.channels = image.channels;
  r.strength = o.strength;
  r.offset_x = ox;
  r.offset_y = oy;
  const ChangeSums c = change_sums(before, image.pixels.data(), image.pixels.size(), image.channels);
  r.mean_abs_change = c.n ? static_cast<double>(c.abs) / static_cast<double>(c.n) : 0;
  r.psnr = c.sq > 0 ? 10 * std::log10(255.0 * 255.0 * static_cast<double>(c.n) / static_cast<double>(c.sq))
                    : std::numeric_limits<double>::infinity();
  r.seconds = seconds_since(t0);
  return r;
}

ImageScores score_image(const Image& image, std::span<const ImageClaim> claims, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  ImageScores out;
  out.width = image.width;
  out.height = image.height;
  const std::vector<float> fold = fold_residual(image, backend);
  auto& ops = backend.image_ops();
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
