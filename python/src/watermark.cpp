// embed / verify on numpy arrays in memory, and on checkpoint files.
#include <algorithm>
#include <cmath>
#include <filesystem>

#include "bindings.hpp"
#include "common.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/inputs.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark::python {
namespace {

namespace fs = std::filesystem;

// The arrays of a {name: array} mapping (numpy arrays or DLPack tensors), kept alive (and
// their views) for one call.
struct ArraySet {
  std::vector<py::object> given;
  std::vector<ArrayRef> arrays;
  std::vector<NamedTensor> tensors;

  std::vector<std::pair<std::string, TensorView>> labelled() const {
    std::vector<std::pair<std::string, TensorView>> out;
    for (const auto& t : tensors) out.emplace_back("tensor '" + t.name + "'", t.view);
    return out;
  }
};

ArraySet arrays_of(const py::handle& mapping, bool writable) {
  DIDMARK_ARRAY_EXPECTS(py::hasattr(mapping, "items"), "tensors must be a mapping {name: array}, not ",
                        str_of(py::type::handle_of(mapping).attr("__name__")));
  ArraySet set;
  for (const py::handle item : mapping.attr("items")()) {
    const py::tuple kv = item.cast<py::tuple>();
    DIDMARK_EXPECTS(py::isinstance<py::str>(kv[0]), invalid_argument, "tensor names must be str, got ",
                    std::string(py::repr(kv[0])));
    const std::string name = kv[0].cast<std::string>();
    const std::string what = "tensor '" + name + "'";
    // In place, only a real array will do; otherwise array-likes (lists) are converted, which
    // copies.
    ArrayRef a = array_ref(kv[1], what, !writable);
    if (writable && a.numpy)
      DIDMARK_EXPECTS(a.owner.cast<py::array>().writeable(), invalid_argument, what,
                      " is read-only and cannot be marked in place");
    set.tensors.push_back({name, a.view});
    set.arrays.push_back(std::move(a));
    set.given.push_back(py::reinterpret_borrow<py::object>(kv[1]));
  }
  return set;
}

py::dict tensor_dict(const TensorReport& t, bool embed) {
  py::dict d;
  d["name"] = t.name;
  d["dtype"] = std::string(dtype_name(t.dtype));
  d["elements"] = t.elements;
  d["marked"] = t.used;
  if (!embed) d["used"] = t.used;  // the old name of verify's per_tensor (docs/json/README.md: alias)
  if (!t.used) d["skip_reason"] = t.skip_reason;
  if (embed && t.used) d["relative_change"] = t.relative_change;
  if (!embed && t.used) d["z"] = t.z;
  return d;
}

py::dict embed_dict(const EmbedReport& e, const std::string& did) {
  py::list tensors;
  for (const auto& t : e.tensors) tensors.append(tensor_dict(t, true));
  py::dict d;
  d["did"] = did.empty() ? py::object(py::none()) : py::object(py::str(did));
  d["scheme"] = std::string(scheme_name(e.scheme));
  d["strength"] = e.strength;
  d["tensors"] = tensors;
  d["tensors_marked"] = e.tensors_marked;
  d["elements_marked"] = e.elements_marked;
  d["relative_change"] = e.relative_change;
  d["max_tensor_change"] = e.max_tensor_change;  // alias of max_relative_change (docs/json/README.md)
  d["max_relative_change"] = e.max_tensor_change;
  d["within_budget"] = e.within_budget;
  d["expected_z"] = e.expected_z;
  d["seconds"] = e.seconds;
  d["backend"] = e.backend;
  return d;
}

// The CLI verdict's fields (apps/didmark formats.hpp: did, detected, z, p_value, log10_p,
// bit_errors, bits, elements, tensors, plus scheme and seconds), and the per-tensor detail.
py::dict verdict_dict(const VerifyReport& r, const std::string& did) {
  py::list per_tensor;
  for (const auto& t : r.per_tensor) per_tensor.append(tensor_dict(t, false));
  py::dict d;
  d["did"] = did.empty() ? py::object(py::none()) : py::object(py::str(did));
  d["detected"] = r.detected;
  d["z"] = r.z;
  d["p_value"] = r.p_value;
  d["log10_p"] = r.log10_p;
  d["bit_errors"] = r.bit_errors;
  d["bits"] = r.bits;
  d["elements"] = r.elements;
  d["tensors"] = r.tensors;
  d["scheme"] = std::string(scheme_name(r.scheme));
  d["seconds"] = r.seconds;
  d["per_tensor"] = per_tensor;
  return d;
}

// Why nothing took part, from the per-tensor skip reasons (first few).
std::string skip_reasons(const std::vector<TensorReport>& ts) {
  std::string why;
  for (const auto& t : ts)
    if (!t.used && why.size() < 200) why += (why.empty() ? "" : "; ") + t.name + ": " + t.skip_reason;
  return why.empty() ? "no tensors were given" : why;
}

py::tuple embed_arrays(const py::handle& tensors, const py::handle& key, const py::handle& owner,
                       const std::optional<double>& strength, const std::string& scheme,
                       const std::optional<double>& max_change, const std::optional<std::string>& include,
                       const std::optional<std::vector<std::string>>& names, bool in_place,
                       const std::string& device, bool allow_weak) {
  const WatermarkKey k = key_of(key);
  std::string did;
  const Payload payload = payload_of(owner, key, did);
  const WatermarkOptions o = watermark_options(scheme, strength, max_change, 1e-9, include, names);
  ArraySet src = arrays_of(tensors, in_place);
  ArraySet dst;
  if (in_place) {
    dst.tensors = src.tensors;
  } else {
    for (std::size_t i = 0; i < src.tensors.size(); ++i) {
      const std::string& name = src.tensors[i].name;
      dst.arrays.push_back(empty_like(src.arrays[i], "output of '" + name + "'"));
      dst.tensors.push_back({name, dst.arrays.back().view});
    }
  }
  const std::string dev = device_for(device, src.labelled());
  EmbedReport r;
  {
    py::gil_scoped_release nogil;
    Backend& b = backend_for(dev);
    r = embed(src.tensors, dst.tensors, k, payload, o, b);
  }
  DIDMARK_EXPECTS(r.tensors_marked > 0, invalid_argument, "no tensor can carry a mark (", skip_reasons(r.tensors),
                  "); choose tensors with include= or names=");
  if (!r.within_budget) {
    const TensorReport* worst = nullptr;
    for (const auto& t : r.tensors)
      if (t.used && (!worst || t.relative_change > worst->relative_change)) worst = &t;
    DIDMARK_THROW(Errc::invalid_argument, "tensor '", worst->name, "' would change by ", 100 * worst->relative_change,
                  "%, over the budget of ", 100 * o.max_relative_change, "% (lower the strength or raise max_change)",
                  in_place ? "; the arrays were changed in place" : "");
  }
  // As the CLI: a mark the default test cannot prove (expected z under the threshold plus 2)
  // is refused unless asked for.
  const double need = provable_z(o.p_threshold);
  if (!allow_weak && r.scheme == Scheme::spread_spectrum && r.expected_z < need)
    DIDMARK_THROW(Errc::invalid_argument, "the mark could not be proved: expected z ", r.expected_z, " (",
                  r.elements_marked, " elements at strength ", r.strength, ") is below ", need,
                  "; use strength=", 1.1 * need / std::sqrt(static_cast<double>(std::max<int64_t>(r.elements_marked, 1))),
                  " or more, mark more tensors, or pass allow_weak=True",
                  in_place ? "; the arrays were changed in place" : "");
  py::dict out;
  for (std::size_t i = 0; i < src.tensors.size(); ++i)
    out[py::str(src.tensors[i].name)] = in_place ? src.given[i] : dst.arrays[i].owner;
  return py::make_tuple(out, embed_dict(r, did));
}

py::dict verify_arrays(const py::handle& tensors, const py::handle& key, const py::handle& owner,
                       const std::string& scheme, double p_threshold, const std::optional<std::string>& include,
                       const std::optional<std::vector<std::string>>& names, const std::string& device) {
  const WatermarkKey k = key_of(key);
  std::string did;
  const Payload payload = payload_of(owner, key, did);
  const WatermarkOptions o = watermark_options(scheme, std::nullopt, std::nullopt, p_threshold, include, names);
  const ArraySet set = arrays_of(tensors, false);
  const std::string dev = device_for(device, set.labelled());
  VerifyReport r;
  {
    py::gil_scoped_release nogil;
    Backend& b = backend_for(dev);
    r = verify(set.tensors, k, payload, o, b);
  }
  DIDMARK_EXPECTS(r.tensors > 0, invalid_argument, "no tensor can carry a mark (", skip_reasons(r.per_tensor),
                  "); choose tensors with include= or names=");
  return verdict_dict(r, did);
}

// An identity given as an Identity or as the path of an identity file.
Identity identity_of(const py::handle& id) {
  if (py::isinstance<Identity>(id)) return id.cast<Identity>();
  return load_identity(path_of(id));
}

InputOptions input_options(const WatermarkOptions& w, const std::optional<std::string>& format,
                           const py::handle& ids, bool fixed_order) {
  InputOptions o;
  o.watermark = w;
  if (format) o.format = *format;
  if (!ids.is_none()) o.ids = path_of(ids);
  o.fixed_order = fixed_order;
  return o;
}

py::object embed_file(const py::handle& input, const py::handle& output, const py::handle& identity,
                      const std::optional<double>& strength, bool force, const std::string& scheme,
                      const std::optional<double>& max_change, const std::optional<std::string>& include,
                      const std::optional<std::string>& format, const py::handle& ids, bool fixed_order,
                      const std::string& device) {
  const fs::path in = path_of(input), out = path_of(output);
  const Owner owner = owner_of(identity_of(identity));
  const InputOptions o = input_options(watermark_options(scheme, strength, max_change, 1e-9, include, std::nullopt),
                                       format, ids, fixed_order);
  std::string json;
  {
    py::gil_scoped_release nogil;
    json = embed_report_json(embed_input(in, out, owner, o, {force}, backend_for(device)), owner);
  }
  return from_json(json);
}

// Owners to look for: one identity, one (key, did) pair, or the entries of a registry.
std::vector<Owner> owners_from(const py::handle& identity, const py::handle& key, const py::handle& did,
                                 const py::handle& registry) {
  const int given = !identity.is_none() + !key.is_none() + !registry.is_none();
  DIDMARK_EXPECTS(given == 1, invalid_argument,
                  "say whose mark with exactly one of identity=, key= (with did=) or registry=");
  if (!identity.is_none()) {
    DIDMARK_EXPECTS(did.is_none(), invalid_argument, "did= goes with key= or registry=; an identity has its own DID");
    return {owner_of(identity_of(identity))};
  }
  if (!key.is_none()) {
    DIDMARK_EXPECTS(py::isinstance<py::str>(did), invalid_argument, "key= needs the owner's did= (a str)");
    const std::string d = parse_did(did.cast<std::string>()).did;
    return {Owner{d, key_of(key), did_codeword(d)}};
  }
  const std::string path = path_of(registry);
  const std::optional<std::string> only = did.is_none() ? std::nullopt : std::optional(did.cast<std::string>());
  return owners_of(load_registry(path), only.value_or(""), "registry '" + path + "'");
}

py::object verify_file(const py::handle& input, const py::handle& identity, const py::handle& key,
                       const py::handle& did, const py::handle& registry, const std::string& scheme,
                       double p_threshold, const std::optional<std::string>& include,
                       const std::optional<std::string>& format, const py::handle& ids, bool fixed_order,
                       const std::string& device, const std::optional<double>& fwer, const std::string& screen,
                       const py::handle& sketches) {
  const fs::path in = path_of(input);
  const std::vector<Owner> owners = owners_from(identity, key, did, registry);
  InputOptions o = input_options(
      watermark_options(scheme, std::nullopt, std::nullopt, p_threshold, include, std::nullopt), format, ids, fixed_order);
  DIDMARK_EXPECTS(!fwer || (*fwer > 0 && *fwer <= 0.5), invalid_argument, "fwer= must be in (0, 0.5] or None (off)");
  o.fwer = fwer;
  const auto mode = parse_screen_mode(screen);
  DIDMARK_EXPECTS(mode.has_value(), invalid_argument, "screen= must be 'auto', 'on' or 'off'");
  o.screen.mode = *mode;
  if (!sketches.is_none()) {
    // One path or a list of paths: each sketch names its owner, tested after realignment to it.
    std::vector<std::string> paths;
    if (py::isinstance<py::str>(sketches) || py::hasattr(sketches, "__fspath__"))
      paths.push_back(path_of(sketches));
    else
      for (const py::handle& p : sketches) paths.push_back(path_of(p));
    o.sketches = load_sketches(paths);
  }
  FileVerdicts fv;
  {
    py::gil_scoped_release nogil;
    fv = verify_input(in, owners, o, backend_for(device));
  }
  py::object d = from_json(file_verdicts_json(fv));
  // Python also gets each checkpoint tensor's own part (the CLI prints only totals).
  py::list verdicts = d["verdicts"];
  for (std::size_t i = 0; i < fv.verdicts.size(); ++i)
    if (fv.verdicts[i].weights) {
      py::list per_tensor;
      for (const auto& t : fv.verdicts[i].weights->per_tensor) per_tensor.append(tensor_dict(t, false));
      verdicts[i]["per_tensor"] = per_tensor;
    }
  return d;
}

}  // namespace

void bind_watermark(py::module_& m) {
  using namespace py::literals;
  m.def("embed", &embed_arrays, "tensors"_a, "key"_a, "owner"_a = py::none(), py::kw_only(),
        "strength"_a = py::none(), "scheme"_a = "spread-spectrum", "max_change"_a = py::none(),
        "include"_a = py::none(), "names"_a = py::none(), "in_place"_a = false, "device"_a = "auto",
        "allow_weak"_a = false,
        "embed(tensors, key, owner=None, *, strength=None, scheme='spread-spectrum', max_change=None, "
        "include=None, names=None, in_place=False, device='auto', allow_weak=False) -> (dict of arrays, report)\n\n"
        "Mark {name: array} (float64/float32/float16, C-contiguous) with `key` (32 bytes, 64 hex digits "
        "or an Identity) and the codeword of `owner` (a DID; None: the Identity's own DID; or a "
        "sequence of 0/1 payload bits). Returns new arrays (the inputs are not touched unless "
        "in_place=True) and the embed report. Raises didmark.Error when no tensor can be marked, a "
        "tensor would change by more than max_change, or the mark could not be proved at p <= 1e-9 (expected z "
        "under the threshold plus 2; allow_weak=True writes it anyway).");
  m.def("verify", &verify_arrays, "tensors"_a, "key"_a, "owner"_a = py::none(), py::kw_only(),
        "scheme"_a = "auto", "p_threshold"_a = 1e-9, "include"_a = py::none(), "names"_a = py::none(),
        "device"_a = "auto",
        "verify(tensors, key, owner=None, *, scheme='auto', p_threshold=1e-9, include=None, "
        "names=None, device='auto') -> dict\n\n"
        "Blind verification of (key, owner) in {name: array}, reading the arrays in place (no copy). "
        "Returns the CLI verdict fields: did, detected, z, p_value, log10_p, bit_errors, bits, "
        "elements, tensors, scheme, seconds, and per_tensor.");
  m.def("embed_file", &embed_file, "input"_a, "output"_a, "identity"_a, py::kw_only(), "strength"_a = py::none(),
        "force"_a = false, "scheme"_a = "spread-spectrum", "max_change"_a = py::none(), "include"_a = py::none(),
        "format"_a = py::none(), "ids"_a = py::none(), "fixed_order"_a = false, "device"_a = "auto",
        "embed_file(input, output, identity, *, strength=None, force=False, scheme='spread-spectrum', "
        "max_change=None, include=None, format=None, ids=None, fixed_order=False, device='auto') -> dict\n\n"
        "Mark any input `didmark embed` takes (safetensors, sharded safetensors, .pt/.bin with LibTorch, a "
        "CSV table, an N x D .npy array with row ids from ids=, its X.ids.npy sidecar or fixed_order=True) "
        "into a new file, and return what `didmark embed --json` prints. `identity` is an Identity or the "
        "path of an identity file. The output is written atomically; an existing one only with force=True.");
  m.def("verify_file", &verify_file, "input"_a, "identity"_a = py::none(), py::kw_only(), "key"_a = py::none(),
        "did"_a = py::none(), "registry"_a = py::none(), "scheme"_a = "auto", "p_threshold"_a = 1e-9,
        "include"_a = py::none(), "format"_a = py::none(), "ids"_a = py::none(), "fixed_order"_a = false,
        "device"_a = "auto", "fwer"_a = kDefaultFwer, "screen"_a = "auto", "sketches"_a = py::none(),
        "verify_file(input, identity=None, *, key=None, did=None, registry=None, scheme='auto', "
        "p_threshold=1e-9, include=None, format=None, ids=None, fixed_order=False, device='auto', fwer=1e-9, "
        "screen='auto', sketches=None) -> dict\n\n"
        "sketches: an owner's alignment sketch (a path, or a list of paths, as `verify --sketch`): that owner "
        "is tested after undoing permutations, rescaling, dummies and renames (verdicts gain realigned and "
        "alignment).\n"
        "fwer: family-wise error level over the owners of the call (detected needs p_family <= fwer; None: "
        "off). screen: 'auto' (from 32 owners), 'on' or 'off': score many owners on a sample first.\n"
        "Verify any input `didmark verify` takes for one owner (identity=, or key= with did=) or every owner "
        "of a registry (registry=, optionally did= to pick one), reading the file once. The file's kind is "
        "decided by the library as for the CLI (a .npy array is a dataset: give ids= or a sidecar). Returns "
        "what `didmark verify --json` prints: {path, format, detected: [DIDs], verdicts: [...], warnings}, "
        "each checkpoint verdict with its per_tensor list.");
}

}  // namespace didmark::python
