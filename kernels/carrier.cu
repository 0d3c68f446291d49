// Carrier kernels: the correlate pass (verify) and the add pass (embed).
//
// A thread block takes a tile of 8192 elements (4096 for f64) through shared memory: the
// loads and stores are coalesced, and then each thread owns one 32-element word of one
// 128-element carrier block, i.e. one Philox word, so a warp spends one Philox call per
// four threads instead of one per element. The per-element formulas come from
// include/didmark/detail/ and are the ones the CPU backend runs.
#include <cub/block/block_reduce.cuh>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/embed_math.hpp"
#include "kernels/carrier.cuh"

namespace didmark::kernels {
namespace {

using detail::acc_t;
using detail::bfloat16_t;
using detail::CarrierSpec;
using detail::half_t;
using detail::u32x4;

constexpr int kThreads = 256;

// Tiles are held as acc_t in shared memory, padded to 33 slots per 32 elements so that the
// 32 threads of a warp, each walking its own word, hit 32 different banks.
template <class T>
struct TileShape {
  static constexpr int elems = sizeof(acc_t<T>) == 8 ? 4096 : 8192;
  static constexpr int words = elems / 32;  // work items: one Philox word each
  static constexpr int padded = words * 33;
};
__device__ __forceinline__ int slot(int i) { return (i >> 5) * 33 + (i & 31); }

template <class T>
__global__ void __launch_bounds__(kThreads) correlate_kernel(CorrelateArgs a) {
  using A = acc_t<T>;
  using S = TileShape<T>;
  __shared__ A tile[S::padded];
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_tmp;

  const T* p = static_cast<const T*>(a.data);
  const int64_t tiles = (a.numel + S::elems - 1) / S::elems;
  double sq = 0;
  unsigned long long nf = 0;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t base = t * S::elems;
    A tile_sq = 0;
    for (int i = threadIdx.x; i < S::elems; i += kThreads) {
      const int64_t idx = base + i;
      A v = 0;
      if (idx < a.numel) {
        v = detail::to_acc(p[idx]);
        if (detail::is_finite(v)) {
          tile_sq += v * v;
        } else {
          ++nf;
          v = 0;  // non-finite elements leave the sums, as on the CPU
        }
      }
      tile[slot(i)] = v;
    }
    sq += static_cast<double>(tile_sq);
    __syncthreads();
    const int item = threadIdx.x;
    if (item < S::words) {  // whole warps only: S::words is a multiple of 32
      const int cb = item >> 2, word = item & 3;
      const int64_t first = base + cb * 128;
      const uint64_t block = a.block_offset + static_cast<uint64_t>(first / 128);
      for (int k = 0; k < a.num_carriers; ++k) {
        const CarrierSpec c = a.carriers[k];
        const u32x4 r = detail::carrier_signs(c, block);
        const uint32_t bits = detail::carrier_word(r, static_cast<uint32_t>(word));
        A s = 0;
#pragma unroll
        for (int e = 0; e < 32; ++e) {
          const A v = tile[item * 33 + e];
          s += ((bits >> e) & 1u) ? -v : v;
        }
        s += __shfl_xor_sync(0xFFFFFFFFu, s, 1);
        s += __shfl_xor_sync(0xFFFFFFFFu, s, 2);
        if (word == 0 && first < a.numel)
          atomicAdd(a.bit_sums + a.sum_offsets[k] + detail::carrier_bit_index(c, block), static_cast<double>(s));
      }
    }
    __syncthreads();
  }
  const double total = Reduce(reduce_tmp).Sum(sq);
  if (threadIdx.x == 0) atomicAdd(a.sum_sq, total);
  __syncthreads();
  const double nft = Reduce(reduce_tmp).Sum(static_cast<double>(nf));
  if (threadIdx.x == 0 && nft > 0) atomicAdd(a.nonfinite, static_cast<unsigned long long>(nft));
}

template <class T>
__global__ void __launch_bounds__(kThreads) add_kernel(AddArgs a) {
  using A = acc_t<T>;
  using S = TileShape<T>;
  __shared__ T tile[S::padded];
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage reduce_tmp;

  const T* src = static_cast<const T*>(a.src);
  T* dst = static_cast<T*>(a.dst);
  const int64_t tiles = (a.numel + S::elems - 1) / S::elems;
  double sq = 0, dsq = 0;
  unsigned long long nf = 0;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t base = t * S::elems;
    for (int i = threadIdx.x; i < S::elems; i += kThreads) {
      const int64_t idx = base + i;
      if (idx < a.numel) tile[slot(i)] = src[idx];
    }
    __syncthreads();
    const int item = threadIdx.x;
    if (item < S::words) {
      const int cb = item >> 2, word = item & 3;
      const int64_t first = base + cb * 128;
      if (first < a.numel) {
        const uint64_t block = a.block_offset + static_cast<uint64_t>(first / 128);
        const u32x4 r = detail::carrier_signs(a.carrier, block);
        const float d = a.delta[detail::carrier_bit_index(a.carrier, block)];
        const uint32_t bits = detail::carrier_word(r, static_cast<uint32_t>(word));
        const int64_t w0 = first + word * 32;
        A q = 0, dq = 0;
        for (int e = 0; e < 32 && w0 + e < a.numel; ++e) {
          const T v = tile[item * 33 + e];
          const uint32_t el = static_cast<uint32_t>(word * 32 + e);  // element within the carrier block
          const T w = detail::embed_element(v, d, (bits >> e) & 1u, detail::carrier_dither(r, el));
          const A va = detail::to_acc(v);
          if (detail::is_finite(va)) {
            const A diff = detail::to_acc(w) - va;
            q += va * va;
            dq += diff * diff;
          } else {
            ++nf;
          }
          tile[item * 33 + e] = w;
        }
        sq += static_cast<double>(q);
        dsq += static_cast<double>(dq);
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < S::elems; i += kThreads) {
      const int64_t idx = base + i;
      if (idx < a.numel) dst[idx] = tile[slot(i)];
    }
    __syncthreads();
  }
  const double t1 = Reduce(reduce_tmp).Sum(sq);
  if (threadIdx.x == 0) atomicAdd(a.sum_sq_src, t1);
  __syncthreads();
  const double t2 = Reduce(reduce_tmp).Sum(dsq);
  if (threadIdx.x == 0) atomicAdd(a.sum_sq_diff, t2);
  __syncthreads();
  const double t3 = Reduce(reduce_tmp).Sum(static_cast<double>(nf));
  if (threadIdx.x == 0 && t3 > 0) atomicAdd(a.nonfinite, static_cast<unsigned long long>(t3));
}

template <class T>
__global__ void sample_kernel(const T* data, int64_t numel, int64_t count, double* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const auto idx = static_cast<int64_t>(static_cast<unsigned __int128>(i) * static_cast<unsigned __int128>(numel) /
                                          static_cast<unsigned __int128>(count));
    out[i] = static_cast<double>(detail::to_acc(data[idx]));
  }
}

int grid_for(int64_t tiles, int sm_count) {
  // Enough resident blocks to cover latency (shared memory allows several per SM).
  const int64_t cap = static_cast<int64_t>(sm_count > 0 ? sm_count : 1) * 8;
  return static_cast<int>(tiles < 1 ? 1 : (tiles < cap ? tiles : cap));
}

template <template <class> class K, class Args>
void dispatch(DType t, const Args& a, int sm_count, cudaStream_t s) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const int64_t tiles = (a.numel + TileShape<T>::elems - 1) / TileShape<T>::elems;
    K<T>::launch(a, grid_for(tiles, sm_count), s);
  };
  switch (t) {
    case DType::f32: run(float{}); break;
    case DType::f64: run(double{}); break;
    case DType::f16: run(half_t{}); break;
    case DType::bf16: run(bfloat16_t{}); break;
    default: break;  // validated by the caller
  }
}

template <class T>
struct CorrelateLaunch {
  static void launch(const CorrelateArgs& a, int grid, cudaStream_t s) { correlate_kernel<T><<<grid, kThreads, 0, s>>>(a); }
};
template <class T>
struct AddLaunch {
  static void launch(const AddArgs& a, int grid, cudaStream_t s) { add_kernel<T><<<grid, kThreads, 0, s>>>(a); }
};

}  // namespace

void launch_correlate(const CorrelateArgs& a, int sm_count, cudaStream_t stream) {
  if (a.numel <= 0 || a.num_carriers <= 0) return;
  dispatch<CorrelateLaunch>(a.dtype, a, sm_count, stream);
}

void launch_carrier_add(const AddArgs& a, int sm_count, cudaStream_t stream) {
  if (a.numel <= 0) return;
  dispatch<AddLaunch>(a.dtype, a, sm_count, stream);
}

void launch_sample(const void* data, DType dtype, int64_t numel, int64_t count, double* out, cudaStream_t stream) {
  if (count <= 0) return;
  const int threads = 256;
  const int grid = static_cast<int>((count + threads - 1) / threads < 1024 ? (count + threads - 1) / threads : 1024);
  switch (dtype) {
    case DType::f32: sample_kernel<<<grid, threads, 0, stream>>>(static_cast<const float*>(data), numel, count, out); break;
    case DType::f64: sample_kernel<<<grid, threads, 0, stream>>>(static_cast<const double*>(data), numel, count, out); break;
    case DType::f16: sample_kernel<<<grid, threads, 0, stream>>>(static_cast<const half_t*>(data), numel, count, out); break;
    case DType::bf16:
      sample_kernel<<<grid, threads, 0, stream>>>(static_cast<const bfloat16_t*>(data), numel, count, out);
      break;
    default: break;
  }
}

}  // namespace didmark::kernels
