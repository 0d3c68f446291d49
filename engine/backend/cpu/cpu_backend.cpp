#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

#include "backend/alignment_ops.hpp"
#include "backend/image_ops.hpp"
#include "backend/attribution_ops.hpp"
#include "backend/check.hpp"
#include "backend/cpu/cpu_kernels.hpp"
#include "backend/dataset_ops.hpp"
#include "backend/host_sample.hpp"
#include "common/thread_pool.hpp"
#include "didmark/backend.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

using detail::CarrierSpec;

// Blocks per task: 512 blocks = 64K elements, large enough to amortize scheduling and small
// enough that a 2-core machine still balances a 1M-element tensor.
constexpr int64_t kBlocksPerTask = 512;

int64_t num_blocks(int64_t numel) { return (numel + detail::kCarrierBlock - 1) / detail::kCarrierBlock; }

// flatten: the whole range loop of each dtype is one function, with nothing left as a call.
#define DIDMARK_FLATTEN __attribute__((flatten))

struct RangeOut {
  std::vector<double> sums;  // k_count * L, flattened
  double sum_sq = 0;
  int64_t nonfinite = 0;
};

template <class T>
void correlate_task(const void* data, int64_t numel, int64_t g0, int64_t g1, std::span<const CarrierSpec> cs,
                    RangeOut& out, const std::vector<std::size_t>& offsets) {
  std::vector<double*> ptrs(cs.size());
  for (std::size_t k = 0; k < cs.size(); ++k) ptrs[k] = out.sums.data() + offsets[k];
  // Locals, not out's fields: through a reference that may alias the sums, every block's
  // update would be a store and a reload.
  double ssq = 0;
  int64_t nonfinite = 0;
  cpu::correlate_range(static_cast<const T*>(data), numel, g0, g1, cs.data(), static_cast<int>(cs.size()),
                       ptrs.data(), ssq, nonfinite);
  out.sum_sq += ssq;
  out.nonfinite += nonfinite;
}

DIDMARK_FLATTEN void correlate_f32(const void* d, int64_t n, int64_t g0, int64_t g1, std::span<const CarrierSpec> cs,
                                  RangeOut& o, const std::vector<std::size_t>& off) {
  correlate_task<float>(d, n, g0, g1, cs, o, off);
}
DIDMARK_FLATTEN void correlate_f64(const void* d, int64_t n, int64_t g0, int64_t g1, std::span<const CarrierSpec> cs,
                                  RangeOut& o, const std::vector<std::size_t>& off) {
  correlate_task<double>(d, n, g0, g1, cs, o, off);
}
DIDMARK_FLATTEN void correlate_f16(const void* d, int64_t n, int64_t g0, int64_t g1, std::span<const CarrierSpec> cs,
                                  RangeOut& o, const std::vector<std::size_t>& off) {
  correlate_task<cpu::f16_t>(d, n, g0, g1, cs, o, off);
}
DIDMARK_FLATTEN void correlate_bf16(const void* d, int64_t n, int64_t g0, int64_t g1,
                                   std::span<const CarrierSpec> cs, RangeOut& o, const std::vector<std::size_t>& off) {
  correlate_task<cpu::bf16_t>(d, n, g0, g1, cs, o, off);
}

template <class T>
void add_task(const void* src, void* dst, int64_t numel, int64_t g0, int64_t g1, const CarrierSpec& c,
              const float* delta, RangeOut& out) {
  double ssq = 0, dsq = 0;
  cpu::add_range(static_cast<const T*>(src), static_cast<T*>(dst), numel, g0, g1, c, delta, ssq, dsq, out.nonfinite);
  out.sum_sq += ssq;
  out.sums[0] += dsq;
}

DIDMARK_FLATTEN void add_f32(const void* s, void* d, int64_t n, int64_t g0, int64_t g1, const CarrierSpec& c,
                            const float* delta, RangeOut& o) {
  add_task<float>(s, d, n, g0, g1, c, delta, o);
}
DIDMARK_FLATTEN void add_f64(const void* s, void* d, int64_t n, int64_t g0, int64_t g1, const CarrierSpec& c,
                            const float* delta, RangeOut& o) {
  add_task<double>(s, d, n, g0, g1, c, delta, o);
}
DIDMARK_FLATTEN void add_f16(const void* s, void* d, int64_t n, int64_t g0, int64_t g1, const CarrierSpec& c,
                            const float* delta, RangeOut& o) {
  add_task<cpu::f16_t>(s, d, n, g0, g1, c, delta, o);
}
DIDMARK_FLATTEN void add_bf16(const void* s, void* d, int64_t n, int64_t g0, int64_t g1, const CarrierSpec& c,
                             const float* delta, RangeOut& o) {
  add_task<cpu::bf16_t>(s, d, n, g0, g1, c, delta, o);
}

// Screening: keys per task (a tile's accumulators and key words stay in L2; a multiple of 32)
// and the most chunks
// a tensor's sample is cut into. Chunks follow the sample's size only, and partial sums are
// added in chunk order, so the thread count changes nothing.
constexpr int64_t kScreenKeyTile = 2048;
constexpr int64_t kScreenMaxChunks = 16;

struct ScreenChunk {
  double ssq = 0;
  int64_t elements = 0, nonfinite = 0;
};

template <class T>
void screen_task(const void* data, int64_t numel, int64_t first, int64_t stride, int64_t i0, int64_t i1,
                 const cpu::ScreenKeys& keys, double* acc, bool stats, ScreenChunk& out) {
  cpu::screen_range(static_cast<const T*>(data), numel, first, stride, i0, i1, keys, acc, stats, out.ssq,
                    out.elements, out.nonfinite);
}
using ScreenFn = void (*)(const void*, int64_t, int64_t, int64_t, int64_t, int64_t, const cpu::ScreenKeys&, double*,
                          bool, ScreenChunk&);
DIDMARK_FLATTEN void screen_f32(const void* d, int64_t n, int64_t f, int64_t s, int64_t i0, int64_t i1,
                               const cpu::ScreenKeys& k, double* a, bool st, ScreenChunk& o) {
  screen_task<float>(d, n, f, s, i0, i1, k, a, st, o);
}
DIDMARK_FLATTEN void screen_f64(const void* d, int64_t n, int64_t f, int64_t s, int64_t i0, int64_t i1,
                               const cpu::ScreenKeys& k, double* a, bool st, ScreenChunk& o) {
  screen_task<double>(d, n, f, s, i0, i1, k, a, st, o);
}
DIDMARK_FLATTEN void screen_f16(const void* d, int64_t n, int64_t f, int64_t s, int64_t i0, int64_t i1,
                               const cpu::ScreenKeys& k, double* a, bool st, ScreenChunk& o) {
  screen_task<cpu::f16_t>(d, n, f, s, i0, i1, k, a, st, o);
}
DIDMARK_FLATTEN void screen_bf16(const void* d, int64_t n, int64_t f, int64_t s, int64_t i0, int64_t i1,
                                const cpu::ScreenKeys& k, double* a, bool st, ScreenChunk& o) {
  screen_task<cpu::bf16_t>(d, n, f, s, i0, i1, k, a, st, o);
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& o)
      : options_(o), pool_(o.threads > 0 ? o.threads : detail::default_thread_count()) {
    options_.threads = pool_.size();
  }

  Device device() const noexcept override { return Device::cpu; }
  std::string description() const override {
    return detail::concat("cpu (", pool_.size(), pool_.size() == 1 ? " thread)" : " threads)");
  }

  void correlate(const TensorView& w, std::span<const CarrierSpec> carriers, std::span<CorrelateStats> out) override {
    backend_check::host_float_view(w, "correlate");
    backend_check::carriers(carriers, out.size());
    const int64_t numel = w.numel();
    std::vector<std::size_t> offsets(carriers.size() + 1, 0);
    for (std::size_t k = 0; k < carriers.size(); ++k) offsets[k + 1] = offsets[k] + carriers[k].num_bits;

    const int64_t blocks = num_blocks(numel);
    const int64_t tasks = (blocks + kBlocksPerTask - 1) / kBlocksPerTask;
    std::vector<RangeOut> per_worker(static_cast<std::size_t>(pool_.size()));
    for (auto& r : per_worker) r.sums.assign(offsets.back(), 0.0);
    auto fn = pick_correlate(w.dtype);
    pool_.parallel_for(tasks, [&](int worker, int64_t t) {
      const int64_t g0 = t * kBlocksPerTask, g1 = std::min(blocks, g0 + kBlocksPerTask);
      fn(w.data, numel, g0, g1, carriers, per_worker[static_cast<std::size_t>(worker)], offsets);
    });
    for (std::size_t k = 0; k < carriers.size(); ++k) {
      CorrelateStats& s = out[k];
      s.bit_sums.assign(carriers[k].num_bits, 0.0);
      s.sum_sq = 0;
      s.nonfinite = 0;
      for (const auto& r : per_worker) {
        for (uint32_t b = 0; b < carriers[k].num_bits; ++b) s.bit_sums[b] += r.sums[offsets[k] + b];
        s.sum_sq += r.sum_sq;
        s.nonfinite += r.nonfinite;
      }
    }
  }

  AddStats carrier_add(const TensorView& src, const TensorView& dst, const CarrierSpec& c,
                       std::span<const float> delta) override {
    backend_check::host_float_view(src, "carrier_add source");
    backend_check::host_float_view(dst, "carrier_add destination");
    backend_check::add_args(src, dst, c, delta);
    const int64_t numel = src.numel();
    const int64_t blocks = num_blocks(numel);
    const int64_t tasks = (blocks + kBlocksPerTask - 1) / kBlocksPerTask;
    std::vector<RangeOut> per_worker(static_cast<std::size_t>(pool_.size()));
    for (auto& r : per_worker) r.sums.assign(1, 0.0);
    auto fn = pick_add(src.dtype);
    pool_.parallel_for(tasks, [&](int worker, int64_t t) {
      const int64_t g0 = t * kBlocksPerTask, g1 = std::min(blocks, g0 + kBlocksPerTask);
      fn(src.data, dst.data, numel, g0, g1, c, delta.data(), per_worker[static_cast<std::size_t>(worker)]);
    });
    AddStats s;
    for (const auto& r : per_worker) {
      s.sum_sq_src += r.sum_sq;
      s.sum_sq_diff += r.sums[0];
      s.nonfinite += r.nonfinite;
    }
    return s;
  }

  void screen(const TensorView& w, const ScreenSample& sample, std::span<const CarrierSpec> carriers,
              std::span<const uint64_t> payload_bits, ScreenSums& out) override {
    backend_check::host_float_view(w, "screen");
    const backend_check::ScreenRange range = backend_check::begin_screen(w, sample, carriers, payload_bits, out);
    if (range.count == 0) return;
    const int64_t numel = range.numel, count = range.count, first = range.first;
    const auto K = static_cast<int64_t>(carriers.size());

    const int64_t padded = screen_padded(K);
    const uint32_t L = K > 0 ? carriers[0].num_bits : 1;
    const auto words = static_cast<uint32_t>(2 * ((L + 63) / 64));
    std::vector<cpu::Keys8> keys8(static_cast<std::size_t>(padded / 8));
    std::vector<uint32_t> offsets(static_cast<std::size_t>(padded)), base, pay;
    screen_key_set(carriers, 0, padded, keys8.data(), offsets.data());
    screen_payload(payload_bits, K, padded, words, pay, base);

    const int64_t chunks = std::clamp<int64_t>(count / 16, 1, kScreenMaxChunks);
    // Key tiles: a few tasks per thread in all (each tile quantizes the blocks and builds their
    // tables again, so not many more), at most kScreenKeyTile keys each. A key's sums do not
    // depend on its tile, so this may follow the thread count.
    const int64_t want = std::clamp<int64_t>((K + 255) / 256, 1, (2 * pool_.size() + chunks - 1) / chunks);
    const int64_t tile = std::min(kScreenKeyTile, std::max<int64_t>(32, (K + 32 * want - 1) / (32 * want) * 32));
    const int64_t tiles = std::max<int64_t>(1, (K + tile - 1) / tile);
    std::vector<double> partial(static_cast<std::size_t>(chunks * K), 0.0);
    std::vector<ScreenChunk> stats(static_cast<std::size_t>(chunks));
    const ScreenFn fn = pick_screen(w.dtype);
    pool_.parallel_for(chunks * tiles, [&](int, int64_t task) {
      const int64_t chunk = task / tiles, tile_index = task % tiles;
      const int64_t i0 = count * chunk / chunks, i1 = count * (chunk + 1) / chunks;
      const cpu::ScreenKeys keys{keys8.data(), offsets.data(), pay.data(), base.data(), words, L,
                                 tile_index * tile, std::min(K, (tile_index + 1) * tile)};
      fn(w.data, numel, first, sample.stride, i0, i1, keys, partial.data() + chunk * K + keys.k0, tile_index == 0,
         stats[static_cast<std::size_t>(chunk)]);
    });
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t k = 0; k < K; ++k) out.t[static_cast<std::size_t>(k)] += partial[static_cast<std::size_t>(c * K + k)];
      const ScreenChunk& s = stats[static_cast<std::size_t>(c)];
      out.sum_sq += s.ssq;
      out.elements += s.elements;
      out.nonfinite += s.nonfinite;
    }
  }

  void screen_many(std::span<const ScreenItem> items, std::size_t num_keys, std::span<const CarrierSpec> carriers,
                   std::span<const uint64_t> payload_bits, std::span<ScreenSums> out) override {
    backend_check::screen_many_args(items, num_keys, carriers, out);
    const auto K = static_cast<int64_t>(num_keys);
    if (K == 0) DIDMARK_EXPECTS(payload_bits.empty(), invalid_argument, "screen: ", payload_bits.size(),
                                " payload words for 0 keys");

    // Pieces: the chunks screen() cuts each item's sample into (same rule), so that every piece's
    // per-key partial sum, and the order they are added in, is screen()'s: bit for bit the same.
    struct Piece {
      std::size_t item;
      int64_t i0, i1;
    };
    std::vector<Piece> pieces;
    std::vector<std::size_t> first_piece(items.size() + 1, 0);
    std::vector<backend_check::ScreenRange> ranges(items.size());
    std::vector<char> checked(K > 0 ? carriers.size() / num_keys : 0, 0);
    int64_t total_groups = 0;
    uint32_t L = 1;
    bool have_l = false;
    for (std::size_t i = 0; i < items.size(); ++i) {
      backend_check::host_float_view(items[i].view, "screen");
      ranges[i] = backend_check::begin_screen_sample(items[i].view, items[i].sample, num_keys, out[i]);
      first_piece[i] = pieces.size();
      const int64_t count = ranges[i].count;
      if (count == 0) continue;
      const int64_t chunks = std::clamp<int64_t>(count / 16, 1, kScreenMaxChunks);
      for (int64_t c = 0; c < chunks; ++c) pieces.push_back({i, count * c / chunks, count * (c + 1) / chunks});
      total_groups += count;
      if (K == 0 || checked[items[i].carrier_set]) continue;
      // Only the sets items use are read (a caller may leave the others unset), so only they are checked.
      const std::span<const CarrierSpec> cs = backend_check::screen_set(carriers, num_keys, items[i].carrier_set);
      if (!have_l) {
        backend_check::screen_args(items[i].sample, cs, payload_bits);
        L = cs[0].num_bits;
        have_l = true;
      }
      for (const CarrierSpec& c : cs)
        DIDMARK_EXPECTS(c.num_bits == L, invalid_argument, "screen: carriers of ", c.num_bits, " and ", L,
                        " payload bits in one call (all keys must carry payloads of one length)");
      checked[items[i].carrier_set] = 1;
    }
    first_piece[items.size()] = pieces.size();
    if (pieces.empty()) return;

    // The payload words once; each task writes its tile of a set's Philox words and bit offsets
    // into its worker's buffer when the set changes (a few microseconds against the hundreds its
    // blocks take), so no call holds the keys of every set at once.
    const int64_t padded = screen_padded(K);
    const auto words = static_cast<uint32_t>(2 * ((L + 63) / 64));
    std::vector<uint32_t> base, pay;
    screen_payload(payload_bits, K, padded, words, pay, base);
    struct WorkerKeys {
      std::vector<cpu::Keys8> keys8;
      std::vector<uint32_t> offsets;
    };
    std::vector<WorkerKeys> worker_keys(static_cast<std::size_t>(pool_.size()));

    // Tasks: key tiles (at most kScreenKeyTile keys, so a tile's accumulators and key words stay
    // in L2; each tile quantizes the blocks again, so as few as that allows) times runs of
    // consecutive pieces of about equal size (no extra work, so enough of them to balance the
    // pool). Every (piece, key) sum is written by exactly one task.
    const int64_t tiles = std::max<int64_t>(1, (K + kScreenKeyTile - 1) / kScreenKeyTile);
    const int64_t tile = std::max<int64_t>(32, (K + 32 * tiles - 1) / (32 * tiles) * 32);
    const int64_t runs = std::clamp<int64_t>((8 * pool_.size() + tiles - 1) / tiles, 1,
                                             static_cast<int64_t>(pieces.size()));
    std::vector<std::size_t> run_start{0};
    {
      int64_t cum = 0;
      for (std::size_t p = 0; p < pieces.size() && static_cast<int64_t>(run_start.size()) < runs; ++p) {
        cum += pieces[p].i1 - pieces[p].i0;
        if (cum * runs >= total_groups * static_cast<int64_t>(run_start.size())) run_start.push_back(p + 1);
      }
      run_start.resize(static_cast<std::size_t>(runs) + 1, pieces.size());
    }
    // An item's first piece adds straight into its result (zeroed above): 0 + x is x, as the
    // zeroed chunk sum screen() adds first. Later pieces get rows of their own, added in order.
    const std::size_t P = pieces.size();
    std::vector<std::size_t> row(P, SIZE_MAX);
    std::size_t rows = 0;
    for (std::size_t p = 0; p < P; ++p)
      if (p != first_piece[pieces[p].item]) row[p] = rows++;
    std::unique_ptr<double[]> partial(new double[rows * static_cast<std::size_t>(K)]);
    std::vector<ScreenChunk> stats(P);
    pool_.parallel_for(runs * tiles, [&](int worker, int64_t task) {
      const int64_t run = task / tiles, tile_index = task % tiles;
      const int64_t k0 = tile_index * tile, k1 = std::min(K, (tile_index + 1) * tile);
      WorkerKeys& wk = worker_keys[static_cast<std::size_t>(worker)];
      if (wk.offsets.size() < static_cast<std::size_t>(padded)) {
        wk.keys8.resize(static_cast<std::size_t>(padded / 8));
        wk.offsets.resize(static_cast<std::size_t>(padded));
      }
      std::size_t keys_of = SIZE_MAX;  // the set whose keys [k0, k1) the buffer holds
      for (std::size_t p = run_start[static_cast<std::size_t>(run)]; p < run_start[static_cast<std::size_t>(run + 1)];
           ++p) {
        const Piece& pc = pieces[p];
        const ScreenItem& it = items[pc.item];
        if (K > 0 && it.carrier_set != keys_of) {
          screen_key_set(backend_check::screen_set(carriers, num_keys, it.carrier_set), k0,
                         std::min(padded, k0 + (k1 - k0 + 31) / 32 * 32), wk.keys8.data(), wk.offsets.data());
          keys_of = it.carrier_set;
        }
        const cpu::ScreenKeys keys{wk.keys8.data(), wk.offsets.data(), pay.data(), base.data(), words, L, k0, k1};
        double* acc;
        if (row[p] == SIZE_MAX) {
          acc = out[pc.item].t.data() + k0;
        } else {
          acc = partial.get() + row[p] * static_cast<std::size_t>(K) + k0;
          std::fill(acc, acc + (k1 > k0 ? k1 - k0 : 0), 0.0);
        }
        const backend_check::ScreenRange& r = ranges[pc.item];
        pick_screen(it.view.dtype)(it.view.data, r.numel, r.first, it.sample.stride, pc.i0, pc.i1, keys, acc,
                                   tile_index == 0, stats[p]);
      }
    });
    // Added in piece order, as screen() adds its chunks.
    for (std::size_t i = 0; i < items.size(); ++i) {
      ScreenSums& o = out[i];
      for (std::size_t p = first_piece[i]; p < first_piece[i + 1]; ++p) {
        if (row[p] != SIZE_MAX) {
          const double* part = partial.get() + row[p] * static_cast<std::size_t>(K);
          for (int64_t k = 0; k < K; ++k) o.t[static_cast<std::size_t>(k)] += part[k];
        }
        o.sum_sq += stats[p].ssq;
        o.elements += stats[p].elements;
        o.nonfinite += stats[p].nonfinite;
      }
    }
  }

  std::vector<double> sample(const TensorView& w, int64_t count) override {
    backend_check::host_float_view(w, "sample");
    return backend_detail::sample_host(w, count);
  }

  dataset::DatasetOps& dataset_ops() override {
    std::call_once(dataset_once_, [&] { dataset_ = dataset::make_cpu_dataset_ops(pool_); });
    return *dataset_;
  }
  attribution::AttributionOps& attribution_ops() override {
    std::call_once(attribution_once_, [&] { attribution_ = attribution::make_cpu_attribution_ops(pool_); });
    return *attribution_;
  }
  alignment::AlignmentOps& alignment_ops() override {
    std::call_once(alignment_once_, [&] { alignment_ = alignment::make_cpu_alignment_ops(pool_); });
    return *alignment_;
  }
  images::ImageOps& image_ops() override {
    std::call_once(image_once_, [&] { image_ = images::make_cpu_image_ops(pool_); });
    return *image_;
  }
  detail::ThreadPool& host_pool() override { return pool_; }
  const BackendOptions& options() const noexcept override { return options_; }

  void copy(const TensorView& src, const TensorView& dst) override {
    DIDMARK_EXPECTS(src.device == Device::cpu && dst.device == Device::cpu, invalid_argument,
                    "cpu backend: copy needs host views, got ", src.describe(), " -> ", dst.describe());
    backend_check::same_layout(src, dst, "copy");
    const std::size_t bytes = src.nbytes();
    constexpr std::size_t kChunk = std::size_t{8} << 20;
    const int64_t tasks = static_cast<int64_t>((bytes + kChunk - 1) / kChunk);
    auto* s = static_cast<const char*>(src.data);
    auto* d = static_cast<char*>(dst.data);
    if (s == d) return;
    pool_.parallel_for(tasks, [&](int, int64_t t) {
      const std::size_t off = static_cast<std::size_t>(t) * kChunk;
      std::memmove(d + off, s + off, std::min(kChunk, bytes - off));
    });
  }

 private:
  using CorrFn = void (*)(const void*, int64_t, int64_t, int64_t, std::span<const CarrierSpec>, RangeOut&,
                          const std::vector<std::size_t>&);
  using AddFn = void (*)(const void*, void*, int64_t, int64_t, int64_t, const CarrierSpec&, const float*, RangeOut&);

  static CorrFn pick_correlate(DType t) {
    switch (t) {
      case DType::f32: return &correlate_f32;
      case DType::f64: return &correlate_f64;
      case DType::f16: return &correlate_f16;
      case DType::bf16: return &correlate_bf16;
      default: DIDMARK_THROW(Errc::unsupported, "correlate: dtype ", dtype_name(t), " is not f32, f64, f16 or bf16");
    }
  }
  // Keys padded to whole groups of 32 (the padding repeats the last key and is never read back).
  static int64_t screen_padded(int64_t K) { return std::max<int64_t>(32, (K + 31) / 32 * 32); }

  /// Keys [ka, kb) of one carrier set as cpu::ScreenKeys reads them: Philox words per 8 keys and
  /// bit offsets (keys past the set's end repeat its last key).
  static void screen_key_set(std::span<const CarrierSpec> carriers, int64_t ka, int64_t kb, cpu::Keys8* keys8,
                             uint32_t* offsets) {
    const auto K = static_cast<int64_t>(carriers.size());
    for (int64_t k = ka; k < kb && K > 0; ++k) {
      const CarrierSpec& c = carriers[static_cast<std::size_t>(std::min(k, K - 1))];
      cpu::Keys8& k8 = keys8[k / 8];
      k8.kx[k % 8] = c.key.x;
      k8.ky[k % 8] = c.key.y;
      k8.sx[k % 8] = c.stream.x;
      k8.sy[k % 8] = c.stream.y;
      offsets[k] = c.bit_offset;
    }
  }

  /// The keys' payload bits as 32-bit words (`words` per padded key) and each key's first word.
  static void screen_payload(std::span<const uint64_t> payload_bits, int64_t K, int64_t padded, uint32_t words,
                             std::vector<uint32_t>& pay, std::vector<uint32_t>& base) {
    base.assign(static_cast<std::size_t>(padded), 0);
    pay.assign(static_cast<std::size_t>(padded) * words, 0);
    for (int64_t k = 0; k < padded && K > 0; ++k) {
      const auto src = static_cast<std::size_t>(std::min(k, K - 1));
      base[static_cast<std::size_t>(k)] = static_cast<uint32_t>(k) * words;
      for (uint32_t i = 0; i < words; ++i) {
        const uint64_t v = payload_bits[src * (words / 2) + i / 2];
        pay[static_cast<std::size_t>(k) * words + i] = static_cast<uint32_t>(i % 2 ? v >> 32 : v);
      }
    }
  }

  static ScreenFn pick_screen(DType t) {
    switch (t) {
      case DType::f32: return &screen_f32;
      case DType::f64: return &screen_f64;
      case DType::f16: return &screen_f16;
      case DType::bf16: return &screen_bf16;
      default: DIDMARK_THROW(Errc::unsupported, "screen: dtype ", dtype_name(t), " is not f32, f64, f16 or bf16");
    }
  }
  static AddFn pick_add(DType t) {
    switch (t) {
      case DType::f32: return &add_f32;
      case DType::f64: return &add_f64;
      case DType::f16: return &add_f16;
      case DType::bf16: return &add_bf16;
      default: DIDMARK_THROW(Errc::unsupported, "carrier_add: dtype ", dtype_name(t), " is not f32, f64, f16 or bf16");
    }
  }

  BackendOptions options_;
  detail::ThreadPool pool_;
  std::once_flag dataset_once_, attribution_once_, alignment_once_, image_once_;
  std::unique_ptr<images::ImageOps> image_;
  std::unique_ptr<dataset::DatasetOps> dataset_;
  std::unique_ptr<attribution::AttributionOps> attribution_;
  std::unique_ptr<alignment::AlignmentOps> alignment_;
};

}  // namespace

std::shared_ptr<Backend> make_cpu_backend(const BackendOptions& options) {
  DIDMARK_EXPECTS(options.threads >= 0, invalid_argument, "threads must be 0 (default) or positive, got ",
                  options.threads);
  return std::make_shared<CpuBackend>(options);
}

}  // namespace didmark
