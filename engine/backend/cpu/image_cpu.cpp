// The image op table on the CPU: loops over detail/image_math.hpp on the backend's pool.
// Work is cut into fixed tasks (rows of tiles, shift rows) whose results are summed in task
// order, so the result does not depend on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/image_ops.hpp"
#include "common/thread_pool.hpp"
#include "didmark/error.hpp"

namespace didmark::images {
namespace {

using detail::kImageCell;
using detail::kImageCells;
using detail::kImageCellsSide;
using detail::kImageTile;
using detail::kImageTileArea;

// The per-pixel formula of image_delta, a row at a time: the cell weights of the row's cells and
// the bump products are looked up once per row into 128-wide tables, so the loop over x is
// three multiplies in image_delta's order (vectorised) and the same values come out.
void embed_rows(const EmbedJob& j, int y0, int y1) {
  alignas(32) float wrow[kImageTile], brow[kImageTile];
  std::vector<float> d(static_cast<std::size_t>(j.width));
  std::vector<float> samples(j.channels > 1 ? static_cast<std::size_t>(j.width) * static_cast<std::size_t>(j.channels) : 0);
  for (int y = y0; y < y1; ++y) {
    // Pixel x0 + i of a 128-wide chunk (x0 a multiple of 128) has pattern column (i + offset_x) mod 128.
    const int64_t py = static_cast<int64_t>(y) + j.offset_y;
    const float by = detail::image_bump(static_cast<int>(py & 3));
    for (int x = 0; x < kImageTile; ++x) {
      const int64_t px = static_cast<int64_t>(x) + j.offset_x;
      wrow[x] = j.cell_weights[detail::image_cell_of(px, py)];
      brow[x] = detail::exact_mul(detail::image_bump(static_cast<int>(px & 3)), by);
    }
    const float* __restrict m = j.mask + static_cast<int64_t>(y) * j.width;
    float* __restrict dr = d.data();
    for (int x0 = 0; x0 < j.width; x0 += kImageTile) {
      const int n = std::min(kImageTile, j.width - x0);
      for (int i = 0; i < n; ++i)
        dr[x0 + i] = detail::exact_mul(detail::exact_mul(detail::exact_mul(j.amplitude, m[x0 + i]), wrow[i]), brow[i]);
    }
    // Every sample of the row in one flat loop (vectorised): the alpha samples get a zero
    // change, which image_apply leaves exact (v + 0 + 0.5 rounds down to v).
    float* __restrict ds = dr;
    if (j.channels > 1) {
      ds = samples.data();
      const int64_t w = j.width;
      switch (j.channels) {
        case 2:
          for (int64_t x = 0; x < w; ++x) ds[2 * x] = dr[x], ds[2 * x + 1] = 0.0f;
          break;
        case 3:
          for (int64_t x = 0; x < w; ++x) ds[3 * x] = ds[3 * x + 1] = ds[3 * x + 2] = dr[x];
          break;
        default:
          for (int64_t x = 0; x < w; ++x) ds[4 * x] = ds[4 * x + 1] = ds[4 * x + 2] = dr[x], ds[4 * x + 3] = 0.0f;
          break;
      }
    }
    uint8_t* __restrict row = j.pixels + static_cast<int64_t>(y) * j.stride;
    const int64_t n = static_cast<int64_t>(j.width) * j.channels;
    for (int64_t i = 0; i < n; ++i) row[i] = detail::image_apply(row[i], ds[i]);
  }
}

class CpuImageOps final : public ImageOps {
 public:
  explicit CpuImageOps(detail::ThreadPool& pool) : pool_(pool) {}
  std::string name() const override { return "cpu"; }

  void embed(std::span<const EmbedJob> jobs) override {
    constexpr int kRows = 64;
    std::vector<std::pair<std::size_t, int>> tasks;
    for (std::size_t k = 0; k < jobs.size(); ++k)
      for (int y = 0; y < jobs[k].height; y += kRows) tasks.emplace_back(k, y);
    pool_.parallel_for(static_cast<int64_t>(tasks.size()), [&](int, int64_t t) {
      const auto [k, y0] = tasks[static_cast<std::size_t>(t)];
      embed_rows(jobs[k], y0, std::min(jobs[k].height, y0 + kRows));
    });
  }

  void fold(std::span<const FoldJob> jobs, std::span<float> out) override {
    DIDMARK_ASSERT(out.size() == jobs.size() * kImageTileArea);
    std::vector<std::pair<std::size_t, int>> tasks;  // (job, first row of a band of tiles)
    for (std::size_t k = 0; k < jobs.size(); ++k)
      for (int y = 0; y < jobs[k].height; y += kImageTile) tasks.emplace_back(k, y);
    std::vector<float> part(tasks.size() * kImageTileArea, 0.0f);
    pool_.parallel_for(static_cast<int64_t>(tasks.size()), [&](int, int64_t t) {
      const auto [k, y0] = tasks[static_cast<std::size_t>(t)];
      const FoldJob& j = jobs[k];
      float* acc = part.data() + t * kImageTileArea;
      for (int y = y0; y < std::min(j.height, y0 + kImageTile); ++y) {
        float* a = acc + (y - y0) * kImageTile;
        const float* r = j.plane + static_cast<int64_t>(y) * j.width;
        for (int x0 = 0; x0 < j.width; x0 += kImageTile) {
          const int n = std::min(kImageTile, j.width - x0);
          for (int x = 0; x < n; ++x) a[x] += r[x0 + x];
        }
      }
    });
    std::vector<double> sum(kImageTileArea);
    std::size_t t = 0;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      std::fill(sum.begin(), sum.end(), 0.0);
      for (; t < tasks.size() && tasks[t].first == k; ++t)
        for (int q = 0; q < kImageTileArea; ++q) sum[q] += static_cast<double>(part[t * kImageTileArea + q]);
      for (int q = 0; q < kImageTileArea; ++q) out[k * kImageTileArea + q] = static_cast<float>(sum[q]);
    }
  }

  void shift_correlate(std::span<const float> g, std::span<const float> weights, std::span<float> score,
                       std::span<float> norm) override {
    const std::size_t n = weights.size() / kImageCells;
    DIDMARK_ASSERT(g.size() == n * kImageTileArea && score.size() == g.size() && norm.size() == g.size());
    pool_.parallel_for(static_cast<int64_t>(n * kImageTile), [&](int, int64_t t) {
      const std::size_t k = static_cast<std::size_t>(t) / kImageTile;
      const int sy = static_cast<int>(t % kImageTile);
      const float* gk = g.data() + k * kImageTileArea;
      const float* w = weights.data() + k * kImageCells;
      float sc[kImageTile] = {}, nr[kImageTile] = {};
      float ext[2 * kImageTile], ext2[2 * kImageTile];
      for (int cy = 0; cy < kImageCellsSide; ++cy) {
        const float* row = gk + ((sy + kImageCell * cy) & (kImageTile - 1)) * kImageTile;
        for (int x = 0; x < kImageTile; ++x) {
          ext[x] = ext[x + kImageTile] = row[x];
          ext2[x] = ext2[x + kImageTile] = row[x] * row[x];
        }
        for (int cx = 0; cx < kImageCellsSide; ++cx) {
          const float wi = w[cy * kImageCellsSide + cx];
          if (wi == 0.0f) continue;
          const float* e = ext + kImageCell * cx;
          const float* e2 = ext2 + kImageCell * cx;
          for (int sx = 0; sx < kImageTile; ++sx) {
            sc[sx] += wi * e[sx];
            nr[sx] += e2[sx];
          }
        }
      }
      std::memcpy(score.data() + k * kImageTileArea + sy * kImageTile, sc, sizeof sc);
      std::memcpy(norm.data() + k * kImageTileArea + sy * kImageTile, nr, sizeof nr);
    });
  }

 private:
  detail::ThreadPool& pool_;
};

}  // namespace

std::unique_ptr<ImageOps> make_cpu_image_ops(detail::ThreadPool& pool) { return std::make_unique<CpuImageOps>(pool); }

}  // namespace didmark::images
