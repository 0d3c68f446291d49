// NumPy .npy format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// magic "\x93NUMPY", version, header length (u16 for 1.0, u32 for 2.0/3.0), then a Python
// dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded to 64 bytes.
#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>

#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "didmark/limits.hpp"
#include "io/npy_detail.hpp"

namespace didmark {
namespace {

struct DescrMap {
  char kind;
  std::size_t item;
  DType dtype;
  const char* descr;  // as written
};
constexpr DescrMap kDescrs[] = {
    {'f', 8, DType::f64, "<f8"}, {'f', 4, DType::f32, "<f4"}, {'f', 2, DType::f16, "<f2"},
    {'i', 8, DType::i64, "<i8"}, {'i', 4, DType::i32, "<i4"}, {'i', 2, DType::i16, "<i2"},
    {'i', 1, DType::i8, "|i1"},  {'u', 1, DType::u8, "|u1"},  {'b', 1, DType::boolean, "|b1"},
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// The value text of 'key' in the header dict (up to the next top-level comma or brace).
std::string_view dict_value(std::string_view h, std::string_view key, const std::string& file) {
  const std::string quoted1 = "'" + std::string(key) + "'", quoted2 = "\"" + std::string(key) + "\"";
  std::size_t k = h.find(quoted1);
  std::size_t klen = quoted1.size();
  if (k == std::string_view::npos) {
    k = h.find(quoted2);
    klen = quoted2.size();
  }
  DIDMARK_EXPECTS(k != std::string_view::npos, corrupt_input, "'", file, "': .npy header has no '", key, "' entry");
  std::size_t p = h.find(':', k + klen);
  DIDMARK_EXPECTS(p != std::string_view::npos, corrupt_input, "'", file, "': .npy header entry '", key,
                  "' has no value");
  ++p;
  int depth = 0;
  std::size_t e = p;
  for (; e < h.size(); ++e) {
    const char c = h[e];
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if (depth == 0 && (c == ',' || c == '}')) break;
    if (depth < 0) break;
  }
  return trim(h.substr(p, e - p));
}

std::string unquote(std::string_view v) {
  if (v.size() >= 2 && (v.front() == '\'' || v.front() == '"') && v.back() == v.front())
    return std::string(v.substr(1, v.size() - 2));
  return std::string(v);
}

// Reverse the bytes of every item in place.
void swap_items(unsigned char* p, std::size_t count, std::size_t item) {
  for (std::size_t i = 0; i < count; ++i, p += item) std::reverse(p, p + item);
}

// Fortran-order data (first index fastest) to C order (last index fastest).
void fortran_to_c(const unsigned char* src, unsigned char* dst, const std::vector<int64_t>& shape, std::size_t item) {
  const std::size_t rank = shape.size();
  std::vector<std::size_t> fstride(rank), idx(rank, 0);
  std::size_t acc = 1, count = 1;
  for (std::size_t k = 0; k < rank; ++k) {
    fstride[k] = acc;
    acc *= static_cast<std::size_t>(shape[k]);
    count *= static_cast<std::size_t>(shape[k]);
  }
  if (count == 0) return;
  std::size_t off = 0;  // Fortran offset (elements) of idx
  for (std::size_t i = 0; i < count; ++i) {
    std::memcpy(dst + i * item, src + off * item, item);
    for (std::size_t k = rank; k-- > 0;) {  // odometer, last index fastest
      if (++idx[k] < static_cast<std::size_t>(shape[k])) {
        off += fstride[k];
        break;
      }
      off -= fstride[k] * (idx[k] - 1);
      idx[k] = 0;
    }
  }
}

}  // namespace

namespace detail {

NpyHeader parse_npy_header(std::span<const unsigned char> file, std::string_view file_name) {
  const std::string name = printable(file_name, 1024);
  const unsigned char* d = file.data();
  const std::size_t n = file.size();
  DIDMARK_EXPECTS(n >= 10 && std::memcmp(d, "\x93NUMPY", 6) == 0, corrupt_input, "'", name,
                  "' is not a .npy file (bad magic)");
  const int major = d[6];
  DIDMARK_EXPECTS(major >= 1 && major <= 3, unsupported, "'", name, "': .npy format version ", major,
                  " is not supported");
  std::size_t hlen, start;
  if (major == 1) {
    hlen = static_cast<std::size_t>(d[8]) | (static_cast<std::size_t>(d[9]) << 8);
    start = 10;
  } else {
    DIDMARK_EXPECTS(n >= 12, corrupt_input, "'", name, "': truncated .npy header");
    hlen = static_cast<std::size_t>(d[8]) | (static_cast<std::size_t>(d[9]) << 8) |
           (static_cast<std::size_t>(d[10]) << 16) | (static_cast<std::size_t>(d[11]) << 24);
    start = 12;
  }
  DIDMARK_EXPECTS(hlen <= kNpyMaxHeader, corrupt_input, "'", name, "': .npy header is longer than the limit of ",
                  kNpyMaxHeader, " bytes (kNpyMaxHeader)");
  DIDMARK_EXPECTS(hlen <= n - start, corrupt_input, "'", name, "': .npy header runs past the end of the file (", n,
                  " bytes): truncated file?");
  const std::string_view header(reinterpret_cast<const char*>(d + start), hlen);

  NpyHeader h;
  h.data_offset = start + hlen;
  const std::string descr = unquote(dict_value(header, "descr", name));
  h.descr = printable(descr, 32);
  // A simple type: byte order ('<', '>', '=', '|'), kind, item size. '=' is native: little
  // on every machine didmark runs on.
  bool simple = descr.size() >= 3 && descr.size() <= 4 &&
                std::string_view("<>=|").find(descr[0]) != std::string::npos &&
                std::string_view("fiub").find(descr[1]) != std::string::npos;
  std::size_t item = 0;
  for (std::size_t i = 2; simple && i < descr.size(); ++i) {
    if (descr[i] < '0' || descr[i] > '9') simple = false;
    item = item * 10 + static_cast<std::size_t>(descr[i] - '0');
  }
  DIDMARK_EXPECTS(simple, unsupported, "'", name, "': dtype '", h.descr,
                  "' is not supported (numbers and bools only: no structured, string or object arrays)");
  h.kind = descr[1];
  h.item = item;
  h.big_endian = descr[0] == '>' && item > 1;
  const bool known = (h.kind == 'f' && (item == 2 || item == 4 || item == 8)) ||
                     ((h.kind == 'i' || h.kind == 'u') && (item == 1 || item == 2 || item == 4 || item == 8)) ||
                     (h.kind == 'b' && item == 1);
  DIDMARK_EXPECTS(known, unsupported, "'", name, "': dtype '", h.descr, "' is not supported");

  const std::string_view fortran = dict_value(header, "fortran_order", name);
  DIDMARK_EXPECTS(fortran == "False" || fortran == "True", corrupt_input, "'", name,
                  "': fortran_order in the .npy header is neither True nor False");
  h.fortran = fortran == "True";
  std::string_view shape = dict_value(header, "shape", name);
  DIDMARK_EXPECTS(shape.size() >= 2 && shape.front() == '(' && shape.back() == ')', corrupt_input, "'", name,
                  "': bad shape in .npy header: ", printable(shape, 64));
  shape = shape.substr(1, shape.size() - 2);
  std::size_t count = 1;
  bool zero = false;
  while (!trim(shape).empty()) {
    const std::size_t comma = shape.find(',');
    const std::string_view tok = trim(shape.substr(0, comma));
    if (!tok.empty()) {
      DIDMARK_EXPECTS(h.shape.size() < kMaxTensorRank, corrupt_input, "'", name, "': .npy shape has more than ",
                      kMaxTensorRank, " dimensions (kMaxTensorRank)");
      int64_t dim = 0;
      for (char c : tok) {
        DIDMARK_EXPECTS(c >= '0' && c <= '9', corrupt_input, "'", name, "': bad dimension '", printable(tok, 32),
                        "' in .npy shape");
        DIDMARK_EXPECTS(dim <= (std::numeric_limits<int64_t>::max() - 9) / 10, corrupt_input, "'", name,
                        "': dimension overflows");
        dim = dim * 10 + (c - '0');
      }
      if (dim == 0) zero = true;
      // Saturate: a zero elsewhere still makes the count 0, which is checked below.
      count = dim != 0 && count > std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(dim)
                  ? std::numeric_limits<std::size_t>::max()
                  : count * static_cast<std::size_t>(dim);
      h.shape.push_back(dim);
    }
    if (comma == std::string_view::npos) break;
    shape.remove_prefix(comma + 1);
  }
  if (zero) count = 0;
  DIDMARK_EXPECTS(count != std::numeric_limits<std::size_t>::max() &&
                      count <= std::numeric_limits<std::size_t>::max() / item,
                  corrupt_input, "'", name, "': element count overflows");
  h.count = count;
  const std::size_t need = count * item;
  DIDMARK_EXPECTS(need == n - h.data_offset, corrupt_input, "'", name, "': header says ", need,
                  " data bytes but the file holds ", n - h.data_offset);
  return h;
}

std::optional<DType> npy_dtype(const NpyHeader& h) noexcept {
  for (const auto& m : kDescrs)
    if (m.kind == h.kind && m.item == h.item) return m.dtype;
  return std::nullopt;
}

std::string npy_header_bytes(DType dtype, const std::vector<int64_t>& shape) {
  const char* descr = nullptr;
  for (const auto& m : kDescrs)
    if (m.dtype == dtype) descr = m.descr;
  DIDMARK_EXPECTS(descr != nullptr, unsupported, "dtype ", dtype_name(dtype), " has no .npy equivalent");
  std::ostringstream h;
  h << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i)
    h << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  h << "), }";
  std::string header = h.str();
  // Pad with spaces so that magic + length + header + '\n' is a multiple of 64.
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xFF));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header;
}

}  // namespace detail

TensorView NpyArray::view() const {
  TensorView v;
  v.data = converted ? converted->data() : const_cast<unsigned char*>(file->data() + data_offset);
  v.dtype = dtype;
  v.shape = shape;
  return v;
}

NpyArray read_npy(const std::filesystem::path& path) {
  auto file = std::make_shared<MappedFile>(path);
  const std::string name = detail::printable(path.native(), 1024);
  const detail::NpyHeader h = detail::parse_npy_header(std::span(file->data(), file->size()), path.native());
  const auto dtype = detail::npy_dtype(h);
  DIDMARK_EXPECTS(dtype.has_value(), unsupported, "'", name, "': dtype '", h.descr,
                  "' is not supported (f64, f32, f16, i64, i32, i16, i8, u8 and bool are)");
  NpyArray a;
  a.file = file;
  a.dtype = *dtype;
  a.shape = h.shape;
  a.data_offset = h.data_offset;
  a.big_endian = h.big_endian;
  a.fortran_order = h.fortran && h.shape.size() > 1;
  if (a.big_endian || a.fortran_order) {
    // A private little-endian C-order copy (no larger than the file).
    const std::size_t bytes = h.count * h.item;
    a.converted = std::make_shared<std::vector<unsigned char>>(bytes);
    const unsigned char* src = file->data() + h.data_offset;
    if (a.fortran_order)
      fortran_to_c(src, a.converted->data(), h.shape, h.item);
    else if (bytes)
      std::memcpy(a.converted->data(), src, bytes);
    if (a.big_endian) swap_items(a.converted->data(), h.count, h.item);
  }
  return a;
}

std::vector<int64_t> read_row_ids(const std::filesystem::path& path, int64_t expected_rows) {
  const MappedFile file(path);
  const std::string name = detail::printable(path.native(), 1024);
  const detail::NpyHeader h = detail::parse_npy_header(std::span(file.data(), file.size()), path.native());
  const bool integer = (h.kind == 'i' || h.kind == 'u') && h.item >= 2;
  DIDMARK_EXPECTS(integer, invalid_argument, "row ids '", name, "' have dtype '", h.descr,
                  "'; row ids must be integers of 16, 32 or 64 bits (int64 preferred)");
  const bool one_column = h.shape.size() == 1 || (h.shape.size() == 2 && (h.shape[0] == 1 || h.shape[1] == 1));
  DIDMARK_EXPECTS(one_column, invalid_argument, "row ids '", name, "' have ", h.shape.size(),
                  " dimensions; row ids are one per row: shape (N,) or (N, 1)");
  DIDMARK_EXPECTS(expected_rows < 0 || h.count == static_cast<std::size_t>(expected_rows), invalid_argument,
                  "row ids '", name, "' hold ", h.count, " ids but the array has ", expected_rows, " rows");
  std::vector<int64_t> ids(h.count);
  const unsigned char* p = file.data() + h.data_offset;
  for (std::size_t i = 0; i < h.count; ++i, p += h.item) {
    uint64_t u = 0;
    for (std::size_t b = 0; b < h.item; ++b) {
      const std::size_t at = h.big_endian ? b : h.item - 1 - b;  // most significant byte first
      u = (u << 8) | p[at];
    }
    int64_t v;
    if (h.kind == 'i') {
      const unsigned bits = static_cast<unsigned>(8 * h.item);
      v = bits == 64 ? static_cast<int64_t>(u)
                     : static_cast<int64_t>(u << (64 - bits)) >> (64 - bits);  // sign-extend
    } else {
      DIDMARK_EXPECTS(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), invalid_argument, "row ids '",
                      name, "': id at row ", i, " is ", u, ", above 2^63 - 1 (ids are stored as int64)");
      v = static_cast<int64_t>(u);
    }
    ids[i] = v;
  }
  return ids;
}

std::string npy_header(DType dtype, std::span<const int64_t> shape) {
  return detail::npy_header_bytes(dtype, std::vector<int64_t>(shape.begin(), shape.end()));
}

std::string npy_bytes(const TensorView& v) {
  validate_view(v, "npy");
  DIDMARK_EXPECTS(v.device == Device::cpu && v.is_contiguous(), invalid_argument,
                  "write_npy needs a contiguous host view, got ", v.describe());
  std::string out = detail::npy_header_bytes(v.dtype, v.shape);
  out.append(static_cast<const char*>(v.data), v.nbytes());
  return out;
}

void write_npy(const std::filesystem::path& path, const TensorView& v, bool overwrite) {
  const std::string bytes = npy_bytes(v);
  detail::write_file_atomically(path, bytes, overwrite);
}

}  // namespace didmark
