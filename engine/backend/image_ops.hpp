#pragma once
// The image op table: the per-pixel and per-shift passes of the image mark, implemented once
// on the CPU (engine/backend/cpu/image_cpu.cpp) and once on CUDA
// (engine/backend/cuda/image_cuda.cpp + kernels/image.cu), both over the formulas of
// include/didmark/detail/image_math.hpp. engine/images never includes CUDA headers.
// Every call takes a batch (the images of a folder chunk), so the GPU sees one launch each.
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "didmark/detail/image_math.hpp"

namespace didmark::detail {
class ThreadPool;
}

namespace didmark::images {

/// One image to mark in place: 8-bit interleaved samples, `channels` per pixel (1 grey,
/// 2 grey + alpha, 3 RGB, 4 RGBA); the colour channels (1 or 3) move, alpha never does.
struct EmbedJob {
  uint8_t* pixels = nullptr;
  int64_t stride = 0;  ///< bytes per row
  int width = 0, height = 0, channels = 0;
  const float* mask = nullptr;          ///< width * height perceptual mask, row-major
  const float* cell_weights = nullptr;  ///< kImageCells weights (image_cell_weight)
  float amplitude = 0;
  /// The pattern's phase (0..127): pixel (x, y) gets the pattern at (x + offset_x, y + offset_y).
  int offset_x = 0, offset_y = 0;
};

/// One residual plane to fold onto a tile.
struct FoldJob {
  const float* plane = nullptr;  ///< width * height, row-major
  int width = 0, height = 0;
};

class ImageOps {
 public:
  virtual ~ImageOps() = default;
  virtual std::string name() const = 0;

  /// Mark every job's pixels in place: sample v of pixel (x, y) becomes
  /// image_apply(v, image_delta(weights, amplitude, mask(x, y), x + offset_x, y + offset_y)).
  virtual void embed(std::span<const EmbedJob> jobs) = 0;

  /// fold[j * kImageTileArea + (y mod 128) * 128 + (x mod 128)] = sum of job j's plane over
  /// the pixels (x, y) of that tile position.
  virtual void fold(std::span<const FoldJob> jobs, std::span<float> fold) = 0;

  /// The shift search of n tiles g (n x kImageTileArea, already matched to the cell bump)
  /// against n weight tables (n x kImageCells; zero weights are left out): for every shift
  /// s = (sy, sx) in the tile, score[s] = sum_i w_i g[(sy + 4 cy_i) mod 128][(sx + 4 cx_i) mod 128]
  /// and norm[s] = the sum of those g^2 over the cells with w_i != 0.
  virtual void shift_correlate(std::span<const float> g, std::span<const float> weights, std::span<float> score,
                               std::span<float> norm) = 0;
};

/// The CPU table, running on `pool` (the CPU backend's).
std::unique_ptr<ImageOps> make_cpu_image_ops(detail::ThreadPool& pool);

}  // namespace didmark::images
