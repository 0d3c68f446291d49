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

/// What verification read of a suspect, kept for realignment (one of them is set).
struct SuspectData {
  const CheckpointReader* checkpoint = nullptr;
  const TensorView* array = nullptr;
  std::span<const int64_t> ids;
};

/// Verdicts for every kind, from the kind's report (the fields every kind shares first).
Verdict verdict_of(const Owner& o, const VerifyReport& r);
Verdict verdict_of(const Owner& o, const TableVerifyReport& r);
Verdict verdict_of(const Owner& o, const ArrayVerifyReport& r);

/// p_family of every verdict over the owners of the call, and detection by InputOptions::fwer.
void apply_family(FileVerdicts& fv, const InputOptions& o);

/// Images (engine/inputs/images.cpp): mark one image or every image of a folder; verify them.
void embed_images(const Owner& owner, const InputOptions& o, const InputWriteOptions& w, Backend& backend,
                  InputEmbedReport& r);
void verify_images(const std::filesystem::path& path, std::span<const Owner> owners, const InputOptions& o,
                   Backend& backend, FileVerdicts& out);

/// Replace the verdicts of owners that have a sketch with realigned ones (InputOptions::sketches).
void realign_verdicts(const SuspectData& suspect, std::span<const Owner> owners, const InputOptions& o,
                      Backend& backend, FileVerdicts& fv);

}  // namespace didmark::inputs_detail
