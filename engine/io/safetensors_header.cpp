// safetensors header parser and validator. Kept apart from the file and writer code so the
// libFuzzer target (tests/fuzz) builds it alone. The checks follow the reference reader
// (safetensors/src/tensor.rs: read_metadata, Metadata::validate).
#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/printable.hpp"

namespace didmark {
namespace {

struct DtypeName {
  std::string_view name;
  DType dtype;
};
constexpr DtypeName kDtypes[] = {
    {"F64", DType::f64},         {"F32", DType::f32},         {"F16", DType::f16}, {"BF16", DType::bf16},
    {"F8_E4M3", DType::f8_e4m3}, {"F8_E5M2", DType::f8_e5m2}, {"I64", DType::i64}, {"I32", DType::i32},
    {"I16", DType::i16},         {"I8", DType::i8},           {"U8", DType::u8},   {"BOOL", DType::boolean},
};
// Valid in the format, but without a DType here: refused as unsupported, not as corrupt.
constexpr std::string_view kKnownUnsupported[] = {"U16",     "U32", "U64",     "F8_E8M0",     "F4",
                                                  "F6_E2M3", "F6_E3M2", "C64", "F8_E4M3FNUZ", "F8_E5M2FNUZ"};

using Json = nlohmann::ordered_json;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A non-negative JSON integer that fits in uint64_t, or nullopt.
std::optional<uint64_t> as_u64(const Json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

}  // namespace

std::optional<DType> safetensors_dtype(std::string_view name) noexcept {
  for (const auto& d : kDtypes)
    if (d.name == name) return d.dtype;
  return std::nullopt;
}

std::string_view safetensors_dtype_name(DType t) noexcept {
  for (const auto& d : kDtypes)
    if (d.dtype == t) return d.name;
  return "?";
}

SafetensorsHeader parse_safetensors_header(std::span<const unsigned char> file, std::string_view file_name) {
  const std::string name(file_name);
  const uint64_t size = file.size();
  DIDMARK_EXPECTS(size >= 8, corrupt_input, "'", name, "': not a safetensors file: ", size,
                  " bytes cannot hold the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<std::size_t>(i)];
  DIDMARK_EXPECTS(n <= kSafetensorsMaxHeader, corrupt_input, "'", name, "': safetensors header length ", n,
                  " exceeds the limit of ", kSafetensorsMaxHeader, " bytes");
  DIDMARK_EXPECTS(n <= size - 8, corrupt_input, "'", name, "': safetensors header length ", n,
                  " runs past the end of the file (", size, " bytes): truncated file?");
  const auto* text = reinterpret_cast<const char*>(file.data() + 8);
  DIDMARK_EXPECTS(n > 0 && text[0] == '{', corrupt_input, "'", name,
                  "': safetensors header does not start with '{' (not a safetensors file?)");

  SafetensorsHeader h;
  h.header_length = n;
  const uint64_t data_size = size - 8 - n;

  // Duplicate names are ambiguous (JSON parsers keep one or the other): refuse them.
  std::unordered_set<std::string> keys;
  std::string duplicate;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys.insert(k).second) duplicate = k;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text, text + n, on_event);
  } catch (const Json::exception& e) {
    std::string what = e.what();
    if (const auto p = what.find("] "); what.rfind("[json.exception", 0) == 0 && p != std::string::npos)
      what = what.substr(p + 2);
    DIDMARK_THROW(Errc::corrupt_input, "'", name, "': safetensors header is not valid JSON: ", detail::printable(what));
  }
  DIDMARK_EXPECTS(j.is_object(), corrupt_input, "'", name, "': safetensors header is not a JSON object");
  DIDMARK_EXPECTS(duplicate.empty(), corrupt_input, "'", name, "': safetensors header names '", duplicate,
                  "' twice");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const Json& v = it.value();
    if (key == "__metadata__") {
      if (v.is_null()) continue;
      DIDMARK_EXPECTS(v.is_object(), corrupt_input, "'", name, "': __metadata__ is not an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        DIDMARK_EXPECTS(m.value().is_string(), corrupt_input, "'", name, "': __metadata__ entry '", m.key(),
                        "' is not a string");
        h.metadata.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    DIDMARK_EXPECTS(v.is_object(), corrupt_input, "'", name, "': tensor '", key, "' is not a JSON object");
    SafetensorsTensorInfo t;
    t.name = key;
    const auto dt = v.find("dtype");
    DIDMARK_EXPECTS(dt != v.end() && dt->is_string(), corrupt_input, "'", name, "': tensor '", key,
                    "' has no dtype string");
    const auto& dname = dt->get_ref<const std::string&>();
    const auto parsed = safetensors_dtype(dname);
    if (!parsed) {
      const bool known = std::find(std::begin(kKnownUnsupported), std::end(kKnownUnsupported), dname) !=
                         std::end(kKnownUnsupported);
      DIDMARK_EXPECTS(!known, unsupported, "'", name, "': tensor '", key, "' has dtype ", dname,
                      ", which didmark cannot carry");
      DIDMARK_THROW(Errc::corrupt_input, "'", name, "': tensor '", key, "' has unknown dtype '", dname, "'");
    }
    t.dtype = *parsed;

    const auto sh = v.find("shape");
    DIDMARK_EXPECTS(sh != v.end() && sh->is_array(), corrupt_input, "'", name, "': tensor '", key,
                    "' has no shape array");
    uint64_t elements = 1;
    for (const auto& d : *sh) {
      const auto dim = as_u64(d);
      DIDMARK_EXPECTS(dim && *dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), corrupt_input,
                      "'", name, "': tensor '", key, "' has a shape entry that is not a non-negative integer: ",
                      d.dump());
      DIDMARK_EXPECTS(*dim == 0 || elements <= std::numeric_limits<uint64_t>::max() / *dim, corrupt_input, "'",
                      name, "': tensor '", key, "': element count of shape ", sh->dump(), " overflows");
      elements *= *dim;
      t.shape.push_back(static_cast<int64_t>(*dim));
    }
    const uint64_t esize = dtype_size(t.dtype);
    DIDMARK_EXPECTS(elements <= std::numeric_limits<uint64_t>::max() / esize, corrupt_input, "'", name,
                    "': tensor '", key, "': byte count of shape ", sh->dump(), " overflows");
    const uint64_t nbytes = elements * esize;

    const auto off = v.find("data_offsets");
    DIDMARK_EXPECTS(off != v.end() && off->is_array() && off->size() == 2, corrupt_input, "'", name, "': tensor '",
                    key, "' needs data_offsets [begin, end]");
    const auto b = as_u64((*off)[0]), e = as_u64((*off)[1]);
    DIDMARK_EXPECTS(b && e, corrupt_input, "'", name, "': tensor '", key,
                    "' has data_offsets that are not non-negative integers: ", off->dump());
    t.begin = *b;
    t.end = *e;
    DIDMARK_EXPECTS(t.begin <= t.end, corrupt_input, "'", name, "': tensor '", key, "' has data_offsets [",
                    t.begin, ", ", t.end, "] that end before they begin");
    DIDMARK_EXPECTS(t.end <= data_size, corrupt_input, "'", name, "': tensor '", key, "' has data_offsets [",
                    t.begin, ", ", t.end, "] out of range: the data region holds ", data_size, " bytes");
    DIDMARK_EXPECTS(t.nbytes() == nbytes, corrupt_input, "'", name, "': tensor '", key, "' is ", dname,
                    shape_text(t.shape), " = ", nbytes, " bytes but its data_offsets span ", t.nbytes());
    h.tensors.push_back(std::move(t));
  }

  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  const SafetensorsTensorInfo* prev = nullptr;
  for (const auto& t : h.tensors) {
    DIDMARK_EXPECTS(t.begin >= expect, corrupt_input, "'", name, "': tensor '", t.name, "' (bytes ", t.begin, "..",
                    t.end, ") overlaps tensor '", prev ? prev->name : "", "' (bytes ", prev ? prev->begin : 0, "..",
                    expect, ")");
    DIDMARK_EXPECTS(t.begin == expect, corrupt_input, "'", name, "': tensor '", t.name, "' starts at byte ",
                    t.begin, " of the data region, leaving a gap after ",
                    prev ? "tensor '" + prev->name + "'" : std::string("the header"), " (which ends at ", expect,
                    "): tensors must be contiguous");
    expect = t.end;
    prev = &t;
  }
  DIDMARK_EXPECTS(expect == data_size, corrupt_input, "'", name, "': the tensors cover ", expect,
                  " bytes but the file holds ", data_size, " data bytes after the header");
  return h;
}

}  // namespace didmark
