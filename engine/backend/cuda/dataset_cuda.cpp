// The dataset op table on CUDA: host views are streamed through the GPU in row chunks, device
// views are used in place. Kernels: kernels/dataset_table.cu, kernels/dataset_array.cu.
#include <algorithm>
#include <cstring>

#include "kernels/cuda_check.cuh"
#include "backend/cuda/cuda_resources.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/dataset_ops.hpp"
#include "didmark/error.hpp"
#include "kernels/dataset_array.cuh"
#include "kernels/dataset_table.cuh"

namespace didmark::dataset {
namespace {

using detail::CarrierSpec;

std::size_t align_up(std::size_t n) { return (n + 255) & ~std::size_t{255}; }

class CudaOps final : public DatasetOps {
 public:
  CudaOps(cuda::CudaResources& res, DatasetOps& host, int64_t table_gpu_min_rows)
      : res_(res), host_(host), table_gpu_min_rows_(table_gpu_min_rows) {}
  std::string name() const override { return res_.description(); }

  void table_select(std::span<const uint64_t> ids, const TableSpec& spec, std::span<const uint64_t> col_keys,
                    std::span<uint32_t> slots) override {
    DIDMARK_ASSERT(ids.size() == slots.size() && col_keys.size() == spec.num_columns && spec.num_columns <= 256);
    // Short tables do not pay for the transfer: the host pool selects them (same formula).
    if (static_cast<int64_t>(ids.size()) < table_gpu_min_rows_) return host_.table_select(ids, spec, col_keys, slots);
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    auto* keys = static_cast<uint64_t*>(res_.scratch(256 * sizeof(uint64_t), 0));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(keys, col_keys.data(), col_keys.size_bytes(), cudaMemcpyHostToDevice, s));
    const std::size_t chunk = res_.staging_bytes() / sizeof(uint64_t);
    auto* d_ids = static_cast<uint64_t*>(res_.scratch(chunk * sizeof(uint64_t), 1));
    auto* d_slots = static_cast<uint32_t*>(res_.scratch(chunk * sizeof(uint32_t), 2));
    for (std::size_t i0 = 0; i0 < ids.size(); i0 += chunk) {
      const std::size_t n = std::min(chunk, ids.size() - i0);
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_ids, ids.data() + i0, n * sizeof(uint64_t), cudaMemcpyHostToDevice, s));
      kernels::launch_table_select(d_ids, static_cast<int64_t>(n), spec, keys, d_slots, s);
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(slots.data() + i0, d_slots, n * sizeof(uint32_t), cudaMemcpyDeviceToHost, s));
      DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    }
  }

  void array_embed(const TensorView& src, const TensorView& dst, std::span<const CarrierSpec> specs,
                   std::span<const float> bit_signs, double strength, std::span<RowEmbedStats> out) override {
    DIDMARK_EXPECTS(src.device == dst.device, invalid_argument, "array_embed: source ", src.describe(),
                    " and destination ", dst.describe(), " are on different devices");
    const int64_t rows = src.shape[0], dim = src.shape[1];
    const std::size_t row_bytes = static_cast<std::size_t>(dim) * dtype_size(src.dtype);
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    auto* d_signs = static_cast<float*>(res_.scratch(bit_signs.size_bytes(), 0));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_signs, bit_signs.data(), bit_signs.size_bytes(), cudaMemcpyHostToDevice, s));
    const bool host = src.device == Device::cpu;
    const int64_t chunk_rows = host ? std::max<int64_t>(1, static_cast<int64_t>(res_.staging_bytes() / std::max<std::size_t>(row_bytes, 1)))
                                    : rows;
    const std::size_t meta = align_up(static_cast<std::size_t>(chunk_rows) * sizeof(CarrierSpec));
    auto* base = static_cast<unsigned char*>(
        res_.scratch(meta + static_cast<std::size_t>(chunk_rows) * sizeof(RowEmbedStats), 1));
    auto* d_specs = reinterpret_cast<CarrierSpec*>(base);
    auto* d_stats = reinterpret_cast<RowEmbedStats*>(base + meta);
    void* d_data = host ? res_.scratch(static_cast<std::size_t>(chunk_rows) * row_bytes, 2) : nullptr;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows - r0);
      const std::size_t bytes = static_cast<std::size_t>(n) * row_bytes;
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_specs, specs.data() + r0, static_cast<std::size_t>(n) * sizeof(CarrierSpec),
                                       cudaMemcpyHostToDevice, s));
      kernels::ArrayEmbedArgs a;
      a.type = elem_type(src.dtype);
      a.rows = n;
      a.dim = dim;
      a.specs = d_specs;
      a.bit_signs = d_signs;
      a.strength = strength;
      a.stats = d_stats;
      if (host) {
        DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_data, static_cast<const unsigned char*>(src.data) + static_cast<std::size_t>(r0) * row_bytes,
                                         bytes, cudaMemcpyHostToDevice, s));
        a.src = d_data;
        a.dst = d_data;
      } else {
        a.src = static_cast<const unsigned char*>(src.data) + static_cast<std::size_t>(r0) * row_bytes;
        a.dst = static_cast<unsigned char*>(dst.data) + static_cast<std::size_t>(r0) * row_bytes;
      }
      kernels::launch_array_embed(a, s);
      if (host)
        DIDMARK_CUDA_TRY(cudaMemcpyAsync(static_cast<unsigned char*>(dst.data) + static_cast<std::size_t>(r0) * row_bytes,
                                         d_data, bytes, cudaMemcpyDeviceToHost, s));
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(out.data() + r0, d_stats, static_cast<std::size_t>(n) * sizeof(RowEmbedStats),
                                       cudaMemcpyDeviceToHost, s));
      DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    }
  }

  void array_correlate(const TensorView& x, std::span<const CarrierSpec> specs, std::span<const uint8_t> use,
                       std::span<const float> bit_signs, std::span<ClaimSums> out) override {
    const int64_t rows = x.shape[0], dim = x.shape[1];
    const std::size_t K = out.size();
    const std::size_t L = bit_signs.size() / K;
    const std::size_t row_bytes = static_cast<std::size_t>(dim) * dtype_size(x.dtype);
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    // Scratch 0: [signs | sums | weights | t | counts], accumulated over chunks.
    const std::size_t o_sums = align_up(K * L * sizeof(float));
    const std::size_t o_weight = o_sums + align_up(K * L * sizeof(double));
    const std::size_t o_t = o_weight + align_up(K * L * sizeof(double));
    const std::size_t o_counts = o_t + align_up(K * sizeof(double));
    const std::size_t acc_bytes = o_counts + 2 * sizeof(unsigned long long);
    auto* acc = static_cast<unsigned char*>(res_.scratch(acc_bytes, 0));
    DIDMARK_CUDA_TRY(cudaMemsetAsync(acc + o_sums, 0, acc_bytes - o_sums, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(acc, bit_signs.data(), bit_signs.size_bytes(), cudaMemcpyHostToDevice, s));
    const bool host = x.device == Device::cpu;
    const int64_t chunk_rows = host ? std::max<int64_t>(1, static_cast<int64_t>(res_.staging_bytes() / std::max<std::size_t>(row_bytes, 1)))
                                    : rows;
    const std::size_t spec_bytes = align_up(K * static_cast<std::size_t>(chunk_rows) * sizeof(CarrierSpec));
    auto* meta = static_cast<unsigned char*>(res_.scratch(spec_bytes + static_cast<std::size_t>(chunk_rows), 1));
    auto* d_specs = reinterpret_cast<CarrierSpec*>(meta);
    auto* d_use = meta + spec_bytes;
    void* d_data = host ? res_.scratch(static_cast<std::size_t>(chunk_rows) * row_bytes, 2) : nullptr;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk_rows) {
      const int64_t n = std::min(chunk_rows, rows - r0);
      for (std::size_t k = 0; k < K; ++k)
        DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_specs + k * static_cast<std::size_t>(n),
                                         specs.data() + k * static_cast<std::size_t>(rows) + static_cast<std::size_t>(r0),
                                         static_cast<std::size_t>(n) * sizeof(CarrierSpec), cudaMemcpyHostToDevice, s));
      if (!use.empty())
        DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_use, use.data() + r0, static_cast<std::size_t>(n), cudaMemcpyHostToDevice, s));
      kernels::ArrayCorrelateArgs a;
      a.type = elem_type(x.dtype);
      a.rows = n;
      a.dim = dim;
      a.spec_stride = n;
      a.specs = d_specs;
      a.claims = static_cast<uint32_t>(K);
      a.num_bits = static_cast<uint32_t>(L);
      a.use = use.empty() ? nullptr : d_use;
      a.bit_signs = reinterpret_cast<const float*>(acc);
      a.bit_sums = reinterpret_cast<double*>(acc + o_sums);
      a.bit_weight = reinterpret_cast<double*>(acc + o_weight);
      a.t = reinterpret_cast<double*>(acc + o_t);
      a.counts = reinterpret_cast<unsigned long long*>(acc + o_counts);
      if (host) {
        DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_data, static_cast<const unsigned char*>(x.data) + static_cast<std::size_t>(r0) * row_bytes,
                                         static_cast<std::size_t>(n) * row_bytes, cudaMemcpyHostToDevice, s));
        a.x = d_data;
      } else {
        a.x = static_cast<const unsigned char*>(x.data) + static_cast<std::size_t>(r0) * row_bytes;
      }
      kernels::launch_array_correlate(a, s);
      DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));  // the staging buffers are reused by the next chunk
    }
    std::vector<unsigned char> h(acc_bytes);
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(h.data(), acc, acc_bytes, cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    unsigned long long counts[2];
    std::memcpy(counts, h.data() + o_counts, sizeof counts);
    for (std::size_t k = 0; k < K; ++k) {
      ClaimSums& o = out[k];
      o.bit_sums.resize(L);
      o.bit_weight.resize(L);
      std::memcpy(o.bit_sums.data(), h.data() + o_sums + k * L * sizeof(double), L * sizeof(double));
      std::memcpy(o.bit_weight.data(), h.data() + o_weight + k * L * sizeof(double), L * sizeof(double));
      std::memcpy(&o.t, h.data() + o_t + k * sizeof(double), sizeof(double));
      o.rows = static_cast<int64_t>(counts[0]);
      o.skipped = static_cast<int64_t>(counts[1]);
    }
  }

 private:
  cuda::CudaResources& res_;
  DatasetOps& host_;
  int64_t table_gpu_min_rows_;
};

}  // namespace

std::unique_ptr<DatasetOps> make_cuda_dataset_ops(cuda::CudaResources& res, DatasetOps& host,
                                                  int64_t table_gpu_min_rows) {
  return std::make_unique<CudaOps>(res, host, table_gpu_min_rows);
}

}  // namespace didmark::dataset
