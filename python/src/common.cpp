#include "common.hpp"

#include <algorithm>
#include <map>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::python {

void bind_errors(py::module_& m) {
  // The classes live as long as the interpreter: the module keeps a reference, and so do
  // these handles (never released, so no destructor runs after Python has shut down).
  static PyObject* error_type = nullptr;
  static PyObject* array_type = nullptr;
  const py::object base = py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
  error_type = PyErr_NewExceptionWithDoc(
      "didmark.Error",
      "A didmark::Error from the library. str(e) is the C++ message; e.code is its kind "
      "('invalid_argument', 'not_found', 'unsupported', 'corrupt_input', 'device_failure', "
      "'io_error', 'permission', 'internal'); e.where is the C++ throw site.",
      base.ptr(), nullptr);
  if (error_type == nullptr) throw py::error_already_set();
  m.add_object("Error", py::handle(error_type));
  const py::tuple bases = py::make_tuple(py::handle(error_type), py::handle(PyExc_TypeError));
  array_type = PyErr_NewExceptionWithDoc(
      "didmark.ArrayTypeError",
      "An array didmark does not take as it is (dtype, byte order, layout, kind): both a didmark.Error "
      "(code 'invalid_argument') and a TypeError. No hidden copy is made to fix it.",
      bases.ptr(), nullptr);
  if (array_type == nullptr) throw py::error_already_set();
  m.add_object("ArrayTypeError", py::handle(array_type));

  py::register_exception_translator([](std::exception_ptr p) {
    auto raise = [](PyObject* type, const Error& e) {
      py::object err = py::reinterpret_borrow<py::object>(type)(e.what());
      err.attr("code") = std::string(errc_name(e.code()));
      err.attr("where") = e.where();
      PyErr_SetObject(type, err.ptr());
    };
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ArrayTypeError& e) {
      raise(array_type, e);
    } catch (const Error& e) {
      raise(error_type, e);
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
  DIDMARK_ARRAY_EXPECTS(false, what, " has numpy dtype ", str_of(dt),
                        ", which didmark does not take: use float64, float32 or float16 (integer and bool arrays "
                        "for labels and ids; for bfloat16 pass a torch tensor)");
}

TensorView view_of(const py::array& a, std::string_view what) {
  const DType dtype = dtype_of(a.dtype(), what);
  DIDMARK_ARRAY_EXPECTS(a.dtype().attr("isnative").cast<bool>(), what,
                        " is not in native byte order; pass array.astype(array.dtype.newbyteorder('='))");
  DIDMARK_ARRAY_EXPECTS((a.flags() & py::array::c_style) != 0, what,
                        " is not C-contiguous; pass numpy.ascontiguousarray(...) of it");
  std::vector<int64_t> shape(static_cast<std::size_t>(a.ndim()));
  for (py::ssize_t i = 0; i < a.ndim(); ++i) shape[static_cast<std::size_t>(i)] = a.shape(i);
  // Read-only arrays are fine: the views that the library writes through are new arrays.
  return TensorView::contiguous(const_cast<void*>(a.data()), dtype, std::move(shape));
}

namespace {

std::optional<DType> dl_dtype(const dl::DLDataType& t) {
  if (t.lanes != 1) return std::nullopt;
  switch (t.code) {
    case dl::kDLFloat:
      return t.bits == 64 ? std::optional(DType::f64) : t.bits == 32 ? std::optional(DType::f32)
             : t.bits == 16 ? std::optional(DType::f16) : std::nullopt;
    case dl::kDLBfloat: return t.bits == 16 ? std::optional(DType::bf16) : std::nullopt;
    case dl::kDLInt:
      return t.bits == 64 ? std::optional(DType::i64) : t.bits == 32 ? std::optional(DType::i32)
             : t.bits == 16 ? std::optional(DType::i16) : t.bits == 8 ? std::optional(DType::i8) : std::nullopt;
    case dl::kDLUInt: return t.bits == 8 ? std::optional(DType::u8) : std::nullopt;
    case dl::kDLBool: return t.bits == 8 ? std::optional(DType::boolean) : std::nullopt;
    default: return std::nullopt;
  }
}

std::string dl_dtype_text(const dl::DLDataType& t) {
  static const char* names[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
  return detail::concat(t.code < 7 ? names[t.code] : "code", static_cast<int>(t.bits),
                        t.lanes != 1 ? "x" + std::to_string(t.lanes) : std::string());
}

ArrayRef from_dlpack(py::object obj, std::string_view what) {
  // torch refuses to export tensors that require grad; .detach() is the same memory.
  if (py::hasattr(obj, "requires_grad") && py::hasattr(obj, "detach") && obj.attr("requires_grad").cast<bool>())
    obj = obj.attr("detach")();
  const py::tuple dev = obj.attr("__dlpack_device__")();
  const int kind = dev[0].cast<int>();
  const int index = dev[1].cast<int>();
  DIDMARK_ARRAY_EXPECTS(kind == dl::kDLCPU || kind == dl::kDLCUDAHost || kind == dl::kDLCUDA ||
                            kind == dl::kDLCUDAManaged,
                        what, " lives on DLPack device type ", kind, "; didmark takes CPU and CUDA arrays");
  if (kind == dl::kDLCUDA || kind == dl::kDLCUDAManaged) {
    // didmark's CUDA backend works on its own stream: the producer's queued writes must be
    // done first. torch is the producer we know how to wait for; others must synchronize.
    const py::dict modules = py::module_::import("sys").attr("modules");
    if (modules.contains("torch") && py::isinstance(obj, modules["torch"].attr("Tensor")))
      modules["torch"].attr("cuda").attr("synchronize")(index);
  }
  py::object cap = obj.attr("__dlpack__")();
  DIDMARK_ARRAY_EXPECTS(PyCapsule_IsValid(cap.ptr(), "dltensor"), what,
                        ".__dlpack__() did not give an unused 'dltensor' capsule");
  auto* m = static_cast<dl::DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), "dltensor"));
  if (m == nullptr) throw py::error_already_set();
  // Consumed: the capsule no longer frees it; the deleter runs when the ArrayRef goes.
  if (PyCapsule_SetName(cap.ptr(), "used_dltensor") != 0) throw py::error_already_set();
  ArrayRef r;
  r.managed = std::shared_ptr<dl::DLManagedTensor>(m, [](dl::DLManagedTensor* p) {
    if (p->deleter) p->deleter(p);
  });
  r.owner = obj;
  const dl::DLTensor& t = m->dl_tensor;
  const std::optional<DType> dtype = dl_dtype(t.dtype);
  DIDMARK_ARRAY_EXPECTS(dtype.has_value(), what, " has dtype ", dl_dtype_text(t.dtype),
                        ", which didmark does not take: use float64, float32, float16 or bfloat16 (integer and "
                        "bool arrays for labels and ids)");
  DIDMARK_ARRAY_EXPECTS(t.ndim >= 0 && t.ndim <= 64, what, " has ", t.ndim, " dimensions");
  std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
  if (t.strides != nullptr) {
    int64_t expect = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      DIDMARK_ARRAY_EXPECTS(shape[static_cast<std::size_t>(i)] <= 1 || t.strides[i] == expect, what,
                            " is not C-contiguous; pass .contiguous() of it");
      expect *= shape[static_cast<std::size_t>(i)];
    }
  }
  const bool cuda = kind == dl::kDLCUDA || kind == dl::kDLCUDAManaged;
  void* data = static_cast<char*>(t.data) + t.byte_offset;
  r.view = TensorView::contiguous(data, *dtype, std::move(shape), cuda ? Device::cuda : Device::cpu, cuda ? index : 0);
  return r;
}

}  // namespace

ArrayRef array_ref(const py::handle& obj, std::string_view what, bool convert) {
  ArrayRef r;
  if (py::isinstance<py::array>(obj)) {
    py::array a = py::reinterpret_borrow<py::array>(obj);
    r.view = view_of(a, what);
    r.owner = std::move(a);
    r.numpy = true;
    return r;
  }
  if (py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__"))
    return from_dlpack(py::reinterpret_borrow<py::object>(obj), what);
  DIDMARK_ARRAY_EXPECTS(convert && !py::isinstance<py::str>(obj) && !py::isinstance<py::bytes>(obj), what,
                        " is a ", str_of(py::type::handle_of(obj).attr("__name__")),
                        ", not an array: pass a numpy array or a tensor with __dlpack__ (torch, CuPy, JAX)");
  // Lists and other array-likes: numpy converts them (a copy).
  py::array a = py::array::ensure(obj);
  DIDMARK_ARRAY_EXPECTS(a, what, " is not an array (", str_of(py::repr(obj)).substr(0, 80), ")");
  r.view = view_of(a, what);
  r.owner = std::move(a);
  r.numpy = true;
  return r;
}

ArrayRef empty_like(const ArrayRef& like, std::string_view what) {
  if (like.numpy) {
    py::array a = new_array(like.view.dtype, like.view.shape);
    ArrayRef r;
    r.view = view_of(a, what);
    r.owner = std::move(a);
    r.numpy = true;
    return r;
  }
  DIDMARK_ARRAY_EXPECTS(py::hasattr(like.owner, "new_empty"), what,
                        " cannot be made like its input (no new_empty); pass numpy arrays or torch tensors, or "
                        "in_place=True");
  return from_dlpack(like.owner.attr("new_empty")(py::tuple(py::cast(like.view.shape))), what);
}

std::string device_for(const std::string& device, const std::vector<std::pair<std::string, TensorView>>& views) {
  for (const auto& [name, v] : views) {
    if (v.device != Device::cuda) continue;
    DIDMARK_EXPECTS(cuda_compiled(), unsupported, name, " is a CUDA array, and this didmark was built without CUDA "
                    "(rebuild with -DDIDMARK_CUDA=ON, or pip install with nvcc on PATH), or pass .cpu() of it");
    DIDMARK_EXPECTS(device != "cpu", invalid_argument, name, " is on the GPU but device='cpu' was asked for; pass "
                    "device='cuda' (or 'auto'), or .cpu() of it");
    return "cuda";
  }
  return device;
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
