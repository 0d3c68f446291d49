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

void embed_rows(const EmbedJob& j, int y0, int y1) {
  const int colour = j.channels >= 3 ? 3 : 1;
  for (int y = y0; y < y1; ++y) {
    uint8_t* row = j.pixels + static_cast<int64_t>(y) * j.stride;
    const float* m = j.mask + static_cast<int64_t>(y) * j.width;
    for (int x = 0; x < j.width; ++x) {
      const float d = detail::image_delta(j.cell_weights, j.amplitude, m[x], x, y);
      uint8_t* px = row + static_cast<int64_t>(x) * j.channels;
      for (int c = 0; c < colour; ++c) px[c] = detail::image_apply(px[c], d);
    }
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
