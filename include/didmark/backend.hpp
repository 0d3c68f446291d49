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

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
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

/// Result of Backend::carrier_add.
struct AddStats {
  double sum_sq_src = 0.0;   ///< sum of src_j^2 (finite elements)
  double sum_sq_diff = 0.0;  ///< sum of (dst_j - src_j)^2 as stored, after rounding to dst's type
  int64_t nonfinite = 0;     ///< NaN / Inf elements in src (written through unchanged)
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

  /// A deterministic sample of `count` elements as f64, element floor(i * numel / count)
  /// for i < count (all elements when count >= numel). Same values on every backend.
  virtual std::vector<double> sample(const TensorView& w, int64_t count) = 0;

  /// Copy src to dst (same dtype and element count; both contiguous).
  virtual void copy(const TensorView& src, const TensorView& dst) = 0;

  /// Wait for outstanding work (no-op on the CPU).
  virtual void synchronize() {}
};

/// True when this build has the CUDA backend and a usable GPU is present.
bool cuda_available() noexcept;
/// True when this build was compiled with the CUDA backend.
bool cuda_compiled() noexcept;

/// The CPU backend; `threads` = 0 uses DIDMARK_THREADS or the hardware concurrency.
std::shared_ptr<Backend> make_cpu_backend(int threads = 0);
/// The CUDA backend on `device`. Throws Errc::unsupported naming the CMake option when CUDA
/// was not built, Errc::device_failure when no usable GPU is present.
std::shared_ptr<Backend> make_cuda_backend(int device = 0);

/// Pick a backend: `want` if given, else the DIDMARK_DEVICE environment variable
/// ("cpu" or "cuda"), else the GPU when one is present and the CPU otherwise.
std::shared_ptr<Backend> make_backend(std::optional<Device> want = std::nullopt);

/// A process-wide backend made by make_backend() on first use.
Backend& default_backend();

}  // namespace didmark
