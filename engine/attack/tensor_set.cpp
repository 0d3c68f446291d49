// Checkpoints held in memory for the attacks: load any format, write it back the same way.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>

#include "attack/fp8.hpp"
#include "common/atomic_file.hpp"
#include "didmark/attack.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {
namespace fs = std::filesystem;

OwnedTensor::OwnedTensor(std::string n, DType t, std::vector<int64_t> s)
    : name(std::move(n)), dtype(t), shape(std::move(s)) {
  bytes.assign(static_cast<std::size_t>(numel()) * dtype_size(dtype), 0);
}

OwnedTensor OwnedTensor::copy_of(std::string name, const TensorView& v) {
  DIDMARK_EXPECTS(v.device == Device::cpu && v.is_contiguous(), invalid_argument, "tensor '", name,
                  "' is not a contiguous host view");
  OwnedTensor t(std::move(name), v.dtype, v.shape);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), v.data, t.bytes.size());
  return t;
}

int64_t OwnedTensor::numel() const noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorView OwnedTensor::view() const {
  // +0 elements still need a non-null pointer for validate_view; any address works then.
  void* p = bytes.empty() ? static_cast<void*>(const_cast<OwnedTensor*>(this))
                          : static_cast<void*>(const_cast<unsigned char*>(bytes.data()));
  return TensorView::contiguous(p, dtype, shape);
}

bool OwnedTensor::is_floating() const noexcept {
  return is_watermarkable(dtype) || dtype == DType::f8_e4m3 || dtype == DType::f8_e5m2;
}

std::vector<double> OwnedTensor::values() const {
  DIDMARK_EXPECTS(is_floating(), invalid_argument, "tensor '", name, "' (", dtype_name(dtype), ") is not floating");
  const auto n = static_cast<std::size_t>(numel());
  std::vector<double> out(n);
  const unsigned char* p = bytes.data();
  switch (dtype) {
    case DType::f64: std::memcpy(out.data(), p, n * 8); break;
    case DType::f32:
      for (std::size_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        out[i] = f;
      }
      break;
    case DType::f16:
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = dtype == DType::f16 ? detail::f16_to_f32(h) : detail::bf16_to_f32(h);
      }
      break;
    case DType::f8_e4m3:
    case DType::f8_e5m2:
      for (std::size_t i = 0; i < n; ++i) out[i] = attack_detail::fp8_to_double(p[i], dtype);
      break;
    default: break;
  }
  return out;
}

void OwnedTensor::assign(std::span<const double> v) {
  DIDMARK_EXPECTS(is_floating(), invalid_argument, "tensor '", name, "' (", dtype_name(dtype), ") is not floating");
  const auto n = static_cast<std::size_t>(numel());
  DIDMARK_ASSERT(v.size() == n);
  unsigned char* p = bytes.data();
  switch (dtype) {
    case DType::f64: std::memcpy(p, v.data(), n * 8); break;
    case DType::f32:
      for (std::size_t i = 0; i < n; ++i) {
        const float f = static_cast<float>(v[i]);
        std::memcpy(p + 4 * i, &f, 4);
      }
      break;
    case DType::f16:
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        // Through f32 first: double -> f32 -> f16 can double-round, but only at exact
        // f32 ties, which the attacks' arithmetic does not aim at.
        const float f = static_cast<float>(v[i]);
        const uint16_t h = dtype == DType::f16 ? detail::f32_to_f16_rne(f) : detail::f32_to_bf16_rne(f);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case DType::f8_e4m3:
    case DType::f8_e5m2:
      for (std::size_t i = 0; i < n; ++i) p[i] = attack_detail::double_to_fp8(v[i], dtype);
      break;
    default: break;
  }
}

OwnedTensor* TensorSet::find(std::string_view name) {
  for (auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const OwnedTensor* TensorSet::find(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<NamedTensor> TensorSet::named() const {
  std::vector<NamedTensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) out.push_back({t.name, t.view()});
  return out;
}

uint64_t TensorSet::bytes() const noexcept {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.bytes.size();
  return n;
}

TensorSet load_tensor_set(const fs::path& path, std::optional<CheckpointFormat> format) {
  if (!format) format = guess_checkpoint_format(path);
  DIDMARK_EXPECTS(format.has_value(), invalid_argument, "'", path.string(),
                  "': cannot tell the format from the name (.safetensors, .safetensors.index.json or a folder "
                  "holding one, .pt/.pth/.bin, .npy)");
  const fs::path resolved = resolve_checkpoint_path(path, *format);
  const CheckpointReader reader = CheckpointReader::open(resolved, *format);
  TensorSet s;
  s.source = resolved;
  s.format = *format;
  s.withheld = reader.withheld();
  for (const auto& t : reader.tensors()) s.tensors.push_back(OwnedTensor::copy_of(t.name, t.view));
  if (*format == CheckpointFormat::safetensors) {
    s.metadata = SafetensorsFile(resolved).header().metadata;
  } else if (*format == CheckpointFormat::safetensors_sharded) {
    s.shard_of = read_safetensors_index(resolved).weight_map;
  }
  return s;
}

namespace {

void refuse_source(const TensorSet& set, const fs::path& out) {
  std::error_code ec;
  if (!fs::exists(out, ec)) return;
  std::vector<fs::path> inputs{set.source};
  if (set.format == CheckpointFormat::safetensors_sharded && !set.source.empty()) {
    for (const auto& [t, shard] : set.shard_of) inputs.push_back(set.source.parent_path() / shard);
  }
  for (const auto& in : inputs)
    DIDMARK_EXPECTS(in.empty() || !fs::equivalent(in, out, ec), invalid_argument, "output '", out.string(),
                    "' is the input '", in.string(), "': write the attacked copy to a new file");
}

void refuse_existing(const fs::path& out, bool overwrite) {
  std::error_code ec;
  DIDMARK_EXPECTS(overwrite || !fs::exists(out, ec), invalid_argument, "output '", out.string(),
                  "' already exists (use --force to overwrite)");
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

SaveReport save_sharded(const TensorSet& set, const fs::path& out, bool overwrite) {
  constexpr std::string_view kIndex = ".safetensors.index.json";
  const bool out_is_index = ends_with(out.filename().string(), kIndex);
  const fs::path dir = out_is_index ? (out.has_parent_path() ? out.parent_path() : fs::path(".")) : out;
  const std::string index_name =
      out_is_index ? out.filename().string()
                   : (set.source.empty() ? std::string("model.safetensors.index.json") : set.source.filename().string());
  std::error_code ec;
  fs::create_directories(dir, ec);
  DIDMARK_EXPECTS(fs::is_directory(dir, ec), io_error, "cannot create output folder '", dir.string(), "'");
  const fs::path index_out = dir / index_name;
  refuse_source(set, index_out);
  refuse_existing(index_out, overwrite);

  std::map<std::string, std::string> origin(set.shard_of.begin(), set.shard_of.end());
  std::vector<std::string> shard_order;
  for (const auto& [t, shard] : set.shard_of)
    if (std::find(shard_order.begin(), shard_order.end(), shard) == shard_order.end()) shard_order.push_back(shard);
  if (shard_order.empty()) shard_order.push_back("model-00001-of-00001.safetensors");
  std::map<std::string, std::vector<NamedTensor>> per_shard;
  std::vector<std::pair<std::string, std::string>> weight_map;
  for (const auto& t : set.tensors) {
    const auto it = origin.find(t.name);
    const std::string& shard = it != origin.end() ? it->second : shard_order.back();
    per_shard[shard].push_back({t.name, t.view()});
    weight_map.emplace_back(t.name, shard);
  }
  SaveReport r;
  for (const auto& shard : shard_order) {
    const fs::path p = dir / shard;
    refuse_source(set, p);
    write_safetensors(p, per_shard[shard], {}, overwrite);
    r.outputs.push_back(p);
    r.bytes += fs::file_size(p, ec);
  }
  uint64_t total = 0;
  for (const auto& t : set.tensors) total += t.bytes.size();
  const std::string text = safetensors_index_json(weight_map, total);
  detail::write_file_atomically(index_out, text, overwrite);
  r.outputs.push_back(index_out);
  r.bytes += text.size();
  return r;
}

SaveReport save_torch(const TensorSet& set, const fs::path& out, bool overwrite) {
  SaveReport r;
  bool same = !set.source.empty();
  std::optional<TorchCheckpoint> ck;
  if (same) {
    ck = TorchCheckpoint::load(set.source);
    const auto& orig = ck->tensors();
    same = orig.size() == set.tensors.size();
    for (std::size_t i = 0; same && i < orig.size(); ++i)
      same = orig[i].name == set.tensors[i].name && orig[i].view.dtype == set.tensors[i].dtype &&
             orig[i].view.shape == set.tensors[i].shape;
  }
  if (same) {
    const auto& orig = ck->tensors();
    for (std::size_t i = 0; i < orig.size(); ++i)
      if (!set.tensors[i].bytes.empty())
        std::memcpy(orig[i].view.data, set.tensors[i].bytes.data(), set.tensors[i].bytes.size());
    ck->save(out, overwrite);
    r.torch_layout = "container";
  } else {
    const auto named = set.named();
    TorchCheckpoint::save_tensors(out, named, overwrite);
    r.torch_layout = "state dict";
  }
  r.outputs.push_back(out);
  std::error_code ec;
  r.bytes = fs::file_size(out, ec);
  return r;
}

}  // namespace

SaveReport save_tensor_set(const TensorSet& set, const fs::path& out, bool overwrite) {
  if (set.format == CheckpointFormat::safetensors_sharded) return save_sharded(set, out, overwrite);
  refuse_source(set, out);
  refuse_existing(out, overwrite);
  SaveReport r;
  switch (set.format) {
    case CheckpointFormat::safetensors: {
      const auto named = set.named();
      write_safetensors(out, named, set.metadata, overwrite);
      r.outputs.push_back(out);
      break;
    }
    case CheckpointFormat::torch: return save_torch(set, out, overwrite);
    case CheckpointFormat::npy: {
      DIDMARK_EXPECTS(set.tensors.size() == 1, invalid_argument, "a .npy output holds one array; the attacked set has ",
                      set.tensors.size(), " tensors");
      const OwnedTensor& t = set.tensors.front();
      DIDMARK_EXPECTS(t.dtype != DType::bf16 && t.dtype != DType::f8_e4m3 && t.dtype != DType::f8_e5m2, unsupported,
                      ".npy cannot hold ", dtype_name(t.dtype), " ('", out.string(), "')");
      write_npy(out, t.view(), overwrite);
      r.outputs.push_back(out);
      break;
    }
    default: break;
  }
  std::error_code ec;
  r.bytes = fs::file_size(out, ec);
  return r;
}

double relative_weight_change(const TensorSet& attacked, const TensorSet& original) {
  double num = 0, den = 0;
  for (const auto& o : original.tensors) {
    if (!o.is_floating()) continue;
    const OwnedTensor* a = attacked.find(o.name);
    if (!a || a->shape != o.shape || !a->is_floating()) continue;
    const auto x = o.values(), y = a->values();
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (!std::isfinite(x[i]) || !std::isfinite(y[i])) continue;
      num += (y[i] - x[i]) * (y[i] - x[i]);
      den += x[i] * x[i];
    }
  }
  return den > 0 ? std::sqrt(num / den) : 0;
}

}  // namespace didmark
