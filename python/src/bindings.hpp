#pragma once
// One function per area adds its part of the module `didmark._didmark`.
#include <pybind11/pybind11.h>

namespace didmark::python {

void bind_identity(pybind11::module_& m);
void bind_watermark(pybind11::module_& m);
void bind_attribution(pybind11::module_& m);
void bind_dataset(pybind11::module_& m);
void bind_torch_files(pybind11::module_& m);
void bind_royalty(pybind11::module_& m);

}  // namespace didmark::python
