// torch.save zips (PKWARE APPNOTE 6.3, with ZIP64), read by our own code before miniz.
#include "io/torch_archive.hpp"

#include <algorithm>
#include <functional>
#include <limits>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/limits.hpp"
#include "io/torch_legacy.hpp"

namespace didmark::detail {
namespace {

constexpr uint32_t kEocdSig = 0x06054b50, kZip64LocatorSig = 0x07064b50, kZip64EocdSig = 0x06064b50,
                   kCentralSig = 0x02014b50, kLocalSig = 0x04034b50;
constexpr uint32_t kMax32 = 0xFFFFFFFF;

class Bytes {
 public:
  Bytes(std::span<const unsigned char> f, const std::string& name) : f_(f), name_(name) {}
  uint64_t size() const { return f_.size(); }
  // n little-endian bytes at `at`; refuses reads past the end.
  uint64_t le(uint64_t at, unsigned n, const char* what) const {
    DIDMARK_EXPECTS(at <= f_.size() && n <= f_.size() - at, corrupt_input, "'", name_, "': zip ", what,
                    " runs past the end of the file");
    uint64_t v = 0;
    for (unsigned i = n; i-- > 0;) v = (v << 8) | f_[at + i];
    return v;
  }
  std::string_view text(uint64_t at, uint64_t n, const char* what) const {
    DIDMARK_EXPECTS(at <= f_.size() && n <= f_.size() - at, corrupt_input, "'", name_, "': zip ", what,
                    " runs past the end of the file");
    return {reinterpret_cast<const char*>(f_.data() + at), static_cast<std::size_t>(n)};
  }

 private:
  std::span<const unsigned char> f_;
  const std::string& name_;
};

}  // namespace

std::vector<ZipEntry> read_zip_directory(std::span<const unsigned char> file, std::string_view file_name) {
  const std::string name = printable(file_name, 1024);
  const Bytes b(file, name);
  const uint64_t size = file.size();
  auto corrupt = [&](const auto&... a) { DIDMARK_THROW(Errc::corrupt_input, "'", name, "': ", a...); };

  // The end-of-central-directory record: within the last 64 kB + 22 bytes, its comment
  // reaching the end of the file exactly.
  if (size < 22) corrupt("not a torch.save zip file (", size, " bytes and not the legacy format either)");
  uint64_t eocd = std::numeric_limits<uint64_t>::max();
  const uint64_t lowest = size >= 22 + 0xFFFF ? size - 22 - 0xFFFF : 0;
  for (uint64_t p = size - 22 + 1; p-- > lowest;) {
    if (b.le(p, 4, "end record") == kEocdSig && p + 22 + b.le(p + 20, 2, "end record") == size) {
      eocd = p;
      break;
    }
  }
  if (eocd == std::numeric_limits<uint64_t>::max())
    corrupt("not a torch.save zip file (no end-of-directory record and not the legacy format either)");
  uint64_t disk = b.le(eocd + 4, 2, "end record"), cd_disk = b.le(eocd + 6, 2, "end record");
  uint64_t on_disk = b.le(eocd + 8, 2, "end record"), count = b.le(eocd + 10, 2, "end record");
  uint64_t cd_size = b.le(eocd + 12, 4, "end record"), cd_offset = b.le(eocd + 16, 4, "end record");
  uint64_t cd_limit = eocd;  // the directory ends before this
  if (eocd >= 20 && b.le(eocd - 20, 4, "ZIP64 locator") == kZip64LocatorSig) {
    const uint64_t z = b.le(eocd - 20 + 8, 8, "ZIP64 locator");
    if (z > eocd - 20 || eocd - 20 - z < 56 || b.le(z, 4, "ZIP64 end record") != kZip64EocdSig)
      corrupt("the ZIP64 end record is not where its locator says");
    disk = b.le(z + 16, 4, "ZIP64 end record");
    cd_disk = b.le(z + 20, 4, "ZIP64 end record");
    on_disk = b.le(z + 24, 8, "ZIP64 end record");
    count = b.le(z + 32, 8, "ZIP64 end record");
    cd_size = b.le(z + 40, 8, "ZIP64 end record");
    cd_offset = b.le(z + 48, 8, "ZIP64 end record");
    cd_limit = z;
  } else if (count == 0xFFFF || cd_size == kMax32 || cd_offset == kMax32) {
    corrupt("the end record defers to a ZIP64 record that is missing");
  }
  if (disk != 0 || cd_disk != 0 || on_disk != count) corrupt("multi-disk zip archives are not read");
  if (count > kTorchMaxZipEntries)
    corrupt("the zip lists ", count, " entries, over the limit of ", kTorchMaxZipEntries, " (kTorchMaxZipEntries)");
  if (cd_offset > cd_limit || cd_size > cd_limit - cd_offset)
    corrupt("the zip directory lies outside the file");

  std::vector<ZipEntry> out;
  out.reserve(static_cast<std::size_t>(count));
  uint64_t p = cd_offset, total = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (cd_offset + cd_size - p < 46 || b.le(p, 4, "directory") != kCentralSig)
      corrupt("zip directory entry ", i, " is malformed");
    const uint64_t flags = b.le(p + 8, 2, "directory"), method = b.le(p + 10, 2, "directory");
    uint64_t csize = b.le(p + 20, 4, "directory"), usize = b.le(p + 24, 4, "directory");
    const uint64_t nlen = b.le(p + 28, 2, "directory"), xlen = b.le(p + 30, 2, "directory"),
                   clen = b.le(p + 32, 2, "directory");
    uint64_t start_disk = b.le(p + 34, 2, "directory"), local = b.le(p + 42, 4, "directory");
    const uint64_t end = p + 46 + nlen + xlen + clen;
    if (end > cd_offset + cd_size) corrupt("zip directory entry ", i, " runs past the directory");
    ZipEntry e;
    e.name = std::string(b.text(p + 46, nlen, "entry name"));
    const std::string shown = quoted(e.name);
    // ZIP64 extended information: the fields that are all ones in the record, in order.
    for (uint64_t x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen;) {
      const uint64_t id = b.le(x, 2, "extra field"), len = b.le(x + 2, 2, "extra field");
      if (x + 4 + len > p + 46 + nlen + xlen) corrupt("entry '", shown, "' has a malformed extra field");
      if (id == 0x0001) {
        uint64_t q = x + 4;
        auto wide = [&](uint64_t& field, unsigned narrow_bytes) {
          const uint64_t all_ones = narrow_bytes == 4 ? kMax32 : 0xFFFF;
          if (field != all_ones) return;
          const unsigned n = narrow_bytes == 4 ? 8 : 4;
          if (q + n > x + 4 + len) corrupt("entry '", shown, "' has a short ZIP64 extra field");
          field = b.le(q, n, "ZIP64 extra field");
          q += n;
        };
        wide(usize, 4);
        wide(csize, 4);
        wide(local, 4);
        wide(start_disk, 2);
      }
      x += 4 + len;
    }
    if (flags & 0x41) DIDMARK_THROW(Errc::unsupported, "'", name, "': zip entry '", shown, "' is encrypted");
    if (method != 0)
      DIDMARK_THROW(Errc::unsupported, "'", name, "': zip entry '", shown, "' is compressed (method ", method,
                    "); torch.save stores entries uncompressed");
    if (csize != usize) corrupt("stored entry '", shown, "' has two different sizes");
    if (start_disk != 0) corrupt("multi-disk zip archives are not read");
    if (local > cd_offset || cd_offset - local < 30 || b.le(local, 4, "local header") != kLocalSig)
      corrupt("entry '", shown, "' has no local header where the directory says");
    const uint64_t lnlen = b.le(local + 26, 2, "local header"), lxlen = b.le(local + 28, 2, "local header");
    if (b.text(local + 30, lnlen, "local header") != e.name)
      corrupt("entry '", shown, "' has another name in its local header");
    e.data_offset = local + 30 + lnlen + lxlen;
    e.size = usize;
    if (e.data_offset > cd_offset || e.size > cd_offset - e.data_offset)
      corrupt("entry '", shown, "' (", e.size, " bytes) runs past the data area");
    total += e.size;  // each <= file size, at most 2^20 of them: no overflow
    if (total > size) corrupt("the zip entries hold more bytes than the file (overlapping entries)");
    out.push_back(std::move(e));
    p = end;
  }
  std::sort(out.begin(), out.end(), [](const ZipEntry& a, const ZipEntry& c) { return a.name < c.name; });
  const auto dup = std::adjacent_find(out.begin(), out.end(),
                                      [](const ZipEntry& a, const ZipEntry& c) { return a.name == c.name; });
  if (dup != out.end()) corrupt("the zip holds two entries named '", quoted(dup->name), "'");
  return out;
}

const ZipEntry* TorchArchive::find(std::string_view rel) const {
  const std::string full = prefix + std::string(rel);
  const auto it = std::lower_bound(entries.begin(), entries.end(), full,
                                   [](const ZipEntry& e, const std::string& n) { return e.name < n; });
  return it != entries.end() && it->name == full ? &*it : nullptr;
}

namespace {
// The object's pickle validated against its storages, rewritten for LibTorch and validated
// again as LibTorch will read it.
void validate_for_libtorch(TorchArchive& a, std::string_view pickle, const std::string& name,
                           std::function<std::optional<uint64_t>(std::string_view)> record_bytes) {
  PickleCheckOptions o;
  o.where = "'" + name + "': " + (a.legacy ? "the object's pickle" : "data.pkl");
  o.record_bytes = std::move(record_bytes);
  a.check = validate_torch_pickle(pickle, o);
  a.fixed = fix_torch_pickle(pickle);
  o.where += " (as rewritten for LibTorch)";
  o.for_libtorch = true;
  o.memo_limit = a.check.values;
  validate_torch_pickle(a.fixed.bytes, o);
}
}  // namespace

TorchArchive open_torch_archive(std::span<const unsigned char> file, std::string_view file_name) {
  const std::string name = printable(file_name, 1024);
  TorchArchive a;
  a.entries = read_zip_directory(file, file_name);
  DIDMARK_EXPECTS(!a.entries.empty(), corrupt_input, "'", name, "': the zip is empty, not a torch.save file");
  // Every entry sits in one folder, as LibTorch expects ("archive/data.pkl", ...).
  const std::string& first = a.entries.front().name;
  const std::size_t slash = first.find('/');
  DIDMARK_EXPECTS(slash != std::string::npos && slash > 0, unsupported, "'", name,
                  "': the zip's entries are not in one folder: not a torch.save file");
  a.prefix = first.substr(0, slash + 1);
  for (const auto& e : a.entries)
    DIDMARK_EXPECTS(e.name.starts_with(a.prefix), unsupported, "'", name,
                    "': the zip's entries are not in one folder: not a torch.save file");
  const ZipEntry* pkl = a.find("data.pkl");
  DIDMARK_EXPECTS(pkl != nullptr, unsupported, "'", name,
                  "' has no data.pkl: a TorchScript archive or another zip file, not a torch.save file");
  DIDMARK_EXPECTS(pkl->size <= kPickleMaxBytes, corrupt_input, "'", name, "': data.pkl is ", pkl->size,
                  " bytes, over the limit of ", kPickleMaxBytes, " (kPickleMaxBytes)");
  if (const ZipEntry* order = a.find("byteorder")) {
    const std::string_view v(reinterpret_cast<const char*>(file.data() + order->data_offset), order->size);
    DIDMARK_EXPECTS(v == "little", unsupported, "'", name,
                    "': storages are not little-endian (byteorder record); re-save on a little-endian machine");
  }
  const std::string_view pickle(reinterpret_cast<const char*>(file.data() + pkl->data_offset), pkl->size);
  validate_for_libtorch(a, pickle, name, [&](std::string_view key) -> std::optional<uint64_t> {
    const ZipEntry* e = a.find("data/" + std::string(key));
    return e ? std::optional(e->size) : std::nullopt;
  });
  return a;
}

TorchArchive open_torch_file(std::span<const unsigned char> file, std::string_view file_name) {
  if (!is_legacy_torch(file)) return open_torch_archive(file, file_name);
  const std::string name = printable(file_name, 1024);
  const LegacyTorch legacy = read_legacy_torch(file, name);
  DIDMARK_EXPECTS(legacy.pickle.size() <= kPickleMaxBytes, corrupt_input, "'", name, "': the object's pickle is ",
                  legacy.pickle.size(), " bytes, over the limit of ", kPickleMaxBytes, " (kPickleMaxBytes)");
  TorchArchive a;
  a.legacy = true;
  validate_for_libtorch(a, legacy.pickle, name, [&](std::string_view key) -> std::optional<uint64_t> {
    const auto it = legacy.records.find(key);
    return it == legacy.records.end() ? std::nullopt : std::optional<uint64_t>(it->second.size());
  });
  return a;
}

}  // namespace didmark::detail
