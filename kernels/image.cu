// Image mark kernels: thin grid loops around include/didmark/detail/image_math.hpp.
#include "kernels/image.cuh"

namespace didmark::kernels {
namespace {

using detail::kImageCell;
using detail::kImageCells;
using detail::kImageCellsSide;
using detail::kImageTile;
using detail::kImageTileArea;

__global__ void image_embed_kernel(uint8_t* pixels, int64_t stride, int width, int height, int channels,
                                   const float* mask, const float* cell_weights, float amplitude, int offset_x,
                                   int offset_y) {
  const int colour = channels >= 3 ? 3 : 1;
  const int64_t n = static_cast<int64_t>(width) * height;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t y = i / width, x = i % width;
    const float d = detail::image_delta(cell_weights, amplitude, mask[i], x + offset_x, y + offset_y);
    uint8_t* px = pixels + y * stride + x * channels;
    for (int c = 0; c < colour; ++c) px[c] = detail::image_apply(px[c], d);
  }
}

// One thread per tile position; tiles summed in row-major tile order.
__global__ void image_fold_kernel(const float* plane, int width, int height, float* out) {
  const int q = blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= kImageTileArea) return;
  const int qy = q / kImageTile, qx = q % kImageTile;
  double s = 0.0;
  for (int y = qy; y < height; y += kImageTile)
    for (int x = qx; x < width; x += kImageTile) s += plane[static_cast<int64_t>(y) * width + x];
  out[q] = static_cast<float>(s);
}

// One thread per shift; the image's weights in shared memory.
__global__ void image_shift_kernel(const float* g, const float* weights, float* score, float* norm) {
  __shared__ float w[kImageCells];
  const int64_t k = blockIdx.y;
  for (int i = threadIdx.x; i < kImageCells; i += blockDim.x) w[i] = weights[k * kImageCells + i];
  __syncthreads();
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= kImageTileArea) return;
  const int sy = s / kImageTile, sx = s % kImageTile;
  const float* gk = g + k * kImageTileArea;
  float sc = 0.0f, nr = 0.0f;
  for (int cy = 0; cy < kImageCellsSide; ++cy) {
    const float* row = gk + ((sy + kImageCell * cy) & (kImageTile - 1)) * kImageTile;
    for (int cx = 0; cx < kImageCellsSide; ++cx) {
      const float wi = w[cy * kImageCellsSide + cx];
      if (wi == 0.0f) continue;
      const float v = row[(sx + kImageCell * cx) & (kImageTile - 1)];
      sc += wi * v;
      nr += v * v;
    }
  }
  score[k * kImageTileArea + s] = sc;
  norm[k * kImageTileArea + s] = nr;
}

}  // namespace

void launch_image_embed(uint8_t* pixels, int64_t stride, int width, int height, int channels, const float* mask,
                        const float* cell_weights, float amplitude, int offset_x, int offset_y,
                        cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(width) * height;
  const int threads = 256;
  const int blocks = static_cast<int>(n / threads + 1 < 65535 ? n / threads + 1 : 65535);
  image_embed_kernel<<<blocks, threads, 0, stream>>>(pixels, stride, width, height, channels, mask, cell_weights,
                                                     amplitude, offset_x, offset_y);
}

void launch_image_fold(const float* plane, int width, int height, float* out, cudaStream_t stream) {
  image_fold_kernel<<<kImageTileArea / 128, 128, 0, stream>>>(plane, width, height, out);
}

void launch_image_shift_correlate(const float* g, const float* weights, int64_t n, float* score, float* norm,
                                  cudaStream_t stream) {
  if (n == 0) return;
  image_shift_kernel<<<dim3(kImageTileArea / 256, static_cast<unsigned>(n)), 256, 0, stream>>>(g, weights, score, norm);
}

}  // namespace didmark::kernels
