#pragma once
// Shared helpers of the bindings: numpy arrays as TensorViews, backends by name, keys and
// payloads from Python values, and the didmark.Error exception class.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "didmark/backend.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark::python {

namespace py = pybind11;

/// Register didmark.Error and the translator that turns didmark::Error into it.
void bind_errors(py::module_& m);

/// The backend for "auto" (DIDMARK_DEVICE, else the GPU when present, else the CPU), "cpu"
/// or "cuda", made on first use and kept for the life of the process. Call without the GIL;
/// calls from several Python threads may run on it at once (backends are thread-safe).
Backend& backend_for(const std::string& device);

/// A JSON text of the library (verdicts, reports) as Python objects (json.loads).
py::object from_json(const std::string& text);

/// The didmark dtype of a numpy dtype; Errc::invalid_argument naming `what` when there is none.
DType dtype_of(const py::dtype& dt, std::string_view what);

/// A view of a numpy array's memory (no copy). The array must be C-contiguous and in native
/// byte order; `what` names it in errors. The caller keeps `a` alive while the view is used.
TensorView view_of(const py::array& a, std::string_view what);

/// A new C-contiguous numpy array of a dtype and shape (contents undefined). Made by
/// numpy.empty: pybind11 2.10's array constructors compute strides from the descriptor
/// struct, whose layout changed in NumPy 2, so they must not be used here.
py::array new_array(DType dtype, const std::vector<int64_t>& shape);

/// A watermark key from 32 bytes, 64 hex digits or an Identity.
WatermarkKey key_of(const py::handle& key);

/// The payload of an owner: a DID (its codeword) or a sequence of 0/1 bits. `did` receives
/// the DID (empty for raw bits). None takes the DID of `key` when it is an Identity.
Payload payload_of(const py::handle& owner, const py::handle& key, std::string& did);

/// The watermark options shared by embed and verify, as the CLI builds them from its flags.
WatermarkOptions watermark_options(const std::string& scheme, const std::optional<double>& strength,
                                   const std::optional<double>& max_change, double p_threshold,
                                   const std::optional<std::string>& include,
                                   const std::optional<std::vector<std::string>>& names);

/// str(h) as Python spells it.
inline std::string str_of(py::handle h) { return py::str(h).cast<std::string>(); }

/// A path from str or os.PathLike.
std::string path_of(const py::handle& p);

}  // namespace didmark::python
