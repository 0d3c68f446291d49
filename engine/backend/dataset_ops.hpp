#pragma once
// The dataset op table: the few passes the dataset marks need. Implemented once on the CPU
// (engine/backend/cpu/dataset_cpu.cpp, loops over detail/dataset_table.hpp and
// detail/dataset_array.hpp) and once on CUDA (engine/backend/cuda/dataset_cuda.cpp +
// kernels/dataset_*.cu, grid loops over the same formulas). The algorithms in
// engine/dataset get theirs from Backend::dataset_ops() and never ask which one it is.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/error.hpp"
#include "didmark/detail/carrier.hpp"
#include "didmark/detail/dataset_array.hpp"
#include "didmark/detail/dataset_table.hpp"

namespace didmark::detail {
class ThreadPool;
}

namespace didmark::dataset {

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
inline ElemType elem_type(DType t) {
  switch (t) {
    case DType::f32: return ElemType::f32;
    case DType::f64: return ElemType::f64;
    case DType::f16: return ElemType::f16;
    case DType::bf16: return ElemType::bf16;
    default: DIDMARK_THROW(Errc::unsupported, "dataset arrays: dtype ", dtype_name(t), " is not f32, f64, f16 or bf16");
  }
}

/// The CPU table, running on `pool` (the CPU backend's).
std::unique_ptr<DatasetOps> make_cpu_dataset_ops(detail::ThreadPool& pool);

}  // namespace didmark::dataset
