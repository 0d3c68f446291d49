// What a file is, decided once for the CLI, the server and Python: content first, then name.
#include <unistd.h>

#include <array>
#include <cstring>

#include "common/regular_file.hpp"
#include "common/strings.hpp"
#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "didmark/io.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

InputFormat checkpoint_format(std::string name, CheckpointFormat f, std::vector<std::string> ext,
                              std::string description) {
  return InputFormat{std::move(name), InputKind::checkpoint, f, std::move(ext), std::move(description)};
}

std::vector<InputFormat> make_formats() {
  std::vector<InputFormat> v;
  v.push_back(checkpoint_format("safetensors", CheckpointFormat::safetensors, {".safetensors", ".safetensors.index.json"},
                                "safetensors checkpoint, or a sharded one (*.safetensors.index.json or its folder)"));
  v.push_back(checkpoint_format("pt", CheckpointFormat::torch, {".pt", ".pth", ".bin"},
                                torch_available() ? "PyTorch torch.save file (state dict), through LibTorch"
                                                  : "PyTorch torch.save file (needs a build with -DDIDMARK_TORCH=ON)"));
  v.push_back(checkpoint_format("npy-tensor", CheckpointFormat::npy, {},
                                "one weight array in a .npy file, marked as a single tensor (.npy files default to "
                                "the dataset format 'npy')"));
  v.push_back(InputFormat{"csv", InputKind::table, CheckpointFormat::safetensors, {".csv"},
                          "CSV table: keyed low-order bits of numeric cells (Agrawal-Kiernan), blind binomial test"});
  v.push_back(InputFormat{"npy", InputKind::array, CheckpointFormat::npy, {".npy"},
                          "N x D float array (.npy): row-keyed spread spectrum, survives row subsets and shuffles"});
  return v;
}

const InputFormat& by_name(std::string_view name) {
  for (const auto& f : input_formats())
    if (f.name == name) return f;
  std::string known;
  for (const auto& f : input_formats()) known += (known.empty() ? "" : ", ") + f.name;
  DIDMARK_THROW(Errc::invalid_argument, "format '", name, "' is not one of: ", known);
}

// The first bytes of a file, which must be a regular one (a FIFO or device named as an input
// is refused, never waited on).
std::string file_prefix(const fs::path& p, std::size_t n, uint64_t& size) {
  const detail::RegularFile f = detail::open_regular_file(p, "input");
  size = f.size;
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(f.fd.get(), out.data() + got, n - got);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  out.resize(got);
  return out;
}

// A format recognised from the bytes, or nullptr.
const InputFormat* sniff(const std::string& head, uint64_t size) {
  if (head.starts_with("\x93NUMPY")) return &by_name("npy");
  if (head.starts_with("PK\x03\x04") || head.starts_with("PK\x05\x06")) return &by_name("pt");
  if (head.size() >= 9 && head[8] == '{') {
    uint64_t n = 0;
    std::memcpy(&n, head.data(), 8);  // little-endian hosts only (as the readers)
    if (n >= 2 && n <= size - 8) return &by_name("safetensors");
  }
  return nullptr;
}

}  // namespace

std::string_view input_kind_name(InputKind k) noexcept {
  switch (k) {
    case InputKind::checkpoint: return "checkpoint";
    case InputKind::table: return "table";
    case InputKind::array: return "array";
  }
  return "?";
}

const std::vector<InputFormat>& input_formats() {
  static const std::vector<InputFormat> formats = make_formats();
  return formats;
}

InputFormat classify_input(const fs::path& path, std::string_view forced) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  DIDMARK_EXPECTS(fs::exists(st), not_found, "'", path.string(), "' does not exist");
  const auto sharded = [&] {
    InputFormat f = by_name("safetensors");
    f.checkpoint = CheckpointFormat::safetensors_sharded;
    return f;
  };
  const std::string name = detail::ascii_lower(path.filename().string());
  if (!forced.empty()) {
    if (forced == "safetensors-sharded") return sharded();  // the name embed reports used
    const InputFormat& f = by_name(forced);
    if (f.name == "safetensors" && guess_checkpoint_format(path) == CheckpointFormat::safetensors_sharded)
      return sharded();
    return f;
  }
  if (fs::is_directory(st)) {
    DIDMARK_EXPECTS(guess_checkpoint_format(path) == CheckpointFormat::safetensors_sharded, unsupported, "'",
                    path.string(), "' is a folder without a *.safetensors.index.json; `didmark scan` walks folders");
    return sharded();
  }
  if (name.ends_with(".safetensors.index.json")) return sharded();
  uint64_t size = 0;
  const std::string head = file_prefix(path, 16, size);
  if (const InputFormat* f = sniff(head, size)) return *f;
  // Not recognised by content: the name decides, and that format's reader says what is wrong.
  for (const auto& f : input_formats())
    for (const auto& e : f.extensions)
      if (name.ends_with(e)) return f;
  std::string known;
  for (const auto& f : input_formats()) known += (known.empty() ? "" : ", ") + f.name;
  DIDMARK_THROW(Errc::unsupported, "cannot tell the format of '", path.string(),
                "' from its content or its name; pass --format (one of: ", known, ")");
}

std::vector<fs::path> input_parts(const fs::path& path, const InputFormat& format) {
  std::vector<fs::path> out;
  if (format.kind != InputKind::checkpoint || format.checkpoint != CheckpointFormat::safetensors_sharded) return out;
  const auto idx = read_safetensors_index(resolve_checkpoint_path(path, CheckpointFormat::safetensors_sharded));
  for (const auto& s : idx.shards) out.push_back(idx.folder() / s);
  return out;
}

Owner owner_of(const Identity& id) { return Owner{id.did(), id.watermark_key(), did_codeword(id.did())}; }

std::vector<Owner> owners_of(std::span<const RegistryEntry> entries, std::string_view did, std::string_view source) {
  std::vector<Owner> out;
  for (const auto& e : entries)
    if (did.empty() || e.did == did) out.push_back(Owner{e.did, e.key, did_codeword(e.did)});
  DIDMARK_EXPECTS(did.empty() || !out.empty(), not_found, "DID '", did, "' is not in ", source);
  DIDMARK_EXPECTS(!out.empty(), invalid_argument, source, " has no entries");
  return out;
}

}  // namespace didmark
