// Dataset marks on float arrays in memory (embeddings, features): numpy arrays or DLPack
// tensors, rows keyed by their ids so that subsets and shuffles still verify.
#include "bindings.hpp"
#include "common.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::python {
namespace {

// Row ids: None (the row index; the order must then be kept) or an int64 vector of N.
std::vector<int64_t> ids_of(const py::handle& ids, int64_t rows) {
  if (ids.is_none()) return {};
  const ArrayRef a = array_ref(ids, "ids", true);
  DIDMARK_ARRAY_EXPECTS(a.view.device == Device::cpu && a.view.dtype == DType::i64 && a.view.rank() == 1, "ids must be "
                        "a 1-D int64 host array, got ", a.view.describe());
  DIDMARK_EXPECTS(a.view.shape[0] == rows, invalid_argument, "ids has ", a.view.shape[0], " entries for ", rows, " rows");
  const auto* p = static_cast<const int64_t*>(a.view.data);
  return {p, p + rows};
}

ArrayOptions array_options(const std::optional<double>& strength, double min_cosine, double p_threshold) {
  ArrayOptions o;
  if (strength) o.strength = *strength;
  o.min_cosine = min_cosine;
  o.p_threshold = p_threshold;
  return o;
}

py::tuple embed_array_py(const py::handle& x, const py::handle& key, const py::handle& owner, const py::handle& ids,
                         const std::optional<double>& strength, double min_cosine, bool in_place,
                         const std::string& device) {
  const WatermarkKey k = key_of(key);
  std::string did;
  const Payload payload = payload_of(owner, key, did);
  const ArrayRef src = array_ref(x, "x", !in_place);
  DIDMARK_EXPECTS(src.view.rank() == 2, invalid_argument, "x must be rows x dim (2-D), got ", src.view.describe());
  const std::vector<int64_t> row_ids = ids_of(ids, src.view.shape[0]);
  const ArrayRef dst = in_place ? src : empty_like(src, "output");
  const std::string dev = device_for(device, {{"x", src.view}});
  ArrayEmbedReport r;
  {
    py::gil_scoped_release nogil;
    r = embed_array(src.view, dst.view, row_ids, k, payload, array_options(strength, min_cosine, 1e-9),
                    backend_for(dev));
  }
  py::dict d;
  d["did"] = did.empty() ? py::object(py::none()) : py::object(py::str(did));
  d["rows"] = r.rows;
  d["dim"] = r.dim;
  d["rows_marked"] = r.rows_marked;
  d["rows_skipped"] = r.rows_skipped;
  d["relative_change"] = r.relative_change;
  d["mean_row_change"] = r.mean_row_change;
  d["max_row_change"] = r.max_row_change;
  d["min_cosine"] = r.min_cosine;
  d["mean_cosine"] = r.mean_cosine;
  d["within_budget"] = r.within_budget;
  d["expected_z"] = r.expected_z;
  d["strength"] = r.strength;
  d["seconds"] = r.seconds;
  d["backend"] = r.backend;
  return py::make_tuple(in_place ? py::reinterpret_borrow<py::object>(x) : dst.owner, d);
}

py::dict verify_array_py(const py::handle& x, const py::handle& key, const py::handle& owner, const py::handle& ids,
                         double p_threshold, const std::string& device) {
  const WatermarkKey k = key_of(key);
  std::string did;
  const Claim claim{k, payload_of(owner, key, did)};
  const ArrayRef a = array_ref(x, "x", true);
  DIDMARK_EXPECTS(a.view.rank() == 2, invalid_argument, "x must be rows x dim (2-D), got ", a.view.describe());
  const std::vector<int64_t> row_ids = ids_of(ids, a.view.shape[0]);
  const std::string dev = device_for(device, {{"x", a.view}});
  std::vector<ArrayVerifyReport> rs;
  {
    py::gil_scoped_release nogil;
    rs = verify_array(a.view, row_ids, std::span(&claim, 1), array_options(std::nullopt, 0.999, p_threshold),
                      backend_for(dev));
  }
  const ArrayVerifyReport& r = rs.at(0);
  py::dict d;
  d["did"] = did.empty() ? py::object(py::none()) : py::object(py::str(did));
  d["detected"] = r.detected;
  d["z"] = r.z;
  d["p_value"] = r.p_value;
  d["log10_p"] = r.log10_p;
  d["bit_errors"] = r.bit_errors;
  d["bits"] = r.bits;
  d["rows"] = r.rows;
  d["rows_skipped"] = r.rows_skipped;
  d["duplicate_rows"] = r.duplicate_rows;
  d["dim"] = r.dim;
  d["seconds"] = r.seconds;
  return d;
}

}  // namespace

void bind_dataset(py::module_& m) {
  using namespace py::literals;
  m.def("embed_array", &embed_array_py, "x"_a, "key"_a, "owner"_a = py::none(), py::kw_only(), "ids"_a = py::none(),
        "strength"_a = py::none(), "min_cosine"_a = 0.999, "in_place"_a = false, "device"_a = "auto",
        "embed_array(x, key, owner=None, *, ids=None, strength=None, min_cosine=0.999, in_place=False, "
        "device='auto') -> (marked, report)\n\n"
        "Mark the rows of an N x D float array (embeddings, features: float64/32/16 numpy arrays or torch "
        "tensors, bfloat16 too, CPU or CUDA) as `didmark embed X.npy` does. `ids` (int64, one per row) keys "
        "each row so that subsets and shuffles still verify; None keys rows by index (keep the order). "
        "strength: per-row relative change (default 0.03). Returns a new array of the same kind (the input "
        "is untouched unless in_place=True) and the report.");
  m.def("verify_array", &verify_array_py, "x"_a, "key"_a, "owner"_a = py::none(), py::kw_only(),
        "ids"_a = py::none(), "p_threshold"_a = 1e-9, "device"_a = "auto",
        "verify_array(x, key, owner=None, *, ids=None, p_threshold=1e-9, device='auto') -> dict\n\n"
        "Blind verification of (key, owner) in the rows of an N x D array, read in place: did, detected, z, "
        "p_value, log10_p, bit_errors, bits, rows, rows_skipped, duplicate_rows, dim, seconds.");
}

}  // namespace didmark::python
