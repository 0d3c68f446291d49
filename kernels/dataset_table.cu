// Table selection: a grid-stride loop around dataset::table_slot (the CPU runs the same).
#include <algorithm>

#include "kernels/cuda_check.cuh"
#include "kernels/dataset_table.cuh"

namespace didmark::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void table_select_kernel(const uint64_t* __restrict__ ids, int64_t n, dataset::TableSpec spec,
                                    const uint64_t* __restrict__ col_keys, uint32_t* __restrict__ slots) {
  __shared__ uint64_t keys[256];
  for (uint32_t c = threadIdx.x; c < spec.num_columns; c += blockDim.x) keys[c] = col_keys[c];
  __syncthreads();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    slots[i] = dataset::table_slot(spec, keys, ids[i]);
}

}  // namespace

void launch_table_select(const uint64_t* ids, int64_t n, const dataset::TableSpec& spec, const uint64_t* col_keys,
                         uint32_t* slots, cudaStream_t stream) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, 65535);
  table_select_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(ids, n, spec, col_keys, slots);
  DIDMARK_CUDA_CHECK_LAUNCH("table_select");
}

}  // namespace didmark::kernels
