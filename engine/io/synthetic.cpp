// Synthetic transformer-shaped checkpoints, generated straight into the output mapping.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "common/atomic_file.hpp"
#include "common/thread_pool.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/detail/hash.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

struct Spec {
  SafetensorsEntry entry;
  double mean = 0, sigma = 0.02;
};

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Approximately N(0, 1): Irwin-Hall sum of four 16-bit uniforms from one hash, rescaled.
double gauss(uint64_t seed, uint64_t i) {
  const uint64_t r = splitmix64(seed ^ (i * 0xD1B54A32D192ED03ull));
  const double s = static_cast<double>(r & 0xFFFF) + static_cast<double>((r >> 16) & 0xFFFF) +
                   static_cast<double>((r >> 32) & 0xFFFF) + static_cast<double>(r >> 48);
  return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;
}

void fill(const TensorView& v, const Spec& s, uint64_t seed, detail::ThreadPool& pool) {
  const int64_t n = v.numel();
  constexpr int64_t kChunk = 1 << 20;
  pool.parallel_for((n + kChunk - 1) / kChunk, [&](int, int64_t c) {
    const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
    for (int64_t i = b; i < e; ++i) {
      const auto u = static_cast<uint64_t>(i);
      switch (v.dtype) {
        case DType::f32:
          static_cast<float*>(v.data)[i] = static_cast<float>(s.mean + s.sigma * gauss(seed, u));
          break;
        case DType::f16:
          static_cast<uint16_t*>(v.data)[i] =
              detail::f32_to_f16_rne(static_cast<float>(s.mean + s.sigma * gauss(seed, u)));
          break;
        case DType::bf16:
          static_cast<uint16_t*>(v.data)[i] =
              detail::f32_to_bf16_rne(static_cast<float>(s.mean + s.sigma * gauss(seed, u)));
          break;
        case DType::i64: static_cast<int64_t*>(v.data)[i] = i; break;
        default: DIDMARK_ASSERT(false);
      }
    }
  });
}

std::vector<Spec> layout(const SyntheticCheckpointOptions& o) {
  DIDMARK_EXPECTS(o.dtype == DType::f32 || o.dtype == DType::f16 || o.dtype == DType::bf16, invalid_argument,
                  "synthetic checkpoints are f32, f16 or bf16, not ", dtype_name(o.dtype));
  DIDMARK_EXPECTS(o.params > 0 && o.hidden >= 16, invalid_argument, "params must be positive and hidden >= 16");
  int64_t d = o.hidden;
  while (d > 64 && 14 * d * d > o.params) d /= 2;
  const int64_t vocab = 8 * d, f = 4 * d;
  const int64_t per_layer = 12 * d * d + 3 * d;
  const int64_t rest = o.params - vocab * d;
  const int64_t layers = std::max<int64_t>(1, (rest + per_layer - 1) / per_layer);
  const DType t = o.dtype;
  std::vector<Spec> out;
  auto add = [&](std::string name, DType dt, std::vector<int64_t> shape, double mean, double sigma) {
    out.push_back({{std::move(name), dt, std::move(shape)}, mean, sigma});
  };
  add("model.embed_tokens.weight", t, {vocab, d}, 0, 0.02);
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", t, {d}, 1.0, 0.02);
    for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) add(p + "self_attn." + m + ".weight", t, {d, d}, 0, 0.02);
    add(p + "post_attention_layernorm.weight", t, {d}, 1.0, 0.02);
    add(p + "mlp.up_proj.weight", t, {f, d}, 0, 0.02);
    add(p + "mlp.down_proj.weight", t, {d, f}, 0, 0.01);
    add(p + "mlp.down_proj.bias", t, {d}, 0, 0.001);
  }
  add("model.norm.weight", t, {d}, 1.0, 0.02);
  add("model.position_ids", DType::i64, {1, 2048}, 0, 0);
  return out;
}

uint64_t bytes_of(const SafetensorsEntry& e) {
  uint64_t n = dtype_size(e.dtype);
  for (auto s : e.shape) n *= static_cast<uint64_t>(s);
  return n;
}

}  // namespace

SyntheticCheckpointReport write_synthetic_checkpoint(const fs::path& path, const SyntheticCheckpointOptions& o) {
  DIDMARK_EXPECTS(o.shards >= 1, invalid_argument, "shards must be at least 1, got ", o.shards);
  const auto specs = layout(o);
  DIDMARK_EXPECTS(static_cast<std::size_t>(o.shards) <= specs.size(), invalid_argument, "cannot split ",
                  specs.size(), " tensors into ", o.shards, " shards");
  SyntheticCheckpointReport rep;
  uint64_t total = 0;
  for (const auto& s : specs) {
    total += bytes_of(s.entry);
    if (s.entry.dtype != DType::i64) rep.params += TensorView::contiguous(nullptr, s.entry.dtype, s.entry.shape).numel();
  }
  rep.tensors = static_cast<int>(specs.size());

  // Shard k takes tensors in order until it holds about total/K bytes, leaving at least one
  // tensor for every later shard.
  std::vector<int> shard_of(specs.size());
  {
    int k = 0;
    uint64_t acc = 0;
    const uint64_t target = total / static_cast<uint64_t>(o.shards);
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::size_t left = specs.size() - i;
      if (k < o.shards - 1 && acc > 0 &&
          (acc >= target || left == static_cast<std::size_t>(o.shards - 1 - k))) {
        ++k;
        acc = 0;
      }
      shard_of[i] = k;
      acc += bytes_of(specs[i].entry);
    }
    DIDMARK_ASSERT(k == o.shards - 1);
  }

  fs::path dir, index_path;
  if (o.shards > 1) {
    const std::string name = path.filename().string();
    const bool is_index = name.size() > 11 && name.compare(name.size() - 11, 11, ".index.json") == 0;
    dir = is_index ? (path.has_parent_path() ? path.parent_path() : fs::path(".")) : path;
    index_path = is_index ? path : dir / "model.safetensors.index.json";
    std::error_code ec;
    fs::create_directories(dir, ec);
    DIDMARK_EXPECTS(!ec, io_error, "cannot create folder '", dir.string(), "': ", ec.message());
    DIDMARK_EXPECTS(o.overwrite || !fs::exists(index_path), invalid_argument, "output '", index_path.string(),
                    "' already exists (use --force to overwrite)");
  }

  const auto cpu = make_cpu_backend();  // the process's one pool
  detail::ThreadPool& pool = cpu->host_pool();
  std::vector<std::pair<std::string, std::string>> weight_map;
  const std::vector<std::pair<std::string, std::string>> metadata{{"format", "pt"},
                                                                  {"generator", "didmark synth checkpoint"}};
  for (int k = 0; k < o.shards; ++k) {
    fs::path file = path;
    if (o.shards > 1) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, o.shards);
      file = dir / name;
    }
    std::vector<SafetensorsEntry> entries;
    std::vector<const Spec*> mine;
    for (std::size_t i = 0; i < specs.size(); ++i)
      if (shard_of[i] == k) {
        entries.push_back(specs[i].entry);
        mine.push_back(&specs[i]);
        weight_map.emplace_back(specs[i].entry.name, file.filename().string());
      }
    SafetensorsWriter w(file, std::move(entries), metadata, o.overwrite);
    for (const auto& info : w.header().tensors) {
      const Spec* s = *std::find_if(mine.begin(), mine.end(), [&](const Spec* x) { return x->entry.name == info.name; });
      const uint64_t seed = splitmix64(o.seed ^ detail::fnv1a64(info.name));
      fill(w.view(info), *s, seed, pool);
    }
    w.commit();
    rep.files.push_back(file);
    rep.bytes += w.header().data_offset() + w.header().data_bytes();
  }
  if (o.shards > 1) {
    const std::string text = safetensors_index_json(weight_map, total);
    detail::write_file_atomically(index_path, text, o.overwrite);
    rep.files.push_back(index_path);
    rep.bytes += text.size();
  }
  return rep;
}

}  // namespace didmark
