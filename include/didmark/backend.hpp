#pragma once
/// \file backend.hpp
/// The narrow waist between the algorithms and the devices.
///
/// Watermarking, dataset marking and attribution are written once against this interface.
/// Two implementations exist: the CPU backend (always built, multithreaded) and the CUDA
/// backend (built when DIDMARK_CUDA found nvcc; chosen at run time when a GPU is present).
/// Each primitive is one fused pass over memory, so that a call runs at memory bandwidth;
/// the per-element formulas live in include/didmark/detail/ and are shared by both, which is
/// why CPU and GPU agree bit for bit on carriers and on embedded values.
///
/// Views on the host are accepted by every backend (the CUDA backend streams them through
/// the GPU in chunks); device views only by the CUDA backend. Views must be contiguous.
///
/// One backend per device owns that device's resources: the CPU backend one thread pool,
/// the CUDA backend one CudaResources (stream, library handles, scratch, pinned staging)
/// plus the process's CPU backend for its host-side work. Every capability gets its device
/// operations from here: the watermark primitives below, and one operation table per area
/// (dataset_ops(), attribution_ops(), ...; their interfaces live in engine/backend/ and are
/// internal to the library). Algorithms never ask which device they run on.
///
/// Thread safety: every member of a backend, and of the op tables it hands out, may be
/// called from several threads at once. The CPU backend runs one parallel loop at a time on
/// its pool (concurrent calls queue; the work inside one call is parallel). The CUDA backend
/// holds its device lock for the whole of each call, so scratch and staging buffers are never
/// shared by two calls. Long-lived objects an op table makes (a KNN session, a solver) are
/// used by one thread at a time each, and may run alongside any other call.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/detail/carrier.hpp"
#include "didmark/tensor.hpp"

namespace didmark {

/// Per-carrier result of Backend::correlate.
struct CorrelateStats {
  /// bit_sums[b] = sum over elements j assigned to bit b of w_j * c_j.
  std::vector<double> bit_sums;
  double sum_sq = 0.0;    ///< sum of w_j^2 over finite elements
  int64_t nonfinite = 0;  ///< count of NaN / Inf elements (they are left out of the sums)
};

/// A key-independent sample for Backend::screen: the tensor is cut into groups of
/// detail::kScreenGroup elements (8 carrier blocks) and group i is taken when
/// (i + phase) % stride == 0 (detail/screen_math.hpp).
struct ScreenSample {
  int64_t stride = 1;  ///< >= 1; 1 takes every group (the whole tensor)
  int64_t phase = 0;   ///< >= 0
};

/// Result of Backend::screen.
struct ScreenSums {
  /// Per key k: sum over the sampled blocks g of s_k(b_k(g)) * sum_e c_{k,e} x_e, where s_k is
  /// the key's payload sign (-1 for a 1 bit) and x the sampled values (screen_value).
  std::vector<double> t;
  double sum_sq = 0.0;    ///< sum of x^2 over the sampled finite elements
  int64_t elements = 0;   ///< sampled finite elements
  int64_t nonfinite = 0;  ///< sampled NaN / Inf elements (left out)
};

/// One tensor's part of a Backend::screen_many call: a view, its sample, and which of the
/// call's carrier sets its keys use (carriers are per tensor: the key is derived from its name).
struct ScreenItem {
  TensorView view;
  ScreenSample sample;
  std::size_t carrier_set = 0;  ///< keys' carriers at carriers[carrier_set * K, (carrier_set + 1) * K)
};

/// Result of Backend::carrier_add.
struct AddStats {
  double sum_sq_src = 0.0;   ///< sum of src_j^2 (finite elements)
  double sum_sq_diff = 0.0;  ///< sum of (dst_j - src_j)^2 as stored, after rounding to dst's type
  int64_t nonfinite = 0;     ///< NaN / Inf elements in src (written through unchanged)
};

namespace detail {
class ThreadPool;
}
namespace dataset {
class DatasetOps;
}
namespace attribution {
class AttributionOps;
}
namespace alignment {
class AlignmentOps;
}
namespace images {
class ImageOps;
}

/// Options fixed when a backend is made.
struct BackendOptions {
  /// CPU threads; 0 = DIDMARK_THREADS, else the hardware concurrency. The one way to set
  /// the thread count of everything the library does on the host.
  int threads = 0;
  /// CUDA device ordinal.
  int device = 0;
  /// CUDA: bytes of a host tensor streamed through the GPU per chunk (two pinned staging
  /// buffers of this size); 0 = 64 MiB. Tests set it small to cross many chunks.
  std::size_t staging_bytes = 0;
  /// CUDA: tables with at least this many rows select their marked rows on the GPU; shorter
  /// ones do not pay for the transfer and run on the host pool.
  int64_t table_gpu_min_rows = 10'000'000;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const noexcept = 0;
  /// "cpu (2 threads)", "cuda:0 NVIDIA H100 80GB HBM3 (sm_90)".
  virtual std::string description() const = 0;

  /// One pass over `w` for all `carriers` at once (w is read once however many there are):
  /// out[k] receives the per-bit sums of w * c_k, the sum of squares and the non-finite
  /// count. `out[k].bit_sums` is resized to carriers[k].num_bits.
  virtual void correlate(const TensorView& w, std::span<const detail::CarrierSpec> carriers,
                         std::span<CorrelateStats> out) = 0;

  /// The embed step, one pass: dst_j = round_to_dst_type(src_j + c_j * delta[b(j)]).
  /// `dst` may alias `src` (in place). 16-bit outputs use keyed stochastic rounding so that
  /// sub-ulp steps survive in expectation; f32 and f64 round to nearest. NaN/Inf elements
  /// are copied unchanged and counted. delta.size() must equal carrier.num_bits.
  virtual AddStats carrier_add(const TensorView& src, const TensorView& dst, const detail::CarrierSpec& carrier,
                               std::span<const float> delta) = 0;

  /// Registry screening, one pass over a sample of `w` for many keys at once: the
  /// known-payload correlation of every key (detail/screen_math.hpp). Every carrier must have
  /// the same num_bits L; key k's payload bits are packed in payload_bits[k * W .. (k+1) * W),
  /// W = ceil(L / 64), bit b at word b / 64, position b % 64. out.t is resized to the number of
  /// keys. The work per sampled block is one table build plus, per key, one Philox call and
  /// 16 lookups, so thousands of keys cost about what a few do on the ordinary correlate.
  virtual void screen(const TensorView& w, const ScreenSample& sample, std::span<const detail::CarrierSpec> carriers,
                      std::span<const uint64_t> payload_bits, ScreenSums& out) = 0;

  /// Backend::screen for many tensors in one call: out[i] is exactly what
  /// screen(items[i].view, items[i].sample, carriers of set items[i].carrier_set, payload_bits,
  /// out[i]) gives, bit for bit. `carriers` holds sets of `num_keys` carriers, set s at
  /// [s * num_keys, (s + 1) * num_keys); all share `payload_bits` (num_keys keys, as for screen)
  /// and one num_bits; sets no item uses are not read. A registry screen samples a few blocks of each of a checkpoint's
  /// tensors, so what a call costs besides its blocks (key setup, dispatch to the pool, load
  /// balance) is paid once for all of them rather than per tensor. The default loops over
  /// screen; the CPU backend overrides it.
  virtual void screen_many(std::span<const ScreenItem> items, std::size_t num_keys,
                           std::span<const detail::CarrierSpec> carriers, std::span<const uint64_t> payload_bits,
                           std::span<ScreenSums> out);

  /// A deterministic sample of `count` elements as f64, element floor(i * numel / count)
  /// for i < count (all elements when count >= numel). Same values on every backend.
  virtual std::vector<double> sample(const TensorView& w, int64_t count) = 0;

  /// Copy src to dst (same dtype and element count; both contiguous).
  virtual void copy(const TensorView& src, const TensorView& dst) = 0;

  /// Wait for outstanding work (no-op on the CPU).
  virtual void synchronize() {}

  // ---- Area operation tables (internal interfaces in engine/backend/<area>_ops.hpp) -------
  // Made on first use, owned by the backend, valid as long as it lives.

  /// Dataset passes: table row selection, row-keyed array embed and correlation.
  virtual dataset::DatasetOps& dataset_ops() = 0;
  /// Attribution primitives: KNN-Shapley sessions, keyed projections, Gram, solves, GEMM.
  virtual attribution::AttributionOps& attribution_ops() = 0;
  /// Alignment passes: per-axis sums and signatures, gathers, rotations (sketches, realignment).
  virtual alignment::AlignmentOps& alignment_ops() = 0;
  /// Image mark passes (engine/backend/image_ops.hpp): batched embed, tile fold, shift search.
  virtual images::ImageOps& image_ops() = 0;
  /// The host thread pool this backend's CPU work runs on (for the CUDA backend: the pool
  /// of the CPU backend it uses for host-side work).
  virtual detail::ThreadPool& host_pool() = 0;
  /// The options this backend was made with (threads resolved to the pool's size).
  virtual const BackendOptions& options() const noexcept = 0;
};

/// True when this build has the CUDA backend and a usable GPU is present.
bool cuda_available() noexcept;
/// True when this build was compiled with the CUDA backend.
bool cuda_compiled() noexcept;

/// The CPU backend. `threads` = 0 gives the process's shared CPU backend (made on first use
/// with DIDMARK_THREADS or the hardware concurrency), so the whole process runs on one pool;
/// another count makes a separate backend with a pool of its own (tests, benchmarks).
std::shared_ptr<Backend> make_cpu_backend(int threads = 0);
std::shared_ptr<Backend> make_cpu_backend(const BackendOptions& options);
/// The CUDA backend on `device`. Throws Errc::unsupported naming the CMake option when CUDA
/// was not built, Errc::device_failure when no usable GPU is present.
std::shared_ptr<Backend> make_cuda_backend(int device = 0);
std::shared_ptr<Backend> make_cuda_backend(const BackendOptions& options);

/// Pick a backend: `want` if given, else the DIDMARK_DEVICE environment variable
/// ("cpu" or "cuda"), else the GPU when one is present and the CPU otherwise.
std::shared_ptr<Backend> make_backend(std::optional<Device> want = std::nullopt);
/// The same from a device name as the CLI, server and Python take it: "" or "auto" (pick),
/// "cpu", "cuda" or "gpu". Errc::invalid_argument naming `what` for anything else.
std::shared_ptr<Backend> make_backend(std::string_view device, std::string_view what = "device");

/// True when DIDMARK_REQUIRE_CUDA=1: tests that need a GPU fail instead of skipping.
bool cuda_required() noexcept;

/// A process-wide backend made by make_backend() on first use.
Backend& default_backend();

}  // namespace didmark
