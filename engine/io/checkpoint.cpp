// Checkpoint files end to end: format dispatch, zero-copy readers, embed into a new file
// through an output mapping, verification reading every tensor once.
#include "didmark/checkpoint.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "common/strings.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/mapped_output.hpp"
#include "io/npy_detail.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kIndexSuffix = ".safetensors.index.json";



std::vector<fs::path> index_files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && detail::ascii_lower(e.path().filename().string()).ends_with(kIndexSuffix))
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

bool aligned(const TensorView& v) {
  return v.numel() == 0 || reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) == 0;
}

// A private, aligned copy of a view's bytes.
struct Staging {
  std::vector<std::unique_ptr<double[]>> buffers;
  TensorView stage(const TensorView& v, bool copy) {
    const std::size_t n = v.nbytes();
    buffers.push_back(std::make_unique<double[]>((n + sizeof(double) - 1) / sizeof(double) + 1));
    TensorView s = v;
    s.data = buffers.back().get();
    if (copy && n) std::memcpy(s.data, v.data, n);
    return s;
  }
};

uint64_t file_bytes(const fs::path& p) {
  std::error_code ec;
  const auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// Map hint: read once, front to back. The kernel then reads ahead of the page faults in large
// windows (read_ahead_kb) and drops pages behind. Measured on the 2 GiB benchmark file, this
// alone reads a cold file as fast as read() does; MADV_WILLNEED on the whole mapping, or a
// thread issuing POSIX_FADV_WILLNEED ahead of the work, were slower (docs/perf/io.md).
void advise(const MappedFile& f) {
  if (f.data()) ::madvise(const_cast<unsigned char*>(f.data()), f.size(), MADV_SEQUENTIAL);
}

// Never write over the input: compares the files themselves (links, relative paths).
void refuse_input_as_output(const fs::path& in, const fs::path& out) {
  std::error_code ec;
  DIDMARK_EXPECTS(!(fs::exists(out, ec) && fs::equivalent(in, out, ec)), invalid_argument, "output '", out.string(),
                  "' is the input '", in.string(), "': write the marked copy to a new file");
}

void refuse_existing(const fs::path& out, bool overwrite) {
  std::error_code ec;
  DIDMARK_EXPECTS(overwrite || !fs::exists(out, ec), invalid_argument, "output '", out.string(),
                  "' already exists (use --force to overwrite)");
}

// Eligibility is part of the mark: embed and verify must apply the same adjustments.
WatermarkOptions adjusted(WatermarkOptions o, CheckpointFormat f) {
  if (f == CheckpointFormat::npy) o.policy.min_rank = std::min(o.policy.min_rank, 1);
  return o;
}

// Refuse results that must not be written: nothing marked, or over the fidelity budget.
void check_embed_result(const EmbedReport& r, const fs::path& in, const WatermarkOptions& o, bool allow_weak) {
  if (r.tensors_marked == 0) {
    std::string why;
    for (const auto& t : r.tensors)
      if (!t.used && why.size() < 200) why += (why.empty() ? "" : "; ") + detail::quoted(t.name) + ": " + t.skip_reason;
    DIDMARK_THROW(Errc::invalid_argument, "'", in.string(), "': no tensor can carry a mark",
                  why.empty() ? std::string(" (the checkpoint has no tensors)") : " (" + why + ")",
                  "; choose tensors with --tensors");
  }
  if (!r.within_budget) {
    const TensorReport* worst = nullptr;
    for (const auto& t : r.tensors)
      if (t.used && (!worst || t.relative_change > worst->relative_change)) worst = &t;
    DIDMARK_THROW(Errc::invalid_argument, "'", in.string(), "': tensor '", worst ? detail::quoted(worst->name) : "?",
                  "' would change by ", 100 * (worst ? worst->relative_change : 0), "%, over the budget of ",
                  100 * o.max_relative_change, "%; nothing was written (lower the strength)");
  }
  const double need = provable_z(o.p_threshold);
  if (!allow_weak && r.scheme == Scheme::spread_spectrum && r.expected_z < need) {
    // z = strength * sqrt(N): the strength that reaches it, with 10% to spare (16-bit rounding).
    const double s = 1.1 * need / std::sqrt(static_cast<double>(std::max<int64_t>(r.elements_marked, 1)));
    DIDMARK_THROW(Errc::invalid_argument, "'", in.string(), "': the mark could not be proved: expected z ",
                  std::round(r.expected_z * 100) / 100, " (", r.elements_marked, " elements at strength ", r.strength,
                  ") is below ", std::round(need * 100) / 100, " (the ",
                  std::round(hoeffding_z_threshold(o.p_threshold) * 100) / 100, " that p <= ", o.p_threshold,
                  " needs, plus 2 so that the marked file is detected 97.7% of the time); nothing was written. Use --strength ", std::ceil(s * 1e4) / 1e4,
                  " or more (its change budget follows), mark more tensors, or pass --allow-weak to write it anyway");
  }
}

struct Sharded {
  SafetensorsIndex index;
  std::vector<std::unique_ptr<SafetensorsFile>> shards;  // in index.shards order
};

Sharded open_sharded(const fs::path& index_path) {
  Sharded s;
  s.index = read_safetensors_index(index_path);
  const std::string iname = detail::printable(index_path.native(), 1024);
  std::unordered_map<std::string, std::string> where;
  for (const auto& [t, shard] : s.index.weight_map) where.emplace(t, shard);
  std::unordered_set<std::string> seen;
  for (const auto& shard : s.index.shards) {
    s.shards.push_back(std::make_unique<SafetensorsFile>(s.index.folder() / shard));
    for (const auto& t : s.shards.back()->header().tensors) {
      const auto it = where.find(t.name);
      DIDMARK_EXPECTS(it != where.end(), corrupt_input, "'", iname, "': tensor '", detail::quoted(t.name),
                      "' of shard '", detail::quoted(shard), "' is not in the index's weight_map");
      DIDMARK_EXPECTS(it->second == shard, corrupt_input, "'", iname, "': the index places tensor '",
                      detail::quoted(t.name), "' in '", detail::quoted(it->second), "' but it is in '",
                      detail::quoted(shard), "'");
      DIDMARK_EXPECTS(seen.insert(t.name).second, corrupt_input, "'", iname, "': tensor '",
                      detail::quoted(t.name), "' appears in two shards");
    }
  }
  for (const auto& [t, shard] : s.index.weight_map)
    DIDMARK_EXPECTS(seen.count(t), corrupt_input, "'", iname, "': the index lists tensor '", detail::quoted(t),
                    "' in '", detail::quoted(shard), "', which does not hold it");
  return s;
}

// Pairs of (source, destination) views for embed(), staged where the file's offsets do not
// suit the dtype; write_back() puts staged results into the output mapping.
struct ViewPairs {
  std::vector<NamedTensor> src, dst;
  Staging staging;
  std::vector<std::pair<TensorView, TensorView>> back;  // staged dst -> mapped dst

  void add(const NamedTensor& s, const NamedTensor& d) {
    if (is_watermarkable(s.view.dtype) && !(aligned(s.view) && aligned(d.view))) {
      src.push_back({s.name, staging.stage(s.view, true)});
      dst.push_back({d.name, staging.stage(d.view, false)});
      back.emplace_back(dst.back().view, d.view);
    } else {
      src.push_back(s);
      dst.push_back(d);
    }
  }
  void write_back() const {
    for (const auto& [staged, mapped] : back) std::memcpy(mapped.data, staged.data, staged.nbytes());
  }
};

}  // namespace

std::string_view checkpoint_format_name(CheckpointFormat f) noexcept {
  switch (f) {
    case CheckpointFormat::safetensors: return "safetensors";
    case CheckpointFormat::safetensors_sharded: return "safetensors-sharded";
    case CheckpointFormat::torch: return "pt";
    case CheckpointFormat::npy: return "npy";
  }
  return "?";
}

std::optional<CheckpointFormat> guess_checkpoint_format(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return index_files_in(path).empty() ? std::nullopt : std::optional(CheckpointFormat::safetensors_sharded);
  const std::string name = detail::ascii_lower(path.filename().string());
  if (name.ends_with(kIndexSuffix)) return CheckpointFormat::safetensors_sharded;
  if (name.ends_with(".safetensors")) return CheckpointFormat::safetensors;
  if (name.ends_with(".pt") || name.ends_with(".pth") || name.ends_with(".bin")) return CheckpointFormat::torch;
  if (name.ends_with(".npy")) return CheckpointFormat::npy;
  return std::nullopt;
}

fs::path resolve_checkpoint_path(const fs::path& path, CheckpointFormat format) {
  std::error_code ec;
  if (format != CheckpointFormat::safetensors_sharded || !fs::is_directory(path, ec)) return path;
  const auto found = index_files_in(path);
  DIDMARK_EXPECTS(!found.empty(), not_found, "folder '", path.string(), "' holds no *", kIndexSuffix, " file");
  DIDMARK_EXPECTS(found.size() == 1, invalid_argument, "folder '", path.string(), "' holds ", found.size(),
                  " index files; name the one to use");
  return found[0];
}

// ---- reading ---------------------------------------------------------------------------

struct CheckpointReader::Impl {
  CheckpointFormat format = CheckpointFormat::safetensors;
  std::vector<fs::path> files;
  uint64_t bytes = 0;
  std::vector<std::unique_ptr<SafetensorsFile>> safetensors;
  std::optional<TorchCheckpoint> torch;
  std::optional<NpyArray> npy;
  std::vector<NamedTensor> tensors;
  std::vector<std::pair<std::string, std::string>> withheld;
  Staging staging;

  void add(const NamedTensor& t) {
    if (aligned(t.view))
      tensors.push_back(t);
    else
      tensors.push_back({t.name, staging.stage(t.view, true)});
  }
};

CheckpointReader::CheckpointReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;
CheckpointReader& CheckpointReader::operator=(CheckpointReader&&) noexcept = default;
CheckpointReader::~CheckpointReader() = default;

CheckpointReader CheckpointReader::open(const fs::path& path_in, CheckpointFormat format) {
  auto m = std::make_unique<Impl>();
  m->format = format;
  const fs::path path = resolve_checkpoint_path(path_in, format);
  switch (format) {
    case CheckpointFormat::safetensors: {
      m->safetensors.push_back(std::make_unique<SafetensorsFile>(path));
      m->files.push_back(path);
      break;
    }
    case CheckpointFormat::safetensors_sharded: {
      Sharded s = open_sharded(path);
      m->files.push_back(path);
      for (const auto& shard : s.index.shards) m->files.push_back(s.index.folder() / shard);
      m->safetensors = std::move(s.shards);
      break;
    }
    case CheckpointFormat::torch: {
      m->torch.emplace(TorchCheckpoint::load(path));
      m->files.push_back(path);
      for (const auto& t : m->torch->tensors()) m->add(t);
      m->withheld = m->torch->withheld();
      break;
    }
    case CheckpointFormat::npy: {
      m->npy.emplace(read_npy(path));
      m->files.push_back(path);
      m->add({"array", m->npy->view()});
      break;
    }
  }
  for (const auto& f : m->safetensors)
    for (const auto& t : f->tensors()) m->add(t);
  for (const auto& f : m->files) m->bytes += file_bytes(f);
  return CheckpointReader(std::move(m));
}

CheckpointReader CheckpointReader::from_safetensors_bytes(std::string bytes, std::string_view name) {
  auto m = std::make_unique<Impl>();
  m->format = CheckpointFormat::safetensors;
  m->bytes = bytes.size();
  m->safetensors.push_back(std::make_unique<SafetensorsFile>(MappedFile::in_memory(std::move(bytes), fs::path(name))));
  m->files.push_back(fs::path(name));
  for (const auto& t : m->safetensors.back()->tensors()) m->add(t);
  return CheckpointReader(std::move(m));
}

CheckpointFormat CheckpointReader::format() const noexcept { return impl_->format; }
std::span<const NamedTensor> CheckpointReader::tensors() const noexcept { return impl_->tensors; }
const std::vector<std::pair<std::string, std::string>>& CheckpointReader::withheld() const noexcept {
  return impl_->withheld;
}
const std::vector<fs::path>& CheckpointReader::files() const noexcept { return impl_->files; }
uint64_t CheckpointReader::bytes() const noexcept { return impl_->bytes; }

void CheckpointReader::advise_sequential() const noexcept {
  for (const auto& f : impl_->safetensors) advise(*f->mapping());
  if (impl_->npy) advise(*impl_->npy->file);
}

std::vector<VerifyReport> verify_checkpoint(const fs::path& input, CheckpointFormat format,
                                            std::span<const Claim> claims, const WatermarkOptions& options,
                                            Backend& backend) {
  const CheckpointReader r = CheckpointReader::open(input, format);
  return verify_checkpoint(r, claims, options, backend);
}

std::vector<VerifyReport> verify_checkpoint(const CheckpointReader& r, std::span<const Claim> claims,
                                            const WatermarkOptions& options, Backend& backend) {
  r.advise_sequential();
  return verify_many(r.tensors(), claims, adjusted(options, r.format()), backend);
}

// ---- embedding -------------------------------------------------------------------------

namespace {

CheckpointEmbedReport embed_safetensors(const fs::path& in, const fs::path& out, const WatermarkKey& key,
                                        const Payload& payload, const WatermarkOptions& o, const CheckpointWriteOptions& write,
                                        Backend& backend) {
  SafetensorsFile src(in);
  refuse_input_as_output(in, out);
  advise(*src.mapping());
  SafetensorsWriter dst(out, src, write.overwrite);
  ViewPairs pairs;
  const auto s = src.tensors(), d = dst.tensors();
  for (std::size_t i = 0; i < s.size(); ++i) pairs.add(s[i], d[i]);
  CheckpointEmbedReport r;
  r.report = embed(pairs.src, pairs.dst, key, payload, o, backend);
  pairs.write_back();
  check_embed_result(r.report, in, o, write.allow_weak);
  dst.commit();
  r.outputs.push_back(out);
  r.bytes_read = r.bytes_written = src.size();
  return r;
}

CheckpointEmbedReport embed_sharded(const fs::path& in, const fs::path& out, const WatermarkKey& key,
                                    const Payload& payload, const WatermarkOptions& o, const CheckpointWriteOptions& write,
                                    Backend& backend) {
  Sharded s = open_sharded(in);
  const bool out_is_index = detail::ascii_lower(out.filename().string()).ends_with(kIndexSuffix);
  const fs::path dir = out_is_index ? (out.has_parent_path() ? out.parent_path() : fs::path(".")) : out;
  const fs::path index_out = dir / (out_is_index ? out.filename() : in.filename());
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    DIDMARK_EXPECTS(!ec, io_error, "cannot create folder '", dir.string(), "': ", ec.message());
  }
  refuse_input_as_output(in, index_out);
  for (const auto& shard : s.index.shards) refuse_input_as_output(s.index.folder() / shard, dir / shard);
  refuse_existing(index_out, write.overwrite);

  std::vector<std::unique_ptr<SafetensorsWriter>> writers;
  ViewPairs pairs;
  CheckpointEmbedReport r;
  for (std::size_t k = 0; k < s.shards.size(); ++k) {
    advise(*s.shards[k]->mapping());
    writers.push_back(std::make_unique<SafetensorsWriter>(dir / s.index.shards[k], *s.shards[k], write.overwrite));
    const auto a = s.shards[k]->tensors(), b = writers.back()->tensors();
    for (std::size_t i = 0; i < a.size(); ++i) pairs.add(a[i], b[i]);
    r.bytes_read += s.shards[k]->size();
  }
  r.report = embed(pairs.src, pairs.dst, key, payload, o, backend);
  pairs.write_back();
  check_embed_result(r.report, in, o, write.allow_weak);
  for (std::size_t k = 0; k < writers.size(); ++k) {
    writers[k]->commit();
    r.outputs.push_back(dir / s.index.shards[k]);
  }
  r.bytes_written = r.bytes_read;
  // The index last: a reader that finds it finds complete shards.
  const MappedFile index(in);
  const std::string text(reinterpret_cast<const char*>(index.data()), index.size());
  detail::write_file_atomically(index_out, text, write.overwrite);
  r.outputs.push_back(index_out);
  r.bytes_read += text.size();
  r.bytes_written += text.size();
  return r;
}

CheckpointEmbedReport embed_torch(const fs::path& in, const fs::path& out, const WatermarkKey& key,
                                  const Payload& payload, const WatermarkOptions& o, const CheckpointWriteOptions& write,
                                  Backend& backend) {
  refuse_input_as_output(in, out);
  refuse_existing(out, write.overwrite);
  TorchCheckpoint ck = TorchCheckpoint::load(in);
  CheckpointEmbedReport r;
  r.report = embed_in_place(ck.tensors(), key, payload, o, backend);
  r.withheld = ck.withheld();
  check_embed_result(r.report, in, o, write.allow_weak);
  ck.save(out, write.overwrite);
  r.outputs.push_back(out);
  r.bytes_read = file_bytes(in);
  r.bytes_written = file_bytes(out);
  return r;
}

CheckpointEmbedReport embed_npy(const fs::path& in, const fs::path& out, const WatermarkKey& key,
                                const Payload& payload, const WatermarkOptions& o, const CheckpointWriteOptions& write,
                                Backend& backend) {
  const NpyArray a = read_npy(in);
  refuse_input_as_output(in, out);
  advise(*a.file);
  // A converted (big-endian or Fortran-order) input is written little-endian in C order.
  const std::string header = a.converted ? detail::npy_header_bytes(a.dtype, a.shape)
                                         : std::string(reinterpret_cast<const char*>(a.file->data()), a.data_offset);
  const TensorView sv = a.view();
  detail::MappedOutput dst(out, write.overwrite, header.size() + sv.nbytes());
  std::memcpy(dst.data(), header.data(), header.size());
  TensorView dv = sv;
  dv.data = dst.data() + header.size();
  ViewPairs pairs;
  pairs.add({"array", a.view()}, {"array", dv});
  CheckpointEmbedReport r;
  r.report = embed(pairs.src, pairs.dst, key, payload, o, backend);
  pairs.write_back();
  check_embed_result(r.report, in, o, write.allow_weak);
  dst.commit();
  r.outputs.push_back(out);
  r.bytes_read = a.file->size();
  r.bytes_written = header.size() + sv.nbytes();
  return r;
}

}  // namespace

CheckpointEmbedReport embed_checkpoint(const fs::path& input, const fs::path& output, CheckpointFormat format,
                                       const WatermarkKey& key, const Payload& payload,
                                       const WatermarkOptions& options, const CheckpointWriteOptions& write,
                                       Backend& backend) {
  const fs::path in = resolve_checkpoint_path(input, format);
  const WatermarkOptions o = adjusted(options, format);
  CheckpointEmbedReport r;
  switch (format) {
    case CheckpointFormat::safetensors: r = embed_safetensors(in, output, key, payload, o, write, backend); break;
    case CheckpointFormat::safetensors_sharded: r = embed_sharded(in, output, key, payload, o, write, backend); break;
    case CheckpointFormat::torch: r = embed_torch(in, output, key, payload, o, write, backend); break;
    case CheckpointFormat::npy: r = embed_npy(in, output, key, payload, o, write, backend); break;
  }
  r.format = format;
  return r;
}

}  // namespace didmark
