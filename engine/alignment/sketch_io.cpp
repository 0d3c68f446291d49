// The sketch file. Layout (little-endian):
//   "DIDMSKCH" | u32 version | u32 0 | u64 json_bytes | u64 blob_bytes | JSON | blob | SHA-256
// The SHA-256 covers every byte before it. The JSON names the owner, the scheme, the model's
// tensors and dimensions; arrays of numbers live in the blob as {offset, count} references
// (8-byte aligned; i64 samples and ids, i8 signatures and values, f32 scales and vectors).
// Reading is attacker-facing: sizes are bounded and checked against each other before
// anything is allocated from them, and errors name the file, never its contents.
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "alignment/common.hpp"
#include "common/atomic_file.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "identity/crypto.hpp"

namespace didmark {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kMagic[8] = {'D', 'I', 'D', 'M', 'S', 'K', 'C', 'H'};
constexpr std::size_t kFixed = 32;   // magic, version, reserved, json and blob lengths
constexpr std::size_t kDigest = 32;
constexpr uint64_t kMaxJson = uint64_t{64} << 20;
constexpr uint64_t kMaxBlob = uint64_t{16} << 30;
constexpr uint64_t kMaxCount = uint64_t{1} << 31;
constexpr std::size_t kMaxName = 4096;
constexpr std::size_t kMaxTensors = 1'000'000;
constexpr int kMaxRank = 8;

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint64_t get_u64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}
uint32_t get_u32(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

class BlobWriter {
 public:
  template <class T>
  Json add(const std::vector<T>& v) {
    while (blob_.size() % 8) blob_.push_back('\0');
    const std::size_t off = blob_.size();
    if (!v.empty()) blob_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    return Json::array({off, v.size()});
  }
  std::string take() {
    while (blob_.size() % 8) blob_.push_back('\0');
    return std::move(blob_);
  }

 private:
  std::string blob_;
};

std::string dtype_text(DType t) { return std::string(dtype_name(t)); }

// ---- reading ------------------------------------------------------------------------------

class Reader {
 public:
  Reader(std::string source, const unsigned char* blob, uint64_t blob_bytes)
      : source_(std::move(source)), blob_(blob), blob_bytes_(blob_bytes) {}

  [[noreturn]] void fail(const std::string& what) const {
    DIDMARK_THROW(Errc::corrupt_input, "sketch '", source_, "': ", what);
  }
  void expect(bool ok, const std::string& what) const {
    if (!ok) fail(what);
  }

  const Json& field(const Json& o, const char* key, const std::string& where) const {
    expect(o.is_object(), where + " is not an object");
    auto it = o.find(key);
    expect(it != o.end(), where + " has no '" + key + "'");
    return *it;
  }
  std::string str(const Json& o, const char* key, const std::string& where, std::size_t max = kMaxName) const {
    const Json& v = field(o, key, where);
    expect(v.is_string(), where + "." + key + " is not a string");
    const auto& s = v.get_ref<const std::string&>();
    expect(s.size() <= max, where + "." + key + " is too long");
    return s;
  }
  int64_t integer(const Json& o, const char* key, const std::string& where, int64_t lo, int64_t hi) const {
    const Json& v = field(o, key, where);
    expect(v.is_number_integer(), where + "." + key + " is not an integer");
    const int64_t x = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                          ? hi + 1
                          : v.get<int64_t>();
    expect(x >= lo && x <= hi, where + "." + key + " is out of range");
    return x;
  }
  double number(const Json& o, const char* key, const std::string& where) const {
    const Json& v = field(o, key, where);
    expect(v.is_number(), where + "." + key + " is not a number");
    const double x = v.get<double>();
    expect(std::isfinite(x), where + "." + key + " is not finite");
    return x;
  }
  bool boolean(const Json& o, const char* key, const std::string& where) const {
    const Json& v = field(o, key, where);
    expect(v.is_boolean(), where + "." + key + " is not a boolean");
    return v.get<bool>();
  }

  /// A blob reference {offset, count} of T, with exactly `want` elements when want >= 0.
  template <class T>
  std::vector<T> array(const Json& o, const char* key, const std::string& where, int64_t want) const {
    const Json& r = field(o, key, where);
    const std::string w = where + "." + key;
    expect(r.is_array() && r.size() == 2 && r[0].is_number_unsigned() && r[1].is_number_unsigned(),
           w + " is not an [offset, count] reference");
    const uint64_t off = r[0].get<uint64_t>(), count = r[1].get<uint64_t>();
    expect(count <= kMaxCount, w + " is too long");
    expect(want < 0 || count == static_cast<uint64_t>(want), w + " has the wrong number of elements");
    expect(off % 8 == 0 && off <= blob_bytes_ && count * sizeof(T) <= blob_bytes_ - off,
           w + " points outside the data section");
    std::vector<T> v(static_cast<std::size_t>(count));
    if (count) std::memcpy(v.data(), blob_ + off, static_cast<std::size_t>(count) * sizeof(T));
    return v;
  }

 private:
  std::string source_;
  const unsigned char* blob_;
  uint64_t blob_bytes_;
};

}  // namespace

std::string AlignmentSketch::serialize() const {
  BlobWriter blob;
  Json j;
  j["didmark_sketch"] = kSketchVersion;
  j["kind"] = std::string(sketch_kind_name(kind));
  j["did"] = did;
  j["scheme"] = scheme;
  j["strength"] = strength;
  j["architecture"] = architecture;
  j["samples"] = samples;
  j["model_bytes"] = model_bytes;
  j["all"] = all;
  Json ts = Json::array();
  for (const auto& t : tensors) {
    Json e;
    e["name"] = t.name;
    e["dtype"] = dtype_text(t.dtype);
    e["shape"] = t.shape;
    e["dims"] = Json::array({t.dims[0], t.dims[1]});
    e["out_axis"] = t.out_axis;
    e["roles"] = Json::array({t.roles[0], t.roles[1]});
    e["marked"] = t.marked;
    e["rms"] = t.rms;
    e["row_quantiles"] = t.row_quantiles;
    e["col_quantiles"] = t.col_quantiles;
    if (!t.bn_gain.empty()) e["bn_gain"] = blob.add(t.bn_gain);
    ts.push_back(std::move(e));
  }
  j["tensors"] = std::move(ts);
  Json ds = Json::array();
  for (const auto& d : dims) {
    Json e;
    e["label"] = d.label;
    e["size"] = d.size;
    e["anchored"] = d.anchored;
    e["source"] = d.source;
    e["source_axis"] = d.source_axis;
    e["samples"] = blob.add(d.samples);
    e["signature"] = blob.add(d.signature);
    e["scales"] = blob.add(d.scales);
    e["vectors"] = d.vectors;
    e["vector_values"] = blob.add(d.vector_values);
    ds.push_back(std::move(e));
  }
  j["dims"] = std::move(ds);
  if (kind == SketchKind::array) {
    Json a;
    a["rows"] = array.rows;
    a["dim"] = array.dim;
    a["ids"] = blob.add(array.ids);
    a["values"] = blob.add(array.values);
    a["scales"] = blob.add(array.scales);
    j["array"] = std::move(a);
  }
  const std::string text = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  const std::string data = blob.take();
  std::string out;
  out.reserve(kFixed + text.size() + data.size() + kDigest);
  out.append(kMagic, sizeof kMagic);
  put_u32(out, kSketchVersion);
  put_u32(out, 0);
  put_u64(out, text.size());
  put_u64(out, data.size());
  out += text;
  out += data;
  const auto digest = detail::sha256(out);
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

void AlignmentSketch::write(const std::filesystem::path& path, bool overwrite) const {
  const std::string bytes = serialize();
  detail::AtomicFile f(path, overwrite);
  f.write(bytes);
  f.commit();
}

AlignmentSketch AlignmentSketch::read(const std::filesystem::path& path) {
  const MappedFile file(path);
  return parse(std::span(file.data(), file.size()), path.string());
}

AlignmentSketch AlignmentSketch::parse(std::span<const unsigned char> bytes, std::string_view source) {
  const std::string src(source);
  auto fail = [&](const std::string& what) { DIDMARK_THROW(Errc::corrupt_input, "sketch '", src, "': ", what); };
  if (bytes.size() < kFixed + kDigest) fail("too short to be a didmark sketch (truncated?)");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) fail("not a didmark sketch (bad magic)");
  const uint32_t version = get_u32(bytes.data() + 8);
  DIDMARK_EXPECTS(version <= kSketchVersion && version >= 1, unsupported, "sketch '", src, "' has format version ",
                  version, "; this didmark reads version ", kSketchVersion);
  const uint64_t json_bytes = get_u64(bytes.data() + 16), blob_bytes = get_u64(bytes.data() + 24);
  if (json_bytes > kMaxJson || blob_bytes > kMaxBlob) fail("section sizes are out of range");
  if (kFixed + json_bytes + blob_bytes + kDigest != bytes.size())
    fail("section sizes do not add up to the file size (truncated or extended?)");
  const auto digest = detail::sha256(bytes.first(bytes.size() - kDigest));
  if (std::memcmp(digest.data(), bytes.data() + bytes.size() - kDigest, kDigest) != 0)
    fail("checksum mismatch (corrupted or modified)");

  Json j;
  try {
    j = Json::parse(bytes.begin() + kFixed, bytes.begin() + static_cast<std::ptrdiff_t>(kFixed + json_bytes));
  } catch (const nlohmann::json::exception&) {
    fail("the header is not valid JSON");
  }
  const Reader r(src, bytes.data() + kFixed + json_bytes, blob_bytes);
  AlignmentSketch sk;
  r.expect(r.integer(j, "didmark_sketch", "header", 1, kSketchVersion) == static_cast<int64_t>(version),
           "header version differs from the file's");
  const std::string kind = r.str(j, "kind", "header");
  r.expect(kind == "checkpoint" || kind == "array", "kind is neither checkpoint nor array");
  sk.kind = kind == "array" ? SketchKind::array : SketchKind::checkpoint;
  sk.did = r.str(j, "did", "header");
  r.expect(!sk.did.empty(), "the owner DID is empty");
  sk.scheme = r.str(j, "scheme", "header", 64);
  sk.strength = r.number(j, "strength", "header");
  r.expect(sk.strength > 0 && sk.strength < 1, "strength is out of range");
  sk.architecture = r.str(j, "architecture", "header", 64);
  sk.samples = static_cast<int>(r.integer(j, "samples", "header", 0, kMaxSketchSamples));
  sk.model_bytes = static_cast<uint64_t>(r.integer(j, "model_bytes", "header", 0, INT64_MAX));
  sk.all = r.boolean(j, "all", "header");

  const Json& ts = r.field(j, "tensors", "header");
  const Json& ds = r.field(j, "dims", "header");
  r.expect(ts.is_array() && ts.size() <= kMaxTensors, "tensors is not a list of bounded length");
  r.expect(ds.is_array() && ds.size() <= kMaxTensors, "dims is not a list of bounded length");
  const auto ndims = static_cast<int64_t>(ds.size());
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const std::string w = "tensor " + std::to_string(i);
    const Json& e = ts[i];
    SketchTensor t;
    t.name = r.str(e, "name", w);
    const auto dt = parse_dtype(r.str(e, "dtype", w, 16));
    r.expect(dt.has_value(), w + " has an unknown dtype");
    t.dtype = *dt;
    const Json& shape = r.field(e, "shape", w);
    r.expect(shape.is_array() && shape.size() <= kMaxRank, w + " has a bad shape");
    uint64_t numel = 1;
    for (const auto& s : shape) {
      r.expect(s.is_number_unsigned() && s.get<uint64_t>() <= kMaxCount, w + " has a bad shape");
      t.shape.push_back(static_cast<int64_t>(s.get<uint64_t>()));
      r.expect(s.get<uint64_t>() == 0 || numel <= (uint64_t{1} << 50) / s.get<uint64_t>(), w + " is too large");
      numel *= s.get<uint64_t>();
    }
    const Json& dd = r.field(e, "dims", w);
    r.expect(dd.is_array() && dd.size() == 2, w + " has a bad dims entry");
    for (int a = 0; a < 2; ++a) {
      r.expect(dd[static_cast<std::size_t>(a)].is_number_integer(), w + " has a bad dims entry");
      const int64_t d = dd[static_cast<std::size_t>(a)].get<int64_t>();
      r.expect(d >= -1 && d < ndims, w + " names a dimension that does not exist");
      r.expect(d < 0 || t.shape.size() >= 2 || (t.shape.size() == 1 && a == 0),
               w + " has a dimension on an axis it does not have");
      t.dims[static_cast<std::size_t>(a)] = static_cast<int>(d);
    }
    t.out_axis = static_cast<int>(r.integer(e, "out_axis", w, 0, 1));
    const Json& roles = r.field(e, "roles", w);
    r.expect(roles.is_array() && roles.size() == 2, w + " has a bad roles entry");
    for (int a = 0; a < 2; ++a) {
      const Json& x = roles[static_cast<std::size_t>(a)];
      r.expect(x.is_number_integer() && x.get<int64_t>() >= -1 && x.get<int64_t>() <= 1, w + " has a bad roles entry");
      t.roles[static_cast<std::size_t>(a)] = static_cast<int8_t>(x.get<int64_t>());
    }
    t.marked = r.boolean(e, "marked", w);
    t.rms = static_cast<float>(r.number(e, "rms", w));
    for (const char* key : {"row_quantiles", "col_quantiles"}) {
      const Json& q = r.field(e, key, w);
      r.expect(q.is_array() && (q.empty() || q.size() == alignment::kQuantiles), w + " has bad quantiles");
      std::vector<float> v;
      for (const auto& x : q) {
        r.expect(x.is_number() && std::isfinite(x.get<double>()), w + " has bad quantiles");
        v.push_back(x.get<float>());
      }
      (key[0] == 'r' ? t.row_quantiles : t.col_quantiles) = std::move(v);
    }
    if (e.contains("bn_gain")) {
      t.bn_gain = r.array<float>(e, "bn_gain", w, -1);
      r.expect(t.shape.size() > 2 && static_cast<int64_t>(t.bn_gain.size()) == t.rows(), w + " has a bad bn_gain");
      for (float g : t.bn_gain) r.expect(std::isfinite(g), w + " has a bad bn_gain");
    }
    sk.tensors.push_back(std::move(t));
  }
  for (std::size_t i = 0; i < ds.size(); ++i) {
    const std::string w = "dimension " + std::to_string(i);
    const Json& e = ds[i];
    SketchDim d;
    d.label = r.str(e, "label", w, 256);
    d.size = r.integer(e, "size", w, 1, static_cast<int64_t>(kMaxCount));
    d.anchored = r.boolean(e, "anchored", w);
    d.source = static_cast<int>(r.integer(e, "source", w, -1, static_cast<int64_t>(sk.tensors.size()) - 1));
    d.source_axis = static_cast<int>(r.integer(e, "source_axis", w, 0, 1));
    d.samples = r.array<int64_t>(e, "samples", w, -1);
    r.expect(d.samples.size() <= static_cast<std::size_t>(kMaxSketchSamples), w + " has too many samples");
    r.expect(d.source >= 0 || d.samples.empty(), w + " has samples but no source");
    if (d.source >= 0) {
      const SketchTensor& st = sk.tensors[static_cast<std::size_t>(d.source)];
      r.expect(st.shape.size() >= 2 && (d.source_axis == 0 || st.group() == 1) &&
                   st.dims[static_cast<std::size_t>(d.source_axis)] == static_cast<int>(i) &&
                   st.dims[static_cast<std::size_t>(1 - d.source_axis)] >= 0,
               w + " has a source tensor that does not lie in it");
      const int64_t other = d.source_axis == 0 ? st.cols() : st.rows();  // samples are matrix slices
      for (int64_t s : d.samples) r.expect(s >= 0 && s < other, w + " samples an index outside its source");
      r.expect(!d.samples.empty(), w + " has a source but no samples");
    }
    const int64_t m = static_cast<int64_t>(d.samples.size());
    r.expect(m == 0 || static_cast<uint64_t>(d.size) <= kMaxCount / static_cast<uint64_t>(m), w + " is too large");
    d.signature = r.array<int8_t>(e, "signature", w, d.size * m);
    d.scales = r.array<float>(e, "scales", w, m > 0 ? d.size : 0);
    for (float s : d.scales) r.expect(std::isfinite(s) && s >= 0, w + " has a bad scale");
    const Json& vs = r.field(e, "vectors", w);
    r.expect(vs.is_array() && vs.size() <= 4096, w + " has a bad vector list");
    for (const auto& v : vs) {
      r.expect(v.is_number_integer() && v.get<int64_t>() >= 0 &&
                   v.get<int64_t>() < static_cast<int64_t>(sk.tensors.size()),
               w + " lists a vector that does not exist");
      const SketchTensor& vt = sk.tensors[static_cast<std::size_t>(v.get<int64_t>())];
      r.expect(vt.shape.size() == 1 && vt.dims[0] == static_cast<int>(i), w + " lists a vector not along it");
      d.vectors.push_back(static_cast<int>(v.get<int64_t>()));
    }
    const int64_t nv = static_cast<int64_t>(d.vectors.size());
    r.expect(nv == 0 || static_cast<uint64_t>(d.size) <= kMaxCount / static_cast<uint64_t>(nv), w + " is too large");
    d.vector_values = r.array<float>(e, "vector_values", w, d.size * nv);
    for (float v : d.vector_values) r.expect(std::isfinite(v), w + " has a non-finite vector value");
    sk.dims.push_back(std::move(d));
  }
  // Every axis in a dimension has the dimension's size.
  for (std::size_t i = 0; i < sk.tensors.size(); ++i) {
    const SketchTensor& t = sk.tensors[i];
    for (int a = 0; a < 2; ++a) {
      const int d = t.dims[static_cast<std::size_t>(a)];
      if (d < 0) continue;
      const int64_t len = t.shape.size() == 1 ? t.shape[0] : t.shape[static_cast<std::size_t>(a)];
      r.expect(len == sk.dims[static_cast<std::size_t>(d)].size,
               "tensor " + std::to_string(i) + " does not have the size of its dimension");
    }
  }
  if (sk.kind == SketchKind::array) {
    const Json& a = r.field(j, "array", "header");
    sk.array.rows = r.integer(a, "rows", "array", 1, INT64_MAX);
    sk.array.dim = r.integer(a, "dim", "array", 1, 1 << 20);
    sk.array.ids = r.array<int64_t>(a, "ids", "array", -1);
    const auto m = static_cast<int64_t>(sk.array.ids.size());
    r.expect(m >= 1 && m <= sk.array.rows, "array has a bad number of sampled rows");
    r.expect(static_cast<uint64_t>(m) <= kMaxCount / static_cast<uint64_t>(sk.array.dim), "array is too large");
    sk.array.values = r.array<int8_t>(a, "values", "array", m * sk.array.dim);
    sk.array.scales = r.array<float>(a, "scales", "array", m);
    for (float s : sk.array.scales) r.expect(std::isfinite(s) && s >= 0, "array has a bad scale");
  } else {
    r.expect(!sk.tensors.empty(), "a checkpoint sketch lists no tensors");
  }
  return sk;
}

}  // namespace didmark
