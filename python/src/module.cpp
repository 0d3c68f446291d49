// The extension module didmark._didmark; python/didmark/__init__.py re-exports it.
#include "bindings.hpp"
#include "common.hpp"

PYBIND11_MODULE(_didmark, m) {
  namespace dp = didmark::python;
  // Each docstring starts with its Python signature; pybind11's generated one would show
  // the C++ parameter types (handle, ...) instead.
  pybind11::options options;
  options.disable_function_signatures();
  m.doc() = "didmark bindings: DID watermarks in weights, KNN-Shapley attribution, exact royalty splits";
  m.attr("__version__") = DIDMARK_VERSION;
  m.def("cuda_available", &didmark::cuda_available, "cuda_available() -> bool\n\nTrue when this build has CUDA and a usable GPU is present.");
  m.def("cuda_compiled", &didmark::cuda_compiled, "cuda_compiled() -> bool\n\nTrue when this build was compiled with the CUDA backend.");
  m.def(
      "backend_description",
      [](const std::string& device) {
        pybind11::gil_scoped_release nogil;
        return dp::backend_for(device).description();
      },
      pybind11::arg("device") = "auto", "backend_description(device='auto') -> str\n\nThe backend `device` ('auto', 'cpu', 'cuda') selects, in words.");
  dp::bind_errors(m);
  dp::bind_identity(m);
  dp::bind_watermark(m);
  dp::bind_attribution(m);
  dp::bind_dataset(m);
  dp::bind_torch_files(m);
  dp::bind_royalty(m);
}
