#pragma once
// Host launcher for the table-selection kernel (kernels/dataset_table.cu). Only
// engine/backend/cuda includes this. All pointers are device pointers; launches go on `stream`.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "didmark/detail/dataset_table.hpp"

namespace didmark::kernels {

/// slots[i] = dataset::table_slot(spec, col_keys, ids[i]) for i < n; col_keys holds
/// spec.num_columns (<= 256) keys.
void launch_table_select(const uint64_t* ids, int64_t n, const dataset::TableSpec& spec, const uint64_t* col_keys,
                         uint32_t* slots, cudaStream_t stream);

}  // namespace didmark::kernels
