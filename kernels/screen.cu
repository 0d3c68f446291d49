// The registry screen: every key's known-payload correlation on a sample, at once.
//
// A thread block owns a tile of keys (kScreenThreads x kScreenKeysPerThread) and walks the
// sampled carrier blocks of its grid row. Per block it stages the 128 values, quantizes them
// under the block's power-of-two scale and builds the 32 nibble tables in shared memory
// (detail/screen_math.hpp, the formulas the CPU backend runs); then each thread makes, per
// key, the block's Philox signs and adds 32 lookups. Block sums are exact integers, so the
// per-row partial sums (added by the host in row order) match the CPU's.
#include <cub/block/block_reduce.cuh>

#include "didmark/detail/embed_math.hpp"
#include "didmark/detail/screen_math.hpp"
#include "kernels/screen.cuh"

namespace didmark::kernels {
namespace {

constexpr int kScreenThreads = 256;
constexpr int kScreenKeysPerThread = 8;
constexpr int kKeysPerBlock = kScreenThreads * kScreenKeysPerThread;

using detail::bfloat16_t;
using detail::CarrierSpec;
using detail::half_t;

template <class T>
__global__ void __launch_bounds__(kScreenThreads) screen_kernel(ScreenArgs a) {
  __shared__ int tab[detail::kScreenNibbles * 16];
  __shared__ int8_t q[detail::kCarrierBlock];
  __shared__ float x[detail::kCarrierBlock];
  __shared__ unsigned int max_bits;
  __shared__ int sq_sum;
  using ReduceU = cub::BlockReduce<unsigned long long, kScreenThreads>;
  __shared__ typename ReduceU::TempStorage tmp;

  const T* p = static_cast<const T*>(a.data);
  const int key0 = static_cast<int>(blockIdx.y) * kKeysPerBlock;
  const bool stats = blockIdx.y == 0;
  double acc[kScreenKeysPerThread];
#pragma unroll
  for (int s = 0; s < kScreenKeysPerThread; ++s) acc[s] = 0;
  double sq = 0;  // thread 0: the blocks' sums of squares
  unsigned long long fin = 0, nf = 0;

  const int64_t blocks = a.groups * detail::kScreenGroupBlocks;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t grp = b / detail::kScreenGroupBlocks;
    const int j = static_cast<int>(b % detail::kScreenGroupBlocks);
    const int64_t valid = grp == a.groups - 1 ? a.last_valid : detail::kScreenGroup;
    const int64_t left = valid - int64_t{j} * detail::kCarrierBlock;
    if (left <= 0) continue;  // the same for every thread of the block
    const int n = left < detail::kCarrierBlock ? static_cast<int>(left) : detail::kCarrierBlock;
    __syncthreads();  // the previous block's tables are no longer read
    if (threadIdx.x == 0) {
      max_bits = 0;
      sq_sum = 0;
    }
    __syncthreads();
    if (threadIdx.x < detail::kCarrierBlock) {
      float v = 0.0f;
      if (static_cast<int>(threadIdx.x) < n) {
        bool ok = false;
        const int64_t idx = grp * detail::kScreenGroup + int64_t{j} * detail::kCarrierBlock + threadIdx.x;
        v = detail::screen_value(static_cast<double>(detail::to_acc(p[idx])), ok);
        if (stats) {
          fin += ok ? 1 : 0;
          nf += ok ? 0 : 1;
        }
      }
      x[threadIdx.x] = v;
      atomicMax(&max_bits, detail::f32_bits(fabsf(v)));  // |v| >= 0: its bits order as its value
    }
    __syncthreads();
    const float m = detail::bits_f32(max_bits);
    if (!(m >= detail::kScreenTiny)) continue;  // quantizes to zeros (the same for every thread)
    const int ex = detail::screen_scale_exp(m);
    if (threadIdx.x < detail::kCarrierBlock) {
      const int v = detail::screen_quantize(x[threadIdx.x], detail::screen_inv_scale(ex));
      q[threadIdx.x] = static_cast<int8_t>(v);
      if (stats) atomicAdd(&sq_sum, v * v);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < detail::kScreenNibbles * 16; i += kScreenThreads)
      tab[i] = detail::screen_nibble_entry(q + (i >> 4) * 4, static_cast<uint32_t>(i & 15));
    __syncthreads();
    if (stats && threadIdx.x == 0) sq += static_cast<double>(sq_sum) * detail::screen_scale(2 * ex);
    const double scale = detail::screen_scale(ex);
    const uint64_t block = a.first_block + static_cast<uint64_t>(grp) * a.block_step + static_cast<uint64_t>(j);
#pragma unroll
    for (int s = 0; s < kScreenKeysPerThread; ++s) {
      const int k = key0 + s * kScreenThreads + static_cast<int>(threadIdx.x);
      if (k < a.num_keys) {
        const CarrierSpec c = a.carriers[k];
        // Each nibble's 16 entries sit in 16 consecutive words (16 banks): no bank conflicts.
        const int v = detail::screen_block_sum(tab, detail::carrier_signs(c, block));
        const uint32_t bit = detail::carrier_bit_index(c, block);
        const uint32_t neg = detail::screen_payload_bit(a.payload + static_cast<int64_t>(k) * a.payload_words, bit);
        acc[s] += static_cast<double>(neg ? -v : v) * scale;
      }
    }
  }
#pragma unroll
  for (int s = 0; s < kScreenKeysPerThread; ++s) {
    const int k = key0 + s * kScreenThreads + static_cast<int>(threadIdx.x);
    if (k < a.num_keys) a.partial_t[static_cast<int64_t>(blockIdx.x) * a.num_keys + k] += acc[s];
  }
  if (!stats) return;  // the same for every thread of the block
  const unsigned long long fin_total = ReduceU(tmp).Sum(fin);
  __syncthreads();
  const unsigned long long nf_total = ReduceU(tmp).Sum(nf);
  if (threadIdx.x == 0) {
    a.partial_sq[blockIdx.x] += sq;
    a.partial_count[2 * blockIdx.x] += fin_total;
    a.partial_count[2 * blockIdx.x + 1] += nf_total;
  }
}

}  // namespace

int screen_grid_x(int sm_count, int num_keys) {
  const int tiles = num_keys > 0 ? (num_keys + kKeysPerBlock - 1) / kKeysPerBlock : 1;
  const int want = (sm_count > 0 ? sm_count : 1) * 4;
  const int x = (want + tiles - 1) / tiles;
  return x < 1 ? 1 : x;
}

void launch_screen(const ScreenArgs& a, int grid_x, cudaStream_t stream) {
  if (a.groups <= 0) return;
  const unsigned tiles = a.num_keys > 0 ? static_cast<unsigned>((a.num_keys + kKeysPerBlock - 1) / kKeysPerBlock) : 1u;
  const dim3 grid(static_cast<unsigned>(grid_x), tiles);
  switch (a.dtype) {
    case DType::f32: screen_kernel<float><<<grid, kScreenThreads, 0, stream>>>(a); break;
    case DType::f64: screen_kernel<double><<<grid, kScreenThreads, 0, stream>>>(a); break;
    case DType::f16: screen_kernel<half_t><<<grid, kScreenThreads, 0, stream>>>(a); break;
    case DType::bf16: screen_kernel<bfloat16_t><<<grid, kScreenThreads, 0, stream>>>(a); break;
    default: break;  // validated by the caller
  }
}

}  // namespace didmark::kernels
