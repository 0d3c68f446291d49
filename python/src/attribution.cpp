// Attribution over arrays: exact KNN-Shapley values, the keyed projection, TRAK scores.
#include "bindings.hpp"
#include "common.hpp"
#include "didmark/attribution.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark::python {
namespace {

// Host views only: the attribution entry points read host memory (a CUDA backend stages it).
ArrayRef host_array(const py::handle& h, std::string_view what) {
  ArrayRef a = array_ref(h, what, true);
  DIDMARK_ARRAY_EXPECTS(a.view.device == Device::cpu, what,
                        " is a GPU array; the attribution calls read host memory: pass .cpu() of it");
  return a;
}

py::tuple knn_shapley_arrays(const py::handle& train_x, const py::handle& train_y, const py::handle& test_x,
                             const py::handle& test_y, int k, const py::handle& contributors,
                             const std::string& device) {
  const ArrayRef x = host_array(train_x, "train_x"), y = host_array(train_y, "train_y");
  const ArrayRef q = host_array(test_x, "test_x"), yq = host_array(test_y, "test_y");
  std::optional<ArrayRef> c;
  std::optional<TensorView> cv;
  if (!contributors.is_none()) {
    c = host_array(contributors, "contributors");
    cv = c->view;
  }
  KnnShapleyOptions o;
  o.k = k;
  KnnShapleyReport r;
  {
    py::gil_scoped_release nogil;
    Backend& b = backend_for(device);
    r = knn_shapley(x.view, y.view, q.view, yq.view, o, cv, b);
  }
  py::array values = new_array(DType::f64, {static_cast<int64_t>(r.values.size())});
  std::copy(r.values.begin(), r.values.end(), static_cast<double*>(values.mutable_data()));
  py::dict totals;
  for (std::size_t i = 0; i < r.contributors.ids.size(); ++i)
    totals[py::int_(r.contributors.ids[i])] = r.contributors.totals[i];
  return py::make_tuple(values, totals);
}

Projection projection_of(int64_t k, uint64_t seed) {
  Projection p;
  p.k = k;
  p.seed = seed;
  return p;
}

py::array project_arrays(const py::handle& grads, int64_t k, uint64_t seed, const std::string& dtype,
                         int64_t feature_tile, const std::string& device) {
  const ArrayRef g = host_array(grads, "grads");
  DIDMARK_EXPECTS(dtype == "float32" || dtype == "float64", invalid_argument, "dtype must be 'float32' or 'float64', not '",
                  dtype, "'");
  DIDMARK_EXPECTS(g.view.rank() == 2, invalid_argument, "grads must be rows x features (2-D), got ", g.view.describe());
  const DType out_dtype = dtype == "float32" ? DType::f32 : DType::f64;
  py::array out = new_array(out_dtype, {g.view.shape[0], k});
  const TensorView ov = view_of(out, "output");
  ProjectOptions o;
  o.feature_tile = feature_tile;
  {
    py::gil_scoped_release nogil;
    project(g.view, projection_of(k, seed), ov, o, backend_for(device));
  }
  return out;
}

py::array rademacher_rows_array(int64_t k, uint64_t seed, int64_t row0, int64_t rows, const std::string& device) {
  std::vector<float> r;
  {
    py::gil_scoped_release nogil;
    r = rademacher_rows(projection_of(k, seed), row0, rows, backend_for(device));
  }
  py::array out = new_array(DType::f32, {rows, k});
  std::copy(r.begin(), r.end(), static_cast<float*>(out.mutable_data()));
  return out;
}

py::dict trak_arrays(const py::handle& train, const py::handle& queries, int64_t k, uint64_t seed, double ridge,
                     const std::optional<double>& lambda, const py::handle& train_weights,
                     const py::handle& contributors, const py::handle& scores, bool overwrite, int64_t train_tile,
                     int64_t query_tile, const std::string& device) {
  const ArrayRef g = host_array(train, "train"), q = host_array(queries, "queries");
  std::optional<ArrayRef> w, c;
  GradientCheckpoint cp{g.view, q.view, std::nullopt};
  if (!train_weights.is_none()) {
    w = host_array(train_weights, "train_weights");
    cp.train_weights = w->view;
  }
  std::optional<TensorView> cv;
  if (!contributors.is_none()) {
    c = host_array(contributors, "contributors");
    cv = c->view;
  }
  TrakOptions o;
  o.projection = projection_of(k, seed);
  o.ridge = ridge;
  o.lambda = lambda;
  o.train_tile = train_tile;
  o.query_tile = query_tile;
  DIDMARK_EXPECTS(g.view.rank() == 2 && q.view.rank() == 2, invalid_argument,
                  "train and queries must be rows x features (2-D)");
  std::optional<NpyScoreWriter> writer;
  std::string path;
  if (!scores.is_none()) {
    path = path_of(scores);
    writer.emplace(path, q.view.shape[0], g.view.shape[0], overwrite);
  }
  TrakReport r;
  {
    py::gil_scoped_release nogil;
    r = trak(std::span(&cp, 1), o, cv, writer ? writer->sink() : ScoreSink{}, backend_for(device));
    if (writer) writer->commit();
  }
  py::array values = new_array(DType::f64, {static_cast<int64_t>(r.values.size())});
  std::copy(r.values.begin(), r.values.end(), static_cast<double*>(values.mutable_data()));
  py::dict totals;
  for (std::size_t i = 0; i < r.contributors.ids.size(); ++i)
    totals[py::int_(r.contributors.ids[i])] = r.contributors.totals[i];
  py::dict d;
  d["values"] = values;
  d["contributors"] = totals;
  d["train"] = r.train;
  d["queries"] = r.queries;
  d["k"] = r.k;
  d["lambda"] = r.lambdas.empty() ? 0.0 : r.lambdas.front();
  d["scores"] = path.empty() ? py::object(py::none()) : py::object(py::str(path));
  d["project_seconds"] = r.project_seconds;
  d["seconds"] = r.seconds;
  d["backend"] = r.backend;
  return d;
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
        "contributors). Ties in distance go to the smaller row index (docs/attribution.md). Arrays are numpy "
        "arrays or CPU tensors (DLPack), read in place.");
  m.def("project", &project_arrays, "grads"_a, py::kw_only(), "k"_a = 2048, "seed"_a = 0, "dtype"_a = "float32",
        "feature_tile"_a = 0, "device"_a = "auto",
        "project(grads, *, k=2048, seed=0, dtype='float32', feature_tile=0, device='auto') -> array\n\n"
        "grads (rows x p; float64/32/16 numpy array or CPU tensor, bfloat16 tensors too) times the keyed "
        "Rademacher projection R (p x k, entries +-1/sqrt(k), a pure function of (seed, i, j), generated in "
        "tiles and never stored): a new rows x k numpy array. The same on every backend and tiling.");
  m.def("rademacher_rows", &rademacher_rows_array, "k"_a, "seed"_a, "row0"_a, "rows"_a, py::kw_only(),
        "device"_a = "auto",
        "rademacher_rows(k, seed, row0, rows, *, device='auto') -> float32 array (rows x k)\n\n"
        "Rows [row0, row0 + rows) of the projection R that project() uses: for tests and inspection.");
  m.def("trak_arrays", &trak_arrays, "train"_a, "queries"_a, py::kw_only(), "k"_a = 2048, "seed"_a = 0,
        "ridge"_a = 1e-6, "lambda_"_a = py::none(), "train_weights"_a = py::none(), "contributors"_a = py::none(),
        "scores"_a = py::none(), "overwrite"_a = false, "train_tile"_a = 0, "query_tile"_a = 0, "device"_a = "auto",
        "trak_arrays(train, queries, *, k=2048, seed=0, ridge=1e-6, lambda_=None, train_weights=None, "
        "contributors=None, scores=None, overwrite=False, train_tile=0, query_tile=0, device='auto') -> dict\n\n"
        "TRAK-style scores from per-example gradients already in memory (N x p and M x p), as `didmark "
        "attribute trak`: S = Psi (Phi^T Phi + lambda I)^-1 Phi^T diag(w) with Phi = train R, Psi = queries R. "
        "Returns {values (per training row, mean over queries), contributors, train, queries, k, lambda, "
        "scores, project_seconds, seconds, backend}; with scores=PATH, S is written tile by tile to an f32 "
        ".npy of shape (queries, train). For a torch model, see didmark.trak().");
}

}  // namespace didmark::python
