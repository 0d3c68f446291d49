#pragma once
// The dataset op table: the few passes the dataset marks need, implemented once on the CPU
// (engine/dataset/cpu_ops.cpp, loops over table_math.hpp / array_math.hpp) and once on CUDA
// (engine/backend/cuda/dataset_cuda.cpp + kernels/dataset_*.cu, grid loops over the same
// formulas). The algorithms in table.cpp / array.cpp pick one from the Backend's device()
// and never include CUDA headers.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dataset/array_math.hpp"
#include "dataset/table_math.hpp"
#include "didmark/backend.hpp"
#include "didmark/detail/carrier.hpp"

namespace didmark::dataset {

/// Per-row result of array_embed.
struct RowEmbedStats {
  double src_sq = 0;  ///< sum x^2 (fixed-order sum, the one alpha came from)
  double dst_sq = 0;  ///< sum y^2 as stored
  double dot = 0;     ///< sum x*y
  uint32_t status = 0;  ///< kRowOk, kRowZero or kRowNonFinite (those two are copied unchanged)
};
inline constexpr uint32_t kRowOk = 0, kRowZero = 1, kRowNonFinite = 2;

/// Per-claim sums of array_correlate.
struct ClaimSums {
  std::vector<double> bit_sums;    ///< per payload bit: sum over row blocks of (x . c) / ||x_r||
  std::vector<double> bit_weight;  ///< per payload bit: sum over row blocks of elements / D
  double t = 0;                    ///< sum over rows of (x_r . c_r s) / ||x_r||
  int64_t rows = 0;                ///< rows counted
  int64_t skipped = 0;             ///< rows left out: zero or non-finite
};

class DatasetOps {
 public:
  virtual ~DatasetOps() = default;
  virtual std::string name() const = 0;

  /// slots[i] = table_slot(spec, col_keys, ids[i]) for every row.
  virtual void table_select(std::span<const uint64_t> ids, const TableSpec& spec, std::span<const uint64_t> col_keys,
                            std::span<uint32_t> slots) = 0;

  /// Embed every row of src (R x D, contiguous) into dst (may alias): row r uses specs[r];
  /// bit_signs[b] is +1 or -1 for payload bit b. out has R entries.
  virtual void array_embed(const TensorView& src, const TensorView& dst, std::span<const detail::CarrierSpec> specs,
                           std::span<const float> bit_signs, double strength, std::span<RowEmbedStats> out) = 0;

  /// Correlate every row with K claims at once: specs is K x R (claim-major), bit_signs is
  /// K x L, use (R entries, or empty for all) says which rows count. out has K entries.
  virtual void array_correlate(const TensorView& x, std::span<const detail::CarrierSpec> specs,
                               std::span<const uint8_t> use, std::span<const float> bit_signs,
                               std::span<ClaimSums> out) = 0;
};

/// The array formulas' element type of a dtype; Errc::unsupported for non-float dtypes.
ElemType elem_type(DType t);

/// The CPU implementation (multithreaded; DIDMARK_THREADS or the hardware concurrency).
std::shared_ptr<DatasetOps> cpu_ops();
/// The CUDA implementation on `b` (the CUDA backend). Defined by engine/backend/cuda when
/// CUDA is built; otherwise throws Errc::unsupported.
std::shared_ptr<DatasetOps> make_cuda_ops(Backend& b);
/// cuda ops when b.device() is cuda, else the CPU ones.
std::shared_ptr<DatasetOps> ops_for(Backend& b);

/// Host-side parallel loop on the dataset CPU pool: fn(worker, task) for task < tasks.
void host_parallel_for(int64_t tasks, const std::function<void(int, int64_t)>& fn);
/// Workers of that pool.
int host_threads();

/// Tables at least this long go to the GPU when the backend is CUDA (shorter ones do not
/// pay for the transfer); the environment variable DIDMARK_TABLE_GPU_MIN_ROWS overrides it.
inline constexpr int64_t kTableGpuMinRows = 10'000'000;

}  // namespace didmark::dataset
