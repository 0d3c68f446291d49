// safetensors files: read through a mapping, written through a mapping of a temporary file.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/mapped_output.hpp"
#include "io/printable.hpp"

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

SafetensorsIndex read_safetensors_index(const std::filesystem::path& path) {
  const std::string name = path.string();
  MappedFile f(path);
  Json j;
  try {
    j = Json::parse(reinterpret_cast<const char*>(f.data()), reinterpret_cast<const char*>(f.data()) + f.size());
  } catch (const Json::exception& e) {
    DIDMARK_THROW(Errc::corrupt_input, "'", name, "': index is not valid JSON: ", detail::printable(e.what()));
  }
  DIDMARK_EXPECTS(j.is_object(), corrupt_input, "'", name, "': index is not a JSON object");
  const auto wm = j.find("weight_map");
  DIDMARK_EXPECTS(wm != j.end() && wm->is_object(), corrupt_input, "'", name, "': index has no weight_map object");
  SafetensorsIndex idx;
  idx.path = path;
  std::unordered_set<std::string> seen;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    DIDMARK_EXPECTS(it.value().is_string(), corrupt_input, "'", name, "': weight_map entry '", it.key(),
                    "' is not a file name");
    const std::string shard = it.value().get<std::string>();
    DIDMARK_EXPECTS(!shard.empty() && shard != "." && shard != ".." && shard.find('/') == std::string::npos &&
                        shard.find('\\') == std::string::npos && shard.find('\0') == std::string::npos,
                    corrupt_input, "'", name, "': weight_map entry '", it.key(), "' names '", shard,
                    "', which is not a plain file name in the index's folder");
    if (seen.insert(shard).second) idx.shards.push_back(shard);
    idx.weight_map.emplace_back(it.key(), shard);
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
