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
#include "didmark/error.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"
#include "dlpack.hpp"

namespace didmark::python {

namespace py = pybind11;

/// Raised in Python as didmark.ArrayTypeError, a subclass of both didmark.Error (code
/// 'invalid_argument') and TypeError: an array of a dtype, layout or kind that didmark does
/// not take (no hidden copy is ever made to fix it).
class ArrayTypeError : public Error {
 public:
  using Error::Error;
};

#define DIDMARK_ARRAY_EXPECTS(cond, ...)                                                                     \
  do {                                                                                                       \
    if (!(cond))                                                                                             \
      throw ::didmark::python::ArrayTypeError(::didmark::Errc::invalid_argument,                            \
                                              ::didmark::detail::concat(__VA_ARGS__),                       \
                                              ::didmark::detail::concat(__FILE__, ":", __LINE__));          \
  } while (0)

/// Register didmark.Error, didmark.ArrayTypeError and the translator that turns
/// didmark::Error into them.
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

/// An array from Python viewed in place, without a copy: a numpy array (buffer protocol), or
/// any object with __dlpack__ (torch tensors on the CPU or a GPU, bf16 included; CuPy, JAX).
/// Holds what keeps the memory alive for as long as the ArrayRef lives.
struct ArrayRef {
  TensorView view;
  py::object owner;  ///< the numpy array, or the object that exported the DLPack capsule
  std::shared_ptr<dl::DLManagedTensor> managed;  ///< released through its deleter
  bool numpy = false;
};

/// The ArrayRef of `obj`; `what` names it in errors. With `convert`, other array-likes
/// (lists) go through numpy.asarray (a copy); without, they raise ArrayTypeError. Non-
/// contiguous arrays, unsupported dtypes and devices raise ArrayTypeError. Tensors that
/// require grad are read through .detach() (same memory).
ArrayRef array_ref(const py::handle& obj, std::string_view what, bool convert = false);

/// A new C-contiguous array of the same kind as `like` (numpy, or a torch tensor on the same
/// device through new_empty) with `like`'s dtype and shape.
ArrayRef empty_like(const ArrayRef& like, std::string_view what);

/// The backend name to use for these views: CUDA views choose "cuda" under "auto"; they
/// raise Errc::unsupported in a build without CUDA and invalid_argument under "cpu".
std::string device_for(const std::string& device, const std::vector<std::pair<std::string, TensorView>>& views);

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
