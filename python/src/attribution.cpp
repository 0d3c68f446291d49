// Exact KNN-Shapley values over numpy arrays.
#include "bindings.hpp"
#include "common.hpp"
#include "didmark/attribution.hpp"
#include "didmark/error.hpp"

namespace didmark::python {
namespace {

// numpy arrays pass as they are (no copy); lists and other array-likes are converted.
py::array array_of(const py::handle& h, std::string_view what) {
  py::array a = py::array::ensure(h);
  DIDMARK_EXPECTS(a, invalid_argument, what, " is not an array");
  return a;
}

py::tuple knn_shapley_arrays(const py::handle& train_x, const py::handle& train_y, const py::handle& test_x,
                             const py::handle& test_y, int k, const py::handle& contributors,
                             const std::string& device) {
  const py::array x = array_of(train_x, "train_x"), y = array_of(train_y, "train_y");
  const py::array q = array_of(test_x, "test_x"), yq = array_of(test_y, "test_y");
  const TensorView xv = view_of(x, "train_x"), yv = view_of(y, "train_y");
  const TensorView qv = view_of(q, "test_x"), yqv = view_of(yq, "test_y");
  py::array c;
  std::optional<TensorView> cv;
  if (!contributors.is_none()) {
    c = array_of(contributors, "contributors");
    cv = view_of(c, "contributors");
  }
  KnnShapleyOptions o;
  o.k = k;
  KnnShapleyReport r;
  {
    py::gil_scoped_release nogil;
    Backend& b = backend_for(device);
    r = knn_shapley(xv, yv, qv, yqv, o, cv, b);
  }
  py::array values = new_array(DType::f64, {static_cast<int64_t>(r.values.size())});
  std::copy(r.values.begin(), r.values.end(), static_cast<double*>(values.mutable_data()));
  py::dict totals;
  for (std::size_t i = 0; i < r.contributors.ids.size(); ++i)
    totals[py::int_(r.contributors.ids[i])] = r.contributors.totals[i];
  return py::make_tuple(values, totals);
}

}  // namespace

void bind_attribution(py::module_& m) {
  using namespace py::literals;
  m.def("knn_shapley", &knn_shapley_arrays, "train_x"_a, "train_y"_a, "test_x"_a, "test_y"_a, py::kw_only(),
        "k"_a = 5, "contributors"_a = py::none(), "device"_a = "auto",
        "knn_shapley(train_x, train_y, test_x, test_y, *, k=5, contributors=None, device='auto') "
        "-> (values, totals)\n\n"
        "Exact KNN-Shapley values (Jia et al. 2019) of the N training rows for the K-NN classifier on "
        "the M queries: train_x N x D and test_x M x D (float64/32/16), labels of integer dtype (or "
        "whole-number floats), contributors an optional integer id per training row. Returns a float64 "
        "array of N values (the mean over queries) and {contributor id: summed value} ({} without "
        "contributors). Ties in distance go to the smaller row index (docs/attribution.md).");
}

}  // namespace didmark::python
