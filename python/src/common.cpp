#include "common.hpp"

#include <algorithm>
#include <map>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::python {

void bind_errors(py::module_& m) {
  // The class lives as long as the interpreter: the module keeps a reference, and so does
  // this handle (never released, so no destructor runs after Python has shut down).
  static PyObject* error_type = nullptr;
  const py::object base = py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
  error_type = PyErr_NewExceptionWithDoc(
      "didmark.Error",
      "A didmark::Error from the library. str(e) is the C++ message; e.code is its kind "
      "('invalid_argument', 'not_found', 'unsupported', 'corrupt_input', 'device_failure', "
      "'io_error', 'permission', 'internal'); e.where is the C++ throw site.",
      base.ptr(), nullptr);
  if (error_type == nullptr) throw py::error_already_set();
  m.add_object("Error", py::handle(error_type));

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      py::object err = py::reinterpret_borrow<py::object>(error_type)(e.what());
      err.attr("code") = std::string(errc_name(e.code()));
      err.attr("where") = e.where();
      PyErr_SetObject(error_type, err.ptr());
    }
  });
}

Backend& backend_for(const std::string& device) {
  // One backend per name for the life of the process, deliberately never destroyed: a CUDA
  // backend torn down by static destructors after the driver has unloaded would crash at exit.
  static std::mutex guard;
  static auto* made = new std::map<std::string, std::shared_ptr<Backend>>();
  std::lock_guard lock(guard);
  auto it = made->find(device);
  if (it != made->end()) return *it->second;
  DIDMARK_EXPECTS(device == "auto" || device == "cpu" || device == "cuda", invalid_argument, "device '", device,
                  "' is not one of auto, cpu, cuda");
  auto b = make_backend(device, "device");
  return *made->emplace(device, std::move(b)).first->second;
}

py::object from_json(const std::string& text) { return py::module_::import("json").attr("loads")(text); }

DType dtype_of(const py::dtype& dt, std::string_view what) {
  // Through Python attributes: pybind11 2.10 reads these from the descriptor struct, whose
  // layout changed in NumPy 2.
  const char kind = dt.attr("kind").cast<std::string>().at(0);
  const auto size = dt.attr("itemsize").cast<py::ssize_t>();
  if (kind == 'f' && size == 8) return DType::f64;
  if (kind == 'f' && size == 4) return DType::f32;
  if (kind == 'f' && size == 2) return DType::f16;
  if (kind == 'i' && size == 8) return DType::i64;
  if (kind == 'i' && size == 4) return DType::i32;
  if (kind == 'i' && size == 2) return DType::i16;
  if (kind == 'i' && size == 1) return DType::i8;
  if (kind == 'u' && size == 1) return DType::u8;
  if (kind == 'b') return DType::boolean;
  DIDMARK_THROW(Errc::invalid_argument, what, " has numpy dtype ", str_of(dt),
                ", which didmark does not take: use float64, float32 or float16 (integer and bool arrays for "
                "labels and ids; bfloat16 has no numpy dtype)");
}

TensorView view_of(const py::array& a, std::string_view what) {
  const DType dtype = dtype_of(a.dtype(), what);
  DIDMARK_EXPECTS(a.dtype().attr("isnative").cast<bool>(), invalid_argument, what,
                  " is not in native byte order; pass array.astype(array.dtype.newbyteorder('='))");
  DIDMARK_EXPECTS((a.flags() & py::array::c_style) != 0, invalid_argument, what,
                  " is not C-contiguous; pass numpy.ascontiguousarray(...) of it");
  std::vector<int64_t> shape(static_cast<std::size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) shape[static_cast<std::size_t>(i)] = a.shape(i);
  // Read-only arrays are fine: the views that the library writes through are new arrays.
  return TensorView::contiguous(const_cast<void*>(a.data()), dtype, std::move(shape));
}

py::array new_array(DType dtype, const std::vector<int64_t>& shape) {
  // numpy.empty rather than pybind11's array constructors: those compute strides from the
  // descriptor struct, whose layout changed in NumPy 2.
  const char* name = nullptr;
  switch (dtype) {
    case DType::f64: name = "float64"; break;
    case DType::f32: name = "float32"; break;
    case DType::f16: name = "float16"; break;
    case DType::i64: name = "int64"; break;
    case DType::i32: name = "int32"; break;
    case DType::i16: name = "int16"; break;
    case DType::i8: name = "int8"; break;
    case DType::u8: name = "uint8"; break;
    case DType::boolean: name = "bool"; break;
    default: DIDMARK_THROW(Errc::internal, "no numpy dtype for ", dtype_name(dtype));
  }
  return py::module_::import("numpy").attr("empty")(py::cast(shape), name).cast<py::array>();
}

WatermarkKey key_of(const py::handle& key) {
  if (py::isinstance<Identity>(key)) return key.cast<const Identity&>().watermark_key();
  if (py::isinstance<py::bytes>(key) || py::isinstance<py::bytearray>(key)) {
    const std::string raw = py::isinstance<py::bytes>(key) ? std::string(key.cast<py::bytes>())
                                                          : std::string(key.cast<py::bytearray>());
    return WatermarkKey::from_bytes(std::span(reinterpret_cast<const uint8_t*>(raw.data()), raw.size()));
  }
  if (py::isinstance<py::str>(key)) return WatermarkKey::from_hex(key.cast<std::string>());
  DIDMARK_THROW(Errc::invalid_argument, "key must be 32 bytes, 64 hex digits or an Identity, not ",
                str_of(py::type::handle_of(key).attr("__name__")));
}

Payload payload_of(const py::handle& owner, const py::handle& key, std::string& did) {
  did.clear();
  if (owner.is_none()) {
    DIDMARK_EXPECTS(py::isinstance<Identity>(key), invalid_argument,
                    "say whose mark: pass the owner's DID (or payload bits), or an Identity as the key");
    did = key.cast<const Identity&>().did();
    return did_codeword(did);
  }
  if (py::isinstance<py::str>(owner)) {
    did = parse_did(owner.cast<std::string>()).did;
    return did_codeword(did);
  }
  DIDMARK_EXPECTS(!py::isinstance<py::bytes>(owner), invalid_argument,
                  "the owner is a DID string or a sequence of 0/1 bits, not bytes");
  // Any sequence of bits: a list, a numpy array of 0/1 of any integer or bool dtype (not
  // floats, which the conversion below would truncate).
  const py::array given = py::array::ensure(owner);
  DIDMARK_EXPECTS(given && std::string("biu").find(given.dtype().attr("kind").cast<std::string>()) != std::string::npos,
                  invalid_argument, "the owner is a DID string or a sequence of 0/1 integers, not ",
                  str_of(py::repr(owner)).substr(0, 80));
  const py::array_t<int64_t, py::array::c_style | py::array::forcecast> bits(given);
  DIDMARK_EXPECTS(bits.ndim() == 1, invalid_argument, "payload bits must be one-dimensional, got ", bits.ndim(),
                  " dimensions");
  std::vector<uint8_t> out(static_cast<std::size_t>(bits.size()));
  for (py::ssize_t i = 0; i < bits.size(); ++i) {
    const int64_t b = bits.data()[i];
    DIDMARK_EXPECTS(b == 0 || b == 1, invalid_argument, "payload bit ", i, " is ", b, ", not 0 or 1");
    out[static_cast<std::size_t>(i)] = static_cast<uint8_t>(b);
  }
  return Payload::from_bits(std::move(out));
}

WatermarkOptions watermark_options(const std::string& scheme, const std::optional<double>& strength,
                                   const std::optional<double>& max_change, double p_threshold,
                                   const std::optional<std::string>& include,
                                   const std::optional<std::vector<std::string>>& names) {
  WatermarkOptions o;
  const auto s = parse_scheme(scheme);
  DIDMARK_EXPECTS(s.has_value(), invalid_argument, "scheme '", scheme, "' is not auto, spread-spectrum or stdm");
  o.scheme = *s;
  if (strength) o.set_strength(*strength);
  if (max_change) o.max_relative_change = *max_change;
  o.p_threshold = p_threshold;
  if (include) o.policy.include_regex = *include;
  if (names) o.policy.names = *names;
  return o;
}

std::string path_of(const py::handle& p) {
  // os.fsdecode takes str, bytes and os.PathLike, and gives str.
  return py::module_::import("os").attr("fsdecode")(p).cast<std::string>();
}

}  // namespace didmark::python
