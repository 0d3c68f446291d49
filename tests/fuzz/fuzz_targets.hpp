#pragma once
// One input through one reader: the bodies of the libFuzzer targets (tests/fuzz/fuzz_*.cpp),
// shared with the GoogleTest replay of every input kept under tests/data/<kind>/regress
// (tests/io/test_fuzz_regress.cpp), so the normal suite catches a regression without clang.
// Each returns false when the reader accepted something that breaks its own invariants;
// refusing with didmark::Error is fine; anything else (a crash, another exception, a hang)
// is the bug the fuzzer looks for.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/images.hpp"
#include "didmark/io.hpp"
#include "didmark/limits.hpp"
#include "io/npy_detail.hpp"
#include "io/pickle_validate.hpp"
#include "io/torch_archive.hpp"
#include "io/torch_pickle.hpp"

namespace didmark::fuzz {

inline std::string_view text(std::span<const uint8_t> in) {
  return {reinterpret_cast<const char*>(in.data()), in.size()};
}

/// The safetensors header parser: whatever it accepts is contiguous, in range and exact.
inline bool safetensors_header(std::span<const uint8_t> in) {
  try {
    const auto h = parse_safetensors_header(in, "fuzz");
    uint64_t expect = 0;
    for (const auto& t : h.tensors) {
      uint64_t n = dtype_size(t.dtype);
      bool zero = false;
      for (int64_t d : t.shape) {
        if (d < 0) return false;
        if (d == 0) zero = true;
        else if (!zero) n *= static_cast<uint64_t>(d);  // cannot overflow: the parser checked it
      }
      if (zero) n = 0;
      if (t.begin != expect || t.end < t.begin || t.nbytes() != n || t.shape.size() > kMaxTensorRank) return false;
      expect = t.end;
    }
    if (h.data_offset() + h.data_bytes() != in.size() || h.header_length > kSafetensorsMaxHeader) return false;
  } catch (const Error&) {
  }
  return true;
}

/// A data.pkl stream: the validator, the rewrite for LibTorch, and the validator again on
/// what the rewrite produced (which must hold whenever the input held).
inline bool torch_pickle(std::span<const uint8_t> in) {
  const std::string_view p = text(in);
  const auto f = detail::fix_torch_pickle(p);
  if (!f.complete && f.bytes != p) return false;
  if (f.complete && f.ordered_dicts == 0 && f.builds_dropped == 0 && f.setitems == 0 && f.longs == 0 && f.bytes != p)
    return false;
  detail::PickleCheckOptions o;
  bool valid = false;
  try {
    o.memo_limit = detail::validate_torch_pickle(p, o).values;
    valid = true;
  } catch (const Error&) {
  }
  // What the rewrite makes of a valid pickle must be valid as LibTorch's input (when it
  // cannot rewrite, the input goes on unchanged and is checked as LibTorch input itself).
  if (!valid || !f.complete) return true;
  o.for_libtorch = true;
  try {
    detail::validate_torch_pickle(f.bytes, o);
  } catch (const Error&) {
    return false;
  }
  return true;
}

/// A stored zip (no CRCs: didmark's reader does not need them) of `entries`.
inline std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  auto le = [](std::string& o, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) o.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  std::string out, dir;
  for (const auto& [name, data] : entries) {
    const uint64_t at = out.size();
    le(out, 0x04034b50, 4), le(out, 20, 2), le(out, 0, 2), le(out, 0, 2), le(out, 0, 4), le(out, 0, 4);
    le(out, data.size(), 4), le(out, data.size(), 4), le(out, name.size(), 2), le(out, 0, 2);
    out += name + data;
    le(dir, 0x02014b50, 4), le(dir, 20, 2), le(dir, 20, 2), le(dir, 0, 2), le(dir, 0, 2), le(dir, 0, 4);
    le(dir, 0, 4), le(dir, data.size(), 4), le(dir, data.size(), 4), le(dir, name.size(), 2), le(dir, 0, 2);
    le(dir, 0, 2), le(dir, 0, 2), le(dir, 0, 2), le(dir, 0, 4), le(dir, at, 4);
    dir += name;
  }
  const uint64_t cd = out.size();
  out += dir;
  le(out, 0x06054b50, 4), le(out, 0, 2), le(out, 0, 2), le(out, entries.size(), 2), le(out, entries.size(), 2);
  le(out, dir.size(), 4), le(out, cd, 4), le(out, 0, 2);
  return out;
}

/// A whole torch.save file, as TorchCheckpoint::load checks it first. Input starting with
/// "PK": the file itself (the zip reader); otherwise structure-aware: byte 0 = number of
/// storage records (mod 8), 2 bytes each = their sizes, the rest = data.pkl, packed here
/// into a valid torch.save zip (so mutations reach the pickle and the storage checks).
inline bool torch_archive(std::span<const uint8_t> in) {
  std::string built;
  if (!(in.size() >= 2 && in[0] == 'P' && in[1] == 'K') && !in.empty()) {
    std::size_t at = 1;
    std::vector<std::pair<std::string, std::string>> entries;
    std::vector<std::pair<std::string, std::string>> records;
    for (std::size_t i = 0; i < (in[0] & 7u) && at + 2 <= in.size(); ++i, at += 2)
      records.emplace_back("archive/data/" + std::to_string(i), std::string(in[at] | (in[at + 1] << 8), '\0'));
    entries.emplace_back("archive/data.pkl", std::string(text(in.subspan(at))));
    for (auto& r : records) entries.push_back(std::move(r));
    entries.emplace_back("archive/version", "3\n");
    built = stored_zip(entries);
    in = std::span(reinterpret_cast<const uint8_t*>(built.data()), built.size());
  }
  try {
    const auto a = detail::open_torch_archive(in, "fuzz.pt");
    for (const auto& e : a.entries)
      if (e.data_offset > in.size() || e.size > in.size() - e.data_offset) return false;
  } catch (const Error&) {
  }
  return true;
}

/// CSV with the delimiter detected: what parses has rectangular fields and renders back to
/// the same bytes.
inline bool csv(std::span<const uint8_t> in) {
  try {
    CsvOptions o;
    o.max_record_bytes = 1 << 16;
    const CsvTable t = CsvTable::parse(std::string(text(in)), "fuzz.csv", o);
    if (t.render({}) != text(in)) return false;
    if (std::string_view(",;\t|").find(t.delimiter()) == std::string_view::npos) return false;
    for (int64_t r = 0; r < t.rows(); ++r)
      for (int c = 0; c < t.columns(); ++c) {
        const std::string_view raw = t.raw_cell(r, c);
        if (raw.data() < t.text().data() || raw.data() + raw.size() > t.text().data() + t.text().size()) return false;
        const auto d = DecimalCell::parse(raw, t.decimal_comma());
        if (d && DecimalCell::parse(d->format(), true)->mantissa != d->mantissa) return false;
      }
  } catch (const Error&) {
  }
  return true;
}

/// A .npy header: what it accepts fits the file exactly.
inline bool npy_header(std::span<const uint8_t> in) {
  try {
    const auto h = detail::parse_npy_header(in, "fuzz.npy");
    if (h.data_offset > in.size() || h.count * h.item != in.size() - h.data_offset) return false;
    if (h.shape.size() > kMaxTensorRank) return false;
  } catch (const Error&) {
  }
  return true;
}

/// A scratch file for the readers that take a path (identity files, registries), in a
/// folder of this process that is removed at exit.
inline std::filesystem::path scratch_file(const char* name) {
  struct Dir {
    std::filesystem::path path;
    Dir() {
      const char* t = std::getenv("TMPDIR");
      path = std::filesystem::path(t && *t ? t : "/tmp") / ("didmark-fuzz-" + std::to_string(::getpid()));
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path / name;
}

inline void put_file(const std::filesystem::path& p, std::string_view bytes) {
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) return;
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  std::filesystem::permissions(p, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

/// An identity file (mode 0600): a loaded identity's DID is its own.
inline bool identity_file(std::span<const uint8_t> in) {
  const auto p = scratch_file("id.json");
  put_file(p, text(in));
  try {
    const Identity id = load_identity(p);
    if (id.did().rfind("did:key:z6Mk", 0) != 0) return false;
  } catch (const Error&) {
  }
  return true;
}

/// A registry (JSON Lines): entries have distinct DIDs.
inline bool registry(std::span<const uint8_t> in) {
  const auto p = scratch_file("registry.jsonl");
  put_file(p, text(in));
  try {
    const auto r = load_registry(p);
    for (std::size_t i = 1; i < r.size(); ++i)
      if (r[i].did.empty()) return false;
  } catch (const Error&) {
  }
  return true;
}

/// The image decoders (libpng, libjpeg-turbo, libwebp behind didmark's checks): whatever they
/// accept has its declared size and sample layout, within the limits.
inline bool image(std::span<const uint8_t> in) {
  ImageCodec codec;
  if (!sniff_image(in, codec)) return true;
  // Both ways the tools read: in full (embed) and the luminance alone (verify).
  for (const bool luminance : {false, true}) {
    try {
      const Image im = decode_image(in, codec, "fuzz", ImageReadOptions{.luminance_only = luminance});
      if (im.width <= 0 || im.height <= 0 || im.width > kMaxImageSide || im.height > kMaxImageSide) return false;
      if (im.channels < 1 || im.channels > 4 || int64_t{im.width} * im.height > kMaxImagePixels) return false;
      if (luminance && codec == ImageCodec::jpeg && im.channels != 1) return false;
      if (im.pixels.size() != static_cast<std::size_t>(im.width) * static_cast<std::size_t>(im.height) *
                                  static_cast<std::size_t>(im.channels))
        return false;
    } catch (const Error&) {
    }
  }
  return true;
}

}  // namespace didmark::fuzz
