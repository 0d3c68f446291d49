// What a file is, decided once for the CLI, the server and Python: content first, then name.
#include <unistd.h>

#include <algorithm>
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
  const auto image = [&](std::string name, std::vector<std::string> ext, std::string description) {
    v.push_back(InputFormat{std::move(name), InputKind::image, CheckpointFormat::safetensors, std::move(ext),
                            std::move(description)});
  };
  image("png", {".png"}, "PNG image (8-bit grey, grey + alpha, RGB, RGBA): tile-periodic luminance mark, blind test");
  image("jpeg", {".jpg", ".jpeg"}, "JPEG image (grey or colour; quality tables and subsampling kept)");
  image("webp", {".webp"}, "WebP image (lossy or lossless, alpha kept)");
  image("images", {}, "folder of PNG/JPEG/WebP images: each image marked; one dataset test over all of them");
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
  ImageCodec codec{};
  if (sniff_image({reinterpret_cast<const uint8_t*>(head.data()), head.size()}, codec))
    return &by_name(std::string(image_codec_name(codec)));
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
    case InputKind::image: return "image";
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
    if (f.kind == InputKind::image && f.name != "images" && fs::is_directory(st)) return by_name("images");
    if (f.name == "safetensors" && guess_checkpoint_format(path) == CheckpointFormat::safetensors_sharded)
      return sharded();
    return f;
  }
  if (fs::is_directory(st)) {
    if (guess_checkpoint_format(path) == CheckpointFormat::safetensors_sharded) return sharded();
    DIDMARK_EXPECTS(!image_folder_files(path).empty(), unsupported, "'", path.string(),
                    "' is a folder without a *.safetensors.index.json or any .png/.jpg/.jpeg/.webp image; "
                    "`didmark scan` walks folders");
    return by_name("images");
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
  if (format.kind == InputKind::array) {
    // The row-id sidecar is an input of its array, not a file to verify on its own.
    fs::path sidecar = path;
    sidecar.replace_extension(".ids.npy");
    std::error_code ec;
    if (fs::is_regular_file(sidecar, ec)) out.push_back(sidecar);
    return out;
  }
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

namespace didmark {

bool image_file_name(const std::filesystem::path& p) {
  const std::string n = detail::ascii_lower(p.filename().string());
  return n.ends_with(".png") || n.ends_with(".jpg") || n.ends_with(".jpeg") || n.ends_with(".webp");
}

std::vector<std::filesystem::path> image_folder_files(const std::filesystem::path& folder) {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {  // hidden entries (and our own temporaries) are skipped
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && image_file_name(it->path())) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace didmark
