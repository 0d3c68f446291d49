// Row identities of dataset arrays: --ids, the sidecar <stem>.ids.npy, or the row index.
#include "didmark/error.hpp"
#include "inputs/inputs_detail.hpp"

namespace didmark {

namespace fs = std::filesystem;

std::optional<fs::path> array_ids_path(const fs::path& path, const InputOptions& o) {
  DIDMARK_EXPECTS(o.ids.empty() || !o.fixed_order, invalid_argument, "--ids and --fixed-order exclude each other");
  if (!o.ids.empty()) return o.ids;
  if (o.fixed_order) return std::nullopt;
  fs::path sidecar = path;
  sidecar.replace_extension(".ids.npy");
  std::error_code ec;
  if (fs::is_regular_file(sidecar, ec)) return sidecar;
  DIDMARK_THROW(Errc::invalid_argument, "'", path.string(),
                "' is a dataset array and needs row identities: pass --ids FILE (a .npy of integer ids, one per "
                "row), put them beside it as '",
                sidecar.filename().string(),
                "', or pass --fixed-order (the row index, when rows are never reordered or dropped)");
}

namespace inputs_detail {

TensorView array_view(const NpyArray& a, const fs::path& path) {
  TensorView v = a.view();
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, "'", path.string(), "' holds ", v.describe(),
                  "; a dataset array must be N x D (rows x features)");
  return v;
}

std::vector<int64_t> row_ids(const fs::path& array, int64_t rows, const InputOptions& o) {
  const auto where = array_ids_path(array, o);
  if (!where) return {};
  return read_row_ids(*where, rows);
}

}  // namespace inputs_detail
}  // namespace didmark
