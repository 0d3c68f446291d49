// safetensors header parser and validator. Kept apart from the file and writer code so the
// libFuzzer target (tests/fuzz) builds it alone. The checks follow the reference reader
// (safetensors/src/tensor.rs: read_metadata, Metadata::validate).
//
// The JSON is read with nlohmann's SAX interface (an iterative parser) into the header
// structure directly: no DOM, no recursion over the input, depth counted here and capped at
// kSafetensorsMaxDepth, names checked for duplicates by sorting (O(n log n)), and no message
// built by dumping what the file holds.
#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "didmark/limits.hpp"

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

using Json = nlohmann::json;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// One tensor entry as read, before validation.
struct RawEntry {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  std::vector<uint64_t> offsets;
  bool has_dtype = false, has_shape = false, has_offsets = false;
};

// SAX handler: the header object, its tensor entries and __metadata__, nothing else kept.
// Every callback returns false to stop the parser at the first problem, whose message is
// left in `error` (thrown by the caller).
class HeaderSax final : public nlohmann::json_sax<Json> {
 public:
  explicit HeaderSax(std::string file) : file_(std::move(file)) {}

  std::vector<RawEntry> entries;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::string error;
  Errc code = Errc::corrupt_input;

  bool null() override { return scalar(Kind::null); }
  bool boolean(bool) override { return scalar(Kind::other); }
  bool number_integer(number_integer_t v) override {
    return v < 0 ? scalar(Kind::negative) : number(static_cast<uint64_t>(v));
  }
  bool number_unsigned(number_unsigned_t v) override { return number(v); }
  bool number_float(number_float_t, const string_t&) override { return scalar(Kind::other); }
  bool binary(binary_t&) override { return scalar(Kind::other); }

  bool string(string_t& v) override {
    if (skip_ > 0) return true;
    switch (where_) {
      case Where::metadata:
        if (metadata.size() >= kSafetensorsMaxMetadataEntries)
          return fail("__metadata__ has more than ", kSafetensorsMaxMetadataEntries,
                      " entries (kSafetensorsMaxMetadataEntries)");
        metadata.emplace_back(std::move(key_), std::move(v));
        return true;
      case Where::entry:
        if (field_ == Field::dtype) {
          entries.back().dtype = std::move(v);
          return true;
        }
        return scalar(Kind::other);
      default: return scalar(Kind::other);
    }
  }

  bool start_object(std::size_t) override {
    if (!deeper()) return false;
    if (skip_ > 0) return ++skip_, true;
    switch (where_) {
      case Where::start: where_ = Where::top; return true;
      case Where::top:
        if (key_ == "__metadata__") {
          if (seen_metadata_) return fail("safetensors header names '__metadata__' twice");
          seen_metadata_ = true;
          where_ = Where::metadata;
          return true;
        }
        if (entries.size() >= kSafetensorsMaxTensors)
          return fail("the header lists more than ", kSafetensorsMaxTensors, " tensors (kSafetensorsMaxTensors)");
        entries.emplace_back();
        entries.back().name = std::move(key_);
        where_ = Where::entry;
        field_ = Field::none;
        return true;
      case Where::metadata: return fail("__metadata__ entry '", detail::quoted(key_), "' is not a string");
      case Where::entry:
        if (field_ == Field::unknown) return ++skip_, true;
        return wrong_field_type();
      default: return wrong_field_type();
    }
  }

  bool key(string_t& k) override {
    if (skip_ > 0) return true;
    if (where_ == Where::entry) {
      RawEntry& e = entries.back();
      bool* seen = k == "dtype" ? &e.has_dtype : k == "shape" ? &e.has_shape : k == "data_offsets" ? &e.has_offsets
                                                                                                    : nullptr;
      if (seen) {
        if (*seen)
          return fail("tensor '", detail::quoted(e.name), "' has two '", k,
                      "' entries (a JSON reader would keep either one)");
        *seen = true;
        field_ = k == "dtype" ? Field::dtype : k == "shape" ? Field::shape : Field::offsets;
      } else {
        field_ = Field::unknown;
      }
      return true;
    }
    key_ = std::move(k);
    return true;
  }

  bool end_object() override {
    --depth_;
    if (skip_ > 0) return --skip_, true;
    switch (where_) {
      case Where::top: where_ = Where::done; return true;
      case Where::metadata: where_ = Where::top; return true;
      case Where::entry: where_ = Where::top; return true;
      default: return fail("unexpected end of an object");
    }
  }

  bool start_array(std::size_t) override {
    if (!deeper()) return false;
    if (skip_ > 0) return ++skip_, true;
    if (where_ == Where::entry) {
      if (field_ == Field::shape) {
        where_ = Where::shape;
        return true;
      }
      if (field_ == Field::offsets) {
        where_ = Where::offsets;
        return true;
      }
      if (field_ == Field::unknown) return ++skip_, true;
      return wrong_field_type();
    }
    return scalar(Kind::other);
  }

  bool end_array() override {
    --depth_;
    if (skip_ > 0) return --skip_, true;
    if (where_ == Where::shape || where_ == Where::offsets) {
      where_ = Where::entry;
      return true;
    }
    return fail("unexpected end of an array");
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    // nlohmann's message quotes the last token read: bounded and escaped, never the whole of it.
    std::string what = e.what();
    if (const auto p = what.find("] "); what.rfind("[json.exception", 0) == 0 && p != std::string::npos)
      what = what.substr(p + 2);
    error = detail::concat("'", file_, "': safetensors header is not valid JSON (at byte ", position,
                           " of the header): ", detail::printable(what, 200));
    return false;
  }

  /// True once the header object has been read to its end.
  bool done() const noexcept { return where_ == Where::done; }

 private:
  enum class Where { start, top, metadata, entry, shape, offsets, done };
  enum class Field { none, dtype, shape, offsets, unknown };
  enum class Kind { null, negative, other };

  template <class... A>
  bool fail(const A&... a) {
    if (error.empty()) error = detail::concat("'", file_, "': ", a...);
    return false;
  }

  bool deeper() {
    if (++depth_ > kSafetensorsMaxDepth)
      return fail("safetensors header nests JSON deeper than ", kSafetensorsMaxDepth,
                  " levels (kSafetensorsMaxDepth); the format needs 3");
    return true;
  }

  bool wrong_field_type() {
    const RawEntry& e = entries.back();
    switch (field_) {
      case Field::dtype: return fail("tensor '", detail::quoted(e.name), "' has no dtype string");
      case Field::shape: return fail("tensor '", detail::quoted(e.name), "' has no shape array");
      case Field::offsets: return fail("tensor '", detail::quoted(e.name), "' needs data_offsets [begin, end]");
      default: return fail("tensor '", detail::quoted(e.name), "' is not a JSON object");
    }
  }

  bool number(uint64_t v) {
    if (skip_ > 0) return true;
    if (where_ == Where::shape) {
      RawEntry& e = entries.back();
      if (e.shape.size() >= kMaxTensorRank)
        return fail("tensor '", detail::quoted(e.name), "' has more than ", kMaxTensorRank,
                    " dimensions (kMaxTensorRank)");
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return fail("tensor '", detail::quoted(e.name),
                    "' has a shape entry that is not a non-negative integer below 2^63");
      e.shape.push_back(v);
      return true;
    }
    if (where_ == Where::offsets) {
      RawEntry& e = entries.back();
      if (e.offsets.size() >= 2) return fail("tensor '", detail::quoted(e.name), "' needs data_offsets [begin, end]");
      e.offsets.push_back(v);
      return true;
    }
    return scalar(Kind::other);
  }

  bool scalar(Kind k) {
    if (skip_ > 0) return true;
    switch (where_) {
      case Where::start: return fail("safetensors header is not a JSON object");
      case Where::top:
        if (key_ == "__metadata__" && k == Kind::null) {  // "__metadata__": null is allowed
          if (seen_metadata_) return fail("safetensors header names '__metadata__' twice");
          return seen_metadata_ = true;
        }
        if (key_ == "__metadata__") return fail("__metadata__ is not an object of strings");
        return fail("tensor '", detail::quoted(key_), "' is not a JSON object");
      case Where::metadata: return fail("__metadata__ entry '", detail::quoted(key_), "' is not a string");
      case Where::entry:
        if (field_ == Field::unknown) return true;
        return wrong_field_type();
      case Where::shape:
        return fail("tensor '", detail::quoted(entries.back().name),
                    "' has a shape entry that is not a non-negative integer");
      case Where::offsets:
        return fail("tensor '", detail::quoted(entries.back().name),
                    "' has data_offsets that are not non-negative integers");
      default: return fail("unexpected value after the header object");
    }
  }

  std::string file_;
  Where where_ = Where::start;
  Field field_ = Field::none;
  std::string key_;       // the current key of the header object or of __metadata__
  std::size_t depth_ = 0;  // open arrays and objects
  std::size_t skip_ = 0;   // > 0 inside the value of an unknown key (nesting below it)
  bool seen_metadata_ = false;
};

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
  const std::string name = detail::printable(file_name, 1024);
  const uint64_t size = file.size();
  DIDMARK_EXPECTS(size >= 8, corrupt_input, "'", name, "': not a safetensors file: ", size,
                  " bytes cannot hold the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[static_cast<std::size_t>(i)];
  // The length is the file's own bytes: never echoed (on a file that is not safetensors, it
  // would print 8 bytes of its content).
  DIDMARK_EXPECTS(n <= kSafetensorsMaxHeader, corrupt_input, "'", name,
                  "': safetensors header length is too large: it exceeds the limit of ", kSafetensorsMaxHeader,
                  " bytes (kSafetensorsMaxHeader); not a safetensors file?");
  DIDMARK_EXPECTS(n <= size - 8, corrupt_input, "'", name,
                  "': safetensors header length runs past the end of the file (", size,
                  " bytes): truncated file, or not a safetensors file?");
  const auto* text = reinterpret_cast<const char*>(file.data() + 8);
  DIDMARK_EXPECTS(n > 0 && text[0] == '{', corrupt_input, "'", name,
                  "': safetensors header does not start with '{' (not a safetensors file?)");

  SafetensorsHeader h;
  h.header_length = n;
  const uint64_t data_size = size - 8 - n;

  HeaderSax sax(name);
  const bool ok = Json::sax_parse(text, text + n, &sax, nlohmann::detail::input_format_t::json, true, false);
  if (!ok || !sax.error.empty() || !sax.done()) {
    DIDMARK_EXPECTS(!sax.error.empty(), corrupt_input, "'", name, "': safetensors header is not valid JSON");
    DIDMARK_THROW(sax.code, sax.error);
  }

  // Duplicate names are ambiguous (JSON readers keep one or the other): sort, compare
  // neighbours. "__metadata__" twice is a duplicate too.
  {
    std::vector<std::string_view> names;
    names.reserve(sax.entries.size() + 1);
    for (const auto& e : sax.entries) names.emplace_back(e.name);
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    DIDMARK_EXPECTS(dup == names.end(), corrupt_input, "'", name, "': safetensors header names '",
                    detail::quoted(*dup), "' twice");
    std::vector<std::string_view> keys;
    keys.reserve(sax.metadata.size());
    for (const auto& m : sax.metadata) keys.emplace_back(m.first);
    std::sort(keys.begin(), keys.end());
    const auto mdup = std::adjacent_find(keys.begin(), keys.end());
    DIDMARK_EXPECTS(mdup == keys.end(), corrupt_input, "'", name, "': __metadata__ names '", detail::quoted(*mdup),
                    "' twice");
  }
  h.metadata = std::move(sax.metadata);

  h.tensors.reserve(sax.entries.size());
  for (auto& e : sax.entries) {
    const std::string tname = detail::quoted(e.name);
    DIDMARK_EXPECTS(e.has_dtype, corrupt_input, "'", name, "': tensor '", tname, "' has no dtype string");
    DIDMARK_EXPECTS(e.has_shape, corrupt_input, "'", name, "': tensor '", tname, "' has no shape array");
    DIDMARK_EXPECTS(e.has_offsets && e.offsets.size() == 2, corrupt_input, "'", name, "': tensor '", tname,
                    "' needs data_offsets [begin, end]");
    SafetensorsTensorInfo t;
    const auto parsed = safetensors_dtype(e.dtype);
    if (!parsed) {
      const bool known = std::find(std::begin(kKnownUnsupported), std::end(kKnownUnsupported), e.dtype) !=
                         std::end(kKnownUnsupported);
      DIDMARK_EXPECTS(!known, unsupported, "'", name, "': tensor '", tname, "' has dtype ", e.dtype,
                      ", which didmark cannot carry");
      DIDMARK_THROW(Errc::corrupt_input, "'", name, "': tensor '", tname, "' has unknown dtype '",
                    detail::printable(e.dtype, 32), "'");
    }
    t.dtype = *parsed;
    uint64_t elements = 1;
    bool overflow = false;
    for (uint64_t d : e.shape) {
      if (d != 0 && elements > std::numeric_limits<uint64_t>::max() / d) overflow = true;
      elements = overflow ? 0 : elements * d;
      t.shape.push_back(static_cast<int64_t>(d));
    }
    // A zero dimension anywhere makes the count 0, whatever the others say.
    if (std::find(e.shape.begin(), e.shape.end(), uint64_t{0}) != e.shape.end()) overflow = false, elements = 0;
    DIDMARK_EXPECTS(!overflow, corrupt_input, "'", name, "': tensor '", tname, "': element count of shape ",
                    shape_text(t.shape), " overflows");
    const uint64_t esize = dtype_size(t.dtype);
    DIDMARK_EXPECTS(elements <= std::numeric_limits<uint64_t>::max() / esize, corrupt_input, "'", name,
                    "': tensor '", tname, "': byte count of shape ", shape_text(t.shape), " overflows");
    const uint64_t nbytes = elements * esize;
    t.begin = e.offsets[0];
    t.end = e.offsets[1];
    DIDMARK_EXPECTS(t.begin <= t.end, corrupt_input, "'", name, "': tensor '", tname, "' has data_offsets [",
                    t.begin, ", ", t.end, "] that end before they begin");
    DIDMARK_EXPECTS(t.end <= data_size, corrupt_input, "'", name, "': tensor '", tname, "' has data_offsets [",
                    t.begin, ", ", t.end, "] out of range: the data region holds ", data_size, " bytes");
    DIDMARK_EXPECTS(t.nbytes() == nbytes, corrupt_input, "'", name, "': tensor '", tname, "' is ", e.dtype,
                    shape_text(t.shape), " = ", nbytes, " bytes but its data_offsets span ", t.nbytes());
    t.name = std::move(e.name);
    h.tensors.push_back(std::move(t));
  }

  std::stable_sort(h.tensors.begin(), h.tensors.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expect = 0;
  const SafetensorsTensorInfo* prev = nullptr;
  for (const auto& t : h.tensors) {
    DIDMARK_EXPECTS(t.begin >= expect, corrupt_input, "'", name, "': tensor '", detail::quoted(t.name), "' (bytes ",
                    t.begin, "..", t.end, ") overlaps tensor '", prev ? detail::quoted(prev->name) : "", "' (bytes ",
                    prev ? prev->begin : 0, "..", expect, ")");
    DIDMARK_EXPECTS(t.begin == expect, corrupt_input, "'", name, "': tensor '", detail::quoted(t.name),
                    "' starts at byte ", t.begin, " of the data region, leaving a gap after ",
                    prev ? "tensor '" + detail::quoted(prev->name) + "'" : std::string("the header"),
                    " (which ends at ", expect, "): tensors must be contiguous");
    expect = t.end;
    prev = &t;
  }
  DIDMARK_EXPECTS(expect == data_size, corrupt_input, "'", name, "': the tensors cover ", expect,
                  " bytes but the file holds ", data_size, " data bytes after the header");
  return h;
}

}  // namespace didmark
