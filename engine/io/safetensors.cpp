// safetensors files: read through a mapping, written through a mapping of a temporary file.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/mapped_output.hpp"
#include "common/printable.hpp"
#include "didmark/limits.hpp"

namespace didmark {
namespace {

using Json = nlohmann::ordered_json;

TensorView view_at(unsigned char* data, const SafetensorsTensorInfo& t) {
  return TensorView::contiguous(data + t.begin, t.dtype, t.shape);
}

std::vector<NamedTensor> named_views(unsigned char* data, const SafetensorsHeader& h) {
  std::vector<NamedTensor> out;
  out.reserve(h.tensors.size());
  for (const auto& t : h.tensors) out.push_back({t.name, view_at(data, t)});
  return out;
}

// The header bytes (length + JSON padded with spaces to a multiple of 8) of a fresh layout.
std::string header_bytes_for(std::vector<SafetensorsTensorInfo>& layout,
                             const std::vector<std::pair<std::string, std::string>>& metadata) {
  Json j = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    j["__metadata__"] = std::move(m);
  }
  for (const auto& t : layout) {
    Json e = Json::object();
    e["dtype"] = std::string(safetensors_dtype_name(t.dtype));
    e["shape"] = t.shape;
    e["data_offsets"] = {t.begin, t.end};
    j[t.name] = std::move(e);
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + text;
}

}  // namespace

// ---- reading ---------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : SafetensorsFile(std::make_shared<MappedFile>(path)) {}

SafetensorsFile::SafetensorsFile(std::shared_ptr<MappedFile> file) : file_(std::move(file)) {
  header_ = parse_safetensors_header(std::span(file_->data(), file_->size()), file_->path().string());
}

std::span<const unsigned char> SafetensorsFile::header_bytes() const noexcept {
  return {file_->data(), static_cast<std::size_t>(header_.data_offset())};
}

TensorView SafetensorsFile::view(const SafetensorsTensorInfo& t) const {
  return view_at(const_cast<unsigned char*>(file_->data() + header_.data_offset()), t);
}

std::vector<NamedTensor> SafetensorsFile::tensors() const {
  return named_views(const_cast<unsigned char*>(file_->data() + header_.data_offset()), header_);
}

// ---- writing ---------------------------------------------------------------------------

struct SafetensorsWriter::Impl {
  SafetensorsHeader header;
  std::unique_ptr<detail::MappedOutput> out;

  void create(const std::filesystem::path& target, bool overwrite, std::span<const unsigned char> header_bytes,
              uint64_t total) {
    out = std::make_unique<detail::MappedOutput>(target, overwrite, static_cast<std::size_t>(total));
    std::memcpy(out->data(), header_bytes.data(), header_bytes.size());
  }
  unsigned char* data() const { return out->data() + header.data_offset(); }
};

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& target, std::vector<SafetensorsEntry> entries,
                                     std::vector<std::pair<std::string, std::string>> metadata, bool overwrite) {
  std::unordered_set<std::string> names;
  for (const auto& e : entries) {
    DIDMARK_EXPECTS(e.name != "__metadata__", invalid_argument, "'", target.string(),
                    "': '__metadata__' is reserved and cannot name a tensor");
    DIDMARK_EXPECTS(names.insert(e.name).second, invalid_argument, "'", target.string(), "': tensor '", e.name,
                    "' is listed twice");
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return dtype_size(a.dtype) > dtype_size(b.dtype); });
  std::vector<SafetensorsTensorInfo> layout;
  uint64_t offset = 0;
  for (auto& e : entries) {
    uint64_t n = dtype_size(e.dtype);
    for (int64_t d : e.shape) {
      DIDMARK_EXPECTS(d >= 0, invalid_argument, "tensor '", e.name, "' has a negative dimension");
      DIDMARK_EXPECTS(d == 0 || n <= UINT64_MAX / static_cast<uint64_t>(d), invalid_argument, "tensor '", e.name,
                      "' is too large");
      n *= static_cast<uint64_t>(d);
    }
    layout.push_back({std::move(e.name), e.dtype, std::move(e.shape), offset, offset + n});
    offset += n;
  }
  const std::string hb = header_bytes_for(layout, metadata);
  impl_ = std::make_unique<Impl>();
  impl_->header.tensors = std::move(layout);
  impl_->header.metadata = std::move(metadata);
  impl_->header.header_length = hb.size() - 8;
  impl_->create(target, overwrite, std::span(reinterpret_cast<const unsigned char*>(hb.data()), hb.size()),
                impl_->header.data_offset() + offset);
}

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& target, const SafetensorsFile& like,
                                     bool overwrite)
    : impl_(std::make_unique<Impl>()) {
  impl_->header = like.header();
  impl_->create(target, overwrite, like.header_bytes(), like.size());
}

SafetensorsWriter::~SafetensorsWriter() = default;

const SafetensorsHeader& SafetensorsWriter::header() const noexcept { return impl_->header; }

TensorView SafetensorsWriter::view(const SafetensorsTensorInfo& t) const { return view_at(impl_->data(), t); }

std::vector<NamedTensor> SafetensorsWriter::tensors() const { return named_views(impl_->data(), impl_->header); }

void SafetensorsWriter::commit() { impl_->out->commit(); }

void write_safetensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata, bool overwrite) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& t : tensors) {
    validate_view(t.view, t.name);
    DIDMARK_EXPECTS(t.view.device == Device::cpu && t.view.is_contiguous(), invalid_argument,
                    "write_safetensors: tensor '", t.name, "' is not a contiguous host view (", t.view.describe(),
                    ")");
    entries.push_back({t.name, t.view.dtype, t.view.shape});
  }
  SafetensorsWriter w(path, std::move(entries), metadata, overwrite);
  for (const auto& t : tensors) {
    const auto& info = *std::find_if(w.header().tensors.begin(), w.header().tensors.end(),
                                     [&](const auto& i) { return i.name == t.name; });
    if (info.nbytes() > 0) std::memcpy(w.view(info).data, t.view.data, info.nbytes());
  }
  w.commit();
}

// ---- sharded index -----------------------------------------------------------------------

std::filesystem::path SafetensorsIndex::folder() const {
  return path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
}

namespace {

// SAX reader of an index: {"weight_map": {name: shard, ...}, anything else skipped}, depth
// capped, no document tree (ordered_json inserts keys by linear search: quadratic).
class IndexSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::vector<std::pair<std::string, std::string>> weight_map;
  std::string error;
  bool has_weight_map = false;

  bool null() override { return value(); }
  bool boolean(bool) override { return value(); }
  bool number_integer(number_integer_t) override { return value(); }
  bool number_unsigned(number_unsigned_t) override { return value(); }
  bool number_float(number_float_t, const string_t&) override { return value(); }
  bool binary(binary_t&) override { return value(); }
  bool string(string_t& v) override {
    if (depth_ == 2 && in_map_) {
      weight_map.emplace_back(std::move(key_), std::move(v));
      return true;
    }
    return value();
  }
  bool start_object(std::size_t) override {
    if (depth_ == 0) return deeper();
    if (depth_ == 1 && top_key_ == "weight_map") {
      if (has_weight_map) return fail("names weight_map twice");
      has_weight_map = in_map_ = true;
      return deeper();
    }
    return value() && deeper();
  }
  bool key(string_t& k) override {
    if (depth_ == 1) top_key_ = k;
    if (depth_ == 2 && in_map_) key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    if (depth_ == 2) in_map_ = false;
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return value() && deeper(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail("index is not valid JSON: ", detail::printable(e.what(), 200));
  }

 private:
  template <class... A>
  bool fail(const A&... a) {
    if (error.empty()) error = detail::concat(a...);
    return false;
  }
  bool deeper() {
    if (++depth_ > kSafetensorsMaxDepth)
      return fail("index nests JSON deeper than ", kSafetensorsMaxDepth, " levels (kSafetensorsMaxDepth)");
    return true;
  }
  bool value() {
    if (depth_ == 0) return fail("index is not a JSON object");
    if (depth_ == 2 && in_map_) return fail("weight_map entry '", detail::quoted(key_), "' is not a file name");
    if (depth_ == 1 && top_key_ == "weight_map") return fail("index has no weight_map object");
    return true;
  }

  std::size_t depth_ = 0;
  bool in_map_ = false;
  std::string top_key_, key_;
};

}  // namespace

SafetensorsIndex read_safetensors_index(const std::filesystem::path& path) {
  const std::string name = detail::printable(path.native(), 1024);
  MappedFile f(path);
  IndexSax sax;
  const auto* text = reinterpret_cast<const char*>(f.data());
  const bool ok = nlohmann::json::sax_parse(text, text + f.size(), &sax);
  DIDMARK_EXPECTS(ok && sax.error.empty(), corrupt_input, "'", name, "': ",
                  sax.error.empty() ? std::string("index is not valid JSON") : sax.error);
  DIDMARK_EXPECTS(sax.has_weight_map, corrupt_input, "'", name, "': index has no weight_map object");
  {
    std::vector<std::string_view> names;
    names.reserve(sax.weight_map.size());
    for (const auto& e : sax.weight_map) names.emplace_back(e.first);
    std::sort(names.begin(), names.end());
    const auto dup = std::adjacent_find(names.begin(), names.end());
    DIDMARK_EXPECTS(dup == names.end(), corrupt_input, "'", name, "': weight_map names tensor '",
                    detail::quoted(*dup), "' twice");
  }
  SafetensorsIndex idx;
  idx.path = path;
  std::unordered_set<std::string> seen;
  for (auto& [tensor, shard] : sax.weight_map) {
    DIDMARK_EXPECTS(!shard.empty() && shard != "." && shard != ".." && shard.find('/') == std::string::npos &&
                        shard.find('\\') == std::string::npos && shard.find('\0') == std::string::npos,
                    corrupt_input, "'", name, "': weight_map entry '", detail::quoted(tensor), "' names '",
                    detail::quoted(shard), "', which is not a plain file name in the index's folder");
    if (seen.insert(shard).second) idx.shards.push_back(shard);
    idx.weight_map.emplace_back(std::move(tensor), std::move(shard));
  }
  DIDMARK_EXPECTS(!idx.shards.empty(), corrupt_input, "'", name, "': index lists no shards");
  return idx;
}

std::string safetensors_index_json(const std::vector<std::pair<std::string, std::string>>& weight_map,
                                   uint64_t total_size) {
  auto sorted = weight_map;
  std::sort(sorted.begin(), sorted.end());
  Json wm = Json::object();
  for (const auto& [k, v] : sorted) wm[k] = v;
  Json j = Json::object();
  j["metadata"] = {{"total_size", total_size}};
  j["weight_map"] = std::move(wm);
  return j.dump(2) + "\n";
}

}  // namespace didmark
