// The image op table on CUDA: each batch is copied to the device, marked / folded / searched
// by kernels/image.cu (the formulas of detail/image_math.hpp) and copied back.
#include <vector>

#include "backend/cuda/cuda_ops.hpp"
#include "backend/cuda/cuda_resources.hpp"
#include "backend/image_ops.hpp"
#include "didmark/error.hpp"
#include "kernels/cuda_check.cuh"
#include "kernels/image.cuh"

namespace didmark::images {
namespace {

std::size_t align_up(std::size_t n) { return (n + 255) & ~std::size_t{255}; }

class CudaImageOps final : public ImageOps {
 public:
  explicit CudaImageOps(cuda::CudaResources& res) : res_(res) {}
  std::string name() const override { return res_.description(); }

  void embed(std::span<const EmbedJob> jobs) override {
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    for (const EmbedJob& j : jobs) {
      const std::size_t px = static_cast<std::size_t>(j.height) * static_cast<std::size_t>(j.stride);
      const std::size_t mk = static_cast<std::size_t>(j.width) * static_cast<std::size_t>(j.height) * sizeof(float);
      const std::size_t cw = detail::kImageCells * sizeof(float);
      auto* base = static_cast<unsigned char*>(res_.scratch(align_up(px) + align_up(mk) + cw, 0));
      auto* d_px = base;
      auto* d_mask = reinterpret_cast<float*>(base + align_up(px));
      auto* d_cw = reinterpret_cast<float*>(base + align_up(px) + align_up(mk));
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_px, j.pixels, px, cudaMemcpyHostToDevice, s));
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_mask, j.mask, mk, cudaMemcpyHostToDevice, s));
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_cw, j.cell_weights, cw, cudaMemcpyHostToDevice, s));
      kernels::launch_image_embed(d_px, j.stride, j.width, j.height, j.channels, d_mask, d_cw, j.amplitude,
                                  j.offset_x, j.offset_y, s);
      DIDMARK_CUDA_CHECK_LAUNCH("image_embed");
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(j.pixels, d_px, px, cudaMemcpyDeviceToHost, s));
      DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    }
  }

  void fold(std::span<const FoldJob> jobs, std::span<float> out) override {
    DIDMARK_ASSERT(out.size() == jobs.size() * detail::kImageTileArea);
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      const FoldJob& j = jobs[k];
      const std::size_t bytes = static_cast<std::size_t>(j.width) * static_cast<std::size_t>(j.height) * sizeof(float);
      auto* base = static_cast<unsigned char*>(res_.scratch(align_up(bytes) + detail::kImageTileArea * sizeof(float), 0));
      auto* d_plane = reinterpret_cast<float*>(base);
      auto* d_out = reinterpret_cast<float*>(base + align_up(bytes));
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_plane, j.plane, bytes, cudaMemcpyHostToDevice, s));
      kernels::launch_image_fold(d_plane, j.width, j.height, d_out, s);
      DIDMARK_CUDA_CHECK_LAUNCH("image_fold");
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(out.data() + k * detail::kImageTileArea, d_out,
                                       detail::kImageTileArea * sizeof(float), cudaMemcpyDeviceToHost, s));
      DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    }
  }

  void shift_correlate(std::span<const float> g, std::span<const float> weights, std::span<float> score,
                       std::span<float> norm) override {
    const std::size_t n = weights.size() / detail::kImageCells;
    DIDMARK_ASSERT(g.size() == n * detail::kImageTileArea && score.size() == g.size() && norm.size() == g.size());
    if (n == 0) return;
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const std::size_t gb = align_up(g.size_bytes()), wb = align_up(weights.size_bytes());
    auto* base = static_cast<unsigned char*>(res_.scratch(3 * gb + wb, 0));
    auto* d_g = reinterpret_cast<float*>(base);
    auto* d_w = reinterpret_cast<float*>(base + gb);
    auto* d_score = reinterpret_cast<float*>(base + gb + wb);
    auto* d_norm = reinterpret_cast<float*>(base + 2 * gb + wb);
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_g, g.data(), g.size_bytes(), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_w, weights.data(), weights.size_bytes(), cudaMemcpyHostToDevice, s));
    kernels::launch_image_shift_correlate(d_g, d_w, static_cast<int64_t>(n), d_score, d_norm, s);
    DIDMARK_CUDA_CHECK_LAUNCH("image_shift_correlate");
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(score.data(), d_score, score.size_bytes(), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(norm.data(), d_norm, norm.size_bytes(), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

 private:
  cuda::CudaResources& res_;
};

}  // namespace

std::unique_ptr<ImageOps> make_cuda_image_ops(cuda::CudaResources& res) { return std::make_unique<CudaImageOps>(res); }

}  // namespace didmark::images
