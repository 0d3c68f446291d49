// The keyed Rademacher matrix on the GPU: one lane computes one Philox call (128 signs of
// a row), then its warp writes those 128 entries as coalesced 4-element pieces.
#include "didmark/detail/attribution_math.hpp"
#include "kernels/cuda_check.cuh"
#include "didmark/detail/convert.hpp"
#include "kernels/attribution_projection.cuh"

namespace didmark::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <class T>
__global__ void __launch_bounds__(kThreads) rademacher_fill_kernel(uint32_t key_lo, uint32_t key_hi, int64_t row0,
                                                                   int64_t rows, int64_t k, T scale,
                                                                   T* __restrict__ out) {
  __shared__ uint32_t words[kWarps][32][5];  // 5: no bank conflicts between lanes
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t blocks = (k + attribution::kRademacherBlock - 1) / attribution::kRademacherBlock;
  const int64_t pairs = rows * blocks;
  const detail::u32x2 key{key_lo, key_hi};
  for (int64_t base = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * 32; base < pairs;
       base += static_cast<int64_t>(gridDim.x) * kWarps * 32) {
    const int64_t mine = base + lane;
    if (mine < pairs) {
      const int64_t r = mine / blocks, b = mine - r * blocks;
      const detail::u32x4 bits = attribution::rademacher_bits(key, static_cast<uint64_t>(row0 + r), static_cast<uint32_t>(b));
      words[warp][lane][0] = bits.x;
      words[warp][lane][1] = bits.y;
      words[warp][lane][2] = bits.z;
      words[warp][lane][3] = bits.w;
    }
    __syncwarp();
    for (int t = 0; t < 32; ++t) {
      const int64_t pair = base + t;
      if (pair >= pairs) break;
      const int64_t r = pair / blocks, b = pair - r * blocks;
      const detail::u32x4 bits{words[warp][t][0], words[warp][t][1], words[warp][t][2], words[warp][t][3]};
      T* row = out + r * k + b * attribution::kRademacherBlock;
      const int64_t left = k - b * attribution::kRademacherBlock;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int idx = lane * 4 + e;
        if (idx < left) row[idx] = attribution::rademacher_value<T>(bits, static_cast<uint32_t>(idx), scale);
      }
    }
    __syncwarp();
  }
}


template <class T>
__global__ void convert_kernel(const void* __restrict__ src, DType t, int64_t n, T* __restrict__ dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = detail::load_as<T>(src, t, i);
}

int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

}  // namespace

template <class T>
void launch_rademacher_fill(uint32_t key_lo, uint32_t key_hi, int64_t row0, int64_t rows, int64_t k, T scale, T* out,
                            cudaStream_t stream) {
  const int64_t pairs = rows * ((k + attribution::kRademacherBlock - 1) / attribution::kRademacherBlock);
  rademacher_fill_kernel<T><<<grid_for(pairs), kThreads, 0, stream>>>(
      key_lo, key_hi, row0, rows, k, scale, out);
  DIDMARK_CUDA_CHECK_LAUNCH("rademacher_fill");
}

template <class T>
void launch_convert(const void* src, DType t, int64_t n, T* dst, cudaStream_t stream) {
  DIDMARK_EXPECTS(is_watermarkable(t), internal, "convert: dtype ", dtype_name(t), " is not floating");
  convert_kernel<T><<<grid_for(n), kThreads, 0, stream>>>(src, t, n, dst);
  DIDMARK_CUDA_CHECK_LAUNCH("convert");
}

template void launch_rademacher_fill<float>(uint32_t, uint32_t, int64_t, int64_t, int64_t, float, float*, cudaStream_t);
template void launch_rademacher_fill<double>(uint32_t, uint32_t, int64_t, int64_t, int64_t, double, double*,
                                             cudaStream_t);
template void launch_convert<float>(const void*, DType, int64_t, float*, cudaStream_t);
template void launch_convert<double>(const void*, DType, int64_t, double*, cudaStream_t);

}  // namespace didmark::kernels
