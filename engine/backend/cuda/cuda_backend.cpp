// The CUDA backend: the watermark primitives on one GPU. Device views are processed in
// place; host views are streamed through two pinned staging buffers so that copying the
// next chunk overlaps the kernel of the current one.
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/alignment_ops.hpp"
#include "backend/image_ops.hpp"
#include "backend/attribution_ops.hpp"
#include "backend/check.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/dataset_ops.hpp"
#include "kernels/cuda_check.cuh"
#include "backend/cuda/cuda_resources.hpp"
#include "backend/host_sample.hpp"
#include "didmark/backend.hpp"
#include "kernels/carrier.cuh"
#include "kernels/screen.cuh"

namespace didmark {
namespace {

using detail::CarrierSpec;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const BackendOptions& o)
      : options_(o), host_(make_cpu_backend(o.threads)), res_(o.device, o.staging_bytes) {
    options_.threads = host_->options().threads;
    options_.staging_bytes = res_.staging_bytes();
    cuda::DeviceScope scope(res_.device());
    for (auto& e : events_) DIDMARK_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  ~CudaBackend() override {
    for (auto& e : events_)
      if (e) (void)cudaEventDestroy(e);
  }

  cuda::CudaResources& resources() noexcept { return res_; }

  Device device() const noexcept override { return Device::cuda; }
  std::string description() const override { return res_.description(); }

  void correlate(const TensorView& w, std::span<const CarrierSpec> carriers, std::span<CorrelateStats> out) override {
    check_view(w, "correlate");
    backend_check::carriers(carriers, out.size());
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const std::size_t K = carriers.size();
    std::vector<uint32_t> offsets(K + 1, 0);
    for (std::size_t k = 0; k < K; ++k) offsets[k + 1] = offsets[k] + carriers[k].num_bits;

    // One scratch block: [specs | offsets | sums | sum_sq | nonfinite].
    const std::size_t spec_bytes = K * sizeof(CarrierSpec);
    const std::size_t off_bytes = round_up(K * sizeof(uint32_t));
    const std::size_t sums_bytes = std::size_t{offsets[K]} * sizeof(double);
    const std::size_t total = round_up(spec_bytes) + off_bytes + sums_bytes + 2 * sizeof(double);
    auto* base = static_cast<unsigned char*>(res_.scratch(total, 1));
    auto* d_specs = reinterpret_cast<CarrierSpec*>(base);
    auto* d_offsets = reinterpret_cast<uint32_t*>(base + round_up(spec_bytes));
    auto* d_sums = reinterpret_cast<double*>(base + round_up(spec_bytes) + off_bytes);
    auto* d_sq = d_sums + offsets[K];
    auto* d_nf = reinterpret_cast<unsigned long long*>(d_sq + 1);
    cudaStream_t s = res_.stream();
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_specs, carriers.data(), spec_bytes, cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_offsets, offsets.data(), K * sizeof(uint32_t), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemsetAsync(d_sums, 0, sums_bytes + 2 * sizeof(double), s));

    kernels::CorrelateArgs a;
    a.dtype = w.dtype;
    a.carriers = d_specs;
    a.sum_offsets = d_offsets;
    a.num_carriers = static_cast<int>(K);
    a.bit_sums = d_sums;
    a.sum_sq = d_sq;
    a.nonfinite = d_nf;
    for_each_chunk(w, nullptr, [&](const void* chunk, void*, int64_t n, uint64_t block_offset) {
      a.data = chunk;
      a.numel = n;
      a.block_offset = block_offset;
      kernels::launch_correlate(a, res_.props().multiProcessorCount, s);
      DIDMARK_CUDA_CHECK_LAUNCH("correlate");
    });

    std::vector<double> sums(offsets[K] + 2);
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(sums.data(), d_sums, sums.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    unsigned long long nf = 0;
    std::memcpy(&nf, &sums[offsets[K] + 1], sizeof nf);
    for (std::size_t k = 0; k < K; ++k) {
      out[k].bit_sums.assign(sums.begin() + offsets[k], sums.begin() + offsets[k + 1]);
      out[k].sum_sq = sums[offsets[K]];
      out[k].nonfinite = static_cast<int64_t>(nf);
    }
  }

  AddStats carrier_add(const TensorView& src, const TensorView& dst, const CarrierSpec& c,
                       std::span<const float> delta) override {
    check_view(src, "carrier_add source");
    check_view(dst, "carrier_add destination");
    backend_check::add_args(src, dst, c, delta);
    DIDMARK_EXPECTS(src.device == dst.device, unsupported, "carrier_add: source on ", device_name(src.device),
                    " and destination on ", device_name(dst.device), "; put both on one side");
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const std::size_t delta_bytes = round_up(delta.size() * sizeof(float));
    auto* base = static_cast<unsigned char*>(res_.scratch(delta_bytes + 3 * sizeof(double), 1));
    auto* d_delta = reinterpret_cast<float*>(base);
    auto* d_stats = reinterpret_cast<double*>(base + delta_bytes);
    cudaStream_t s = res_.stream();
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_delta, delta.data(), delta.size() * sizeof(float), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemsetAsync(d_stats, 0, 3 * sizeof(double), s));

    kernels::AddArgs a;
    a.dtype = src.dtype;
    a.carrier = c;
    a.delta = d_delta;
    a.sum_sq_src = d_stats;
    a.sum_sq_diff = d_stats + 1;
    a.nonfinite = reinterpret_cast<unsigned long long*>(d_stats + 2);
    for_each_chunk(src, &dst, [&](const void* in, void* outp, int64_t n, uint64_t block_offset) {
      a.src = in;
      a.dst = outp;
      a.numel = n;
      a.block_offset = block_offset;
      kernels::launch_carrier_add(a, res_.props().multiProcessorCount, s);
      DIDMARK_CUDA_CHECK_LAUNCH("carrier_add");
    });
    double stats[3];
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(stats, d_stats, sizeof stats, cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    unsigned long long nf = 0;
    std::memcpy(&nf, &stats[2], sizeof nf);
    AddStats r;
    r.sum_sq_src = stats[0];
    r.sum_sq_diff = stats[1];
    r.nonfinite = static_cast<int64_t>(nf);
    return r;
  }

  // screen_many is Backend's: screen() per item. Each call already takes every key in one
  // launch per chunk; fusing a stage's tensors into one launch is left until it can be measured
  // on a GPU.
  void screen(const TensorView& w, const ScreenSample& sample, std::span<const CarrierSpec> carriers,
              std::span<const uint64_t> payload_bits, ScreenSums& out) override {
    check_view(w, "screen");
    const backend_check::ScreenRange range = backend_check::begin_screen(w, sample, carriers, payload_bits, out);
    if (range.count == 0) return;
    const int64_t numel = range.numel, count = range.count, first = range.first;
    const std::size_t K = carriers.size();
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    cudaStream_t s = res_.stream();
    const int gx = kernels::screen_grid_x(res_.props().multiProcessorCount, static_cast<int>(K));

    // One scratch block: [specs | payload | partial sums (gx x K) | partial squares (gx) | counts (2 gx)].
    const std::size_t spec_bytes = round_up(K * sizeof(CarrierSpec));
    const std::size_t pay_bytes = round_up(payload_bits.size() * sizeof(uint64_t));
    const std::size_t part_bytes = (static_cast<std::size_t>(gx) * K + static_cast<std::size_t>(gx)) * sizeof(double) +
                                   2 * static_cast<std::size_t>(gx) * sizeof(unsigned long long);
    auto* base = static_cast<unsigned char*>(res_.scratch(spec_bytes + pay_bytes + part_bytes, 1));
    auto* d_specs = reinterpret_cast<CarrierSpec*>(base);
    auto* d_payload = reinterpret_cast<uint64_t*>(base + spec_bytes);
    auto* d_part = reinterpret_cast<double*>(base + spec_bytes + pay_bytes);
    auto* d_sq = d_part + static_cast<std::size_t>(gx) * K;
    auto* d_count = reinterpret_cast<unsigned long long*>(d_sq + gx);
    if (K > 0) {
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_specs, carriers.data(), K * sizeof(CarrierSpec), cudaMemcpyHostToDevice, s));
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(d_payload, payload_bits.data(), payload_bits.size() * sizeof(uint64_t),
                                       cudaMemcpyHostToDevice, s));
    }
    DIDMARK_CUDA_TRY(cudaMemsetAsync(d_part, 0, part_bytes, s));

    kernels::ScreenArgs a;
    a.dtype = w.dtype;
    a.carriers = d_specs;
    a.num_keys = static_cast<int>(K);
    a.payload = d_payload;
    a.payload_words = K > 0 ? static_cast<uint32_t>(payload_bits.size() / K) : 0;
    a.partial_t = d_part;
    a.partial_sq = d_sq;
    a.partial_count = d_count;
    a.block_step = static_cast<uint64_t>(sample.stride) * detail::kScreenGroupBlocks;

    // The sample goes through the GPU packed, whole groups at a time: gathered on the host into
    // pinned staging for host views, by one strided 2-D copy for device views.
    const std::size_t esize = dtype_size(w.dtype);
    const std::size_t group_bytes = static_cast<std::size_t>(detail::kScreenGroup) * esize;
    const int64_t per_chunk = std::max<int64_t>(1, static_cast<int64_t>(res_.staging_bytes() / group_bytes));
    const std::size_t chunk_bytes = static_cast<std::size_t>(std::min(per_chunk, count)) * group_bytes;
    const auto* src = static_cast<const unsigned char*>(w.data);
    const bool host = w.device == Device::cpu;
    void* dev[2] = {res_.scratch(chunk_bytes, 2), res_.scratch(chunk_bytes, 3)};
    void* pin[2] = {host ? res_.pinned(chunk_bytes, 0) : nullptr, host ? res_.pinned(chunk_bytes, 1) : nullptr};
    bool busy[2] = {false, false};
    int slot = 0;
    for (int64_t c0 = 0; c0 < count; c0 += per_chunk, slot ^= 1) {
      const int64_t nc = std::min(per_chunk, count - c0);
      const int64_t g0 = first + c0 * sample.stride, g_last = first + (c0 + nc - 1) * sample.stride;
      const int64_t last_valid = std::min<int64_t>(detail::kScreenGroup, numel - g_last * detail::kScreenGroup);
      const auto bytes_of = [&](int64_t g) {
        return static_cast<std::size_t>(std::min<int64_t>(detail::kScreenGroup, numel - g * detail::kScreenGroup)) *
               esize;
      };
      if (busy[slot]) DIDMARK_CUDA_TRY(cudaEventSynchronize(events_[slot]));
      if (host) {
        auto* dst = static_cast<unsigned char*>(pin[slot]);
        for (int64_t i = 0; i < nc; ++i) {
          const int64_t g = g0 + i * sample.stride;
          std::memcpy(dst + static_cast<std::size_t>(i) * group_bytes, src + static_cast<std::size_t>(g) * group_bytes,
                      bytes_of(g));
        }
        DIDMARK_CUDA_TRY(cudaMemcpyAsync(dev[slot], pin[slot], static_cast<std::size_t>(nc) * group_bytes,
                                         cudaMemcpyHostToDevice, s));
        a.data = dev[slot];
      } else if (sample.stride == 1) {
        a.data = src + static_cast<std::size_t>(g0) * group_bytes;
      } else {
        // Whole groups by one pitched copy; a partial last group of the tensor on its own.
        const int64_t whole = last_valid == detail::kScreenGroup ? nc : nc - 1;
        auto* dst = static_cast<unsigned char*>(dev[slot]);
        if (whole > 0)
          DIDMARK_CUDA_TRY(cudaMemcpy2DAsync(dst, group_bytes, src + static_cast<std::size_t>(g0) * group_bytes,
                                             static_cast<std::size_t>(sample.stride) * group_bytes, group_bytes,
                                             static_cast<std::size_t>(whole), cudaMemcpyDeviceToDevice, s));
        if (whole < nc)
          DIDMARK_CUDA_TRY(cudaMemcpyAsync(dst + static_cast<std::size_t>(whole) * group_bytes,
                                           src + static_cast<std::size_t>(g_last) * group_bytes, bytes_of(g_last),
                                           cudaMemcpyDeviceToDevice, s));
        a.data = dev[slot];
      }
      a.groups = nc;
      a.last_valid = last_valid;
      a.first_block = static_cast<uint64_t>(g0) * detail::kScreenGroupBlocks;
      kernels::launch_screen(a, gx, s);
      DIDMARK_CUDA_CHECK_LAUNCH("screen");
      DIDMARK_CUDA_TRY(cudaEventRecord(events_[slot], s));
      busy[slot] = true;
    }

    std::vector<double> part(static_cast<std::size_t>(gx) * K + static_cast<std::size_t>(gx));
    std::vector<unsigned long long> counts(2 * static_cast<std::size_t>(gx));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(part.data(), d_part, part.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(
        cudaMemcpyAsync(counts.data(), d_count, counts.size() * sizeof(unsigned long long), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
    for (int x = 0; x < gx; ++x) {
      for (std::size_t k = 0; k < K; ++k) out.t[k] += part[static_cast<std::size_t>(x) * K + k];
      out.sum_sq += part[static_cast<std::size_t>(gx) * K + static_cast<std::size_t>(x)];
      out.elements += static_cast<int64_t>(counts[2 * static_cast<std::size_t>(x)]);
      out.nonfinite += static_cast<int64_t>(counts[2 * static_cast<std::size_t>(x) + 1]);
    }
  }

  std::vector<double> sample(const TensorView& w, int64_t count) override {
    check_view(w, "sample");
    if (w.device == Device::cpu) return backend_detail::sample_host(w, count);
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const int64_t m = std::min(count, w.numel());
    std::vector<double> out(static_cast<std::size_t>(m > 0 ? m : 0));
    if (m <= 0) return out;
    auto* d = static_cast<double*>(res_.scratch(out.size() * sizeof(double), 1));
    kernels::launch_sample(w.data, w.dtype, w.numel(), m, d, res_.stream());
    DIDMARK_CUDA_CHECK_LAUNCH("sample");
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(out.data(), d, out.size() * sizeof(double), cudaMemcpyDeviceToHost, res_.stream()));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(res_.stream()));
    return out;
  }

  void copy(const TensorView& src, const TensorView& dst) override {
    backend_check::same_layout(src, dst, "copy");
    if (src.data == dst.data || src.nbytes() == 0) return;
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDefault, res_.stream()));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(res_.stream()));
  }

  void synchronize() override {
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(res_.stream()));
  }

  dataset::DatasetOps& dataset_ops() override {
    std::call_once(dataset_once_, [&] {
      dataset_ = dataset::make_cuda_dataset_ops(res_, host_->dataset_ops(), options_.table_gpu_min_rows);
    });
    return *dataset_;
  }
  attribution::AttributionOps& attribution_ops() override {
    std::call_once(attribution_once_,
                   [&] { attribution_ = attribution::make_cuda_attribution_ops(res_, host_->attribution_ops()); });
    return *attribution_;
  }
  alignment::AlignmentOps& alignment_ops() override {
    std::call_once(alignment_once_, [&] { alignment_ = alignment::make_cuda_alignment_ops(res_); });
    return *alignment_;
  }
  images::ImageOps& image_ops() override {
    std::call_once(image_once_, [&] { image_ = images::make_cuda_image_ops(res_); });
    return *image_;
  }
  detail::ThreadPool& host_pool() override { return host_->host_pool(); }
  const BackendOptions& options() const noexcept override { return options_; }

 private:
  static std::size_t round_up(std::size_t n) { return (n + 255) & ~std::size_t{255}; }

  void check_view(const TensorView& v, const char* what) {
    backend_check::float_view(v, what);
    DIDMARK_EXPECTS(v.device == Device::cpu || v.device_index == res_.device(), invalid_argument, what, ": ",
                    v.describe(), " is not on this backend's device cuda:", res_.device());
  }

  /// Run fn(in, out, n, block_offset) over `src` (and `dst` when given): once for device
  /// views; chunk by chunk through pinned staging for host views, copying results back.
  template <class Fn>
  void for_each_chunk(const TensorView& src, const TensorView* dst, Fn&& fn) {
    const int64_t numel = src.numel();
    if (numel == 0) return;
    if (src.device == Device::cuda) {
      fn(src.data, dst ? dst->data : nullptr, numel, 0);
      return;
    }
    const std::size_t esize = dtype_size(src.dtype);
    // Chunks hold whole kernel tiles so carrier blocks never straddle two chunks.
    const int64_t chunk = std::max<int64_t>(
        kernels::kCarrierTile,
        static_cast<int64_t>(res_.staging_bytes() / esize) / kernels::kCarrierTile * kernels::kCarrierTile);
    const std::size_t chunk_bytes = static_cast<std::size_t>(std::min(chunk, numel)) * esize;
    cudaStream_t s = res_.stream();
    void* dev[2] = {res_.scratch(chunk_bytes, 2), res_.scratch(chunk_bytes, 3)};
    void* pin[2] = {res_.pinned(chunk_bytes, 0), res_.pinned(chunk_bytes, 1)};
    struct Pending {
      bool busy = false;
      int64_t first = 0, n = 0;
    } pending[2];
    auto drain = [&](int slot) {
      if (!pending[slot].busy) return;
      DIDMARK_CUDA_TRY(cudaEventSynchronize(events_[slot]));
      if (dst)
        std::memcpy(static_cast<char*>(dst->data) + static_cast<std::size_t>(pending[slot].first) * esize, pin[slot],
                    static_cast<std::size_t>(pending[slot].n) * esize);
      pending[slot].busy = false;
    };
    int slot = 0;
    for (int64_t first = 0; first < numel; first += chunk, slot ^= 1) {
      const int64_t n = std::min(chunk, numel - first);
      const std::size_t bytes = static_cast<std::size_t>(n) * esize;
      drain(slot);  // the pinned buffer is free once its previous chunk has come back
      std::memcpy(pin[slot], static_cast<const char*>(src.data) + static_cast<std::size_t>(first) * esize, bytes);
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(dev[slot], pin[slot], bytes, cudaMemcpyHostToDevice, s));
      fn(dev[slot], dst ? dev[slot] : nullptr, n, static_cast<uint64_t>(first / detail::kCarrierBlock));
      if (dst) DIDMARK_CUDA_TRY(cudaMemcpyAsync(pin[slot], dev[slot], bytes, cudaMemcpyDeviceToHost, s));
      DIDMARK_CUDA_TRY(cudaEventRecord(events_[slot], s));
      pending[slot] = {true, first, n};
    }
    drain(0);
    drain(1);
  }

  BackendOptions options_;
  std::shared_ptr<Backend> host_;  // the CPU backend for host-side work (its pool, its op tables)
  cuda::CudaResources res_;
  cudaEvent_t events_[2] = {nullptr, nullptr};
  std::once_flag dataset_once_, attribution_once_, alignment_once_, image_once_;
  std::unique_ptr<images::ImageOps> image_;
  std::unique_ptr<dataset::DatasetOps> dataset_;
  std::unique_ptr<attribution::AttributionOps> attribution_;
  std::unique_ptr<alignment::AlignmentOps> alignment_;
};

}  // namespace

bool cuda_compiled() noexcept { return true; }
bool cuda_available() noexcept { return cuda::usable_device_count() > 0; }
std::shared_ptr<Backend> make_cuda_backend(const BackendOptions& options) { return std::make_shared<CudaBackend>(options); }

}  // namespace didmark
