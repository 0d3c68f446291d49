#pragma once
// Pieces shared by verify_input and embed_input.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "didmark/inputs.hpp"
#include "didmark/io.hpp"

namespace didmark::inputs_detail {

/// The N x D view of a dataset array file; Errc::invalid_argument naming the file otherwise.
TensorView array_view(const NpyArray& a, const std::filesystem::path& path);

/// The row identities of an array of `rows` rows under `o` (empty: the row index).
std::vector<int64_t> row_ids(const std::filesystem::path& array, int64_t rows, const InputOptions& o);

}  // namespace didmark::inputs_detail
