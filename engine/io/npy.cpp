// NumPy .npy format (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
// magic "\x93NUMPY", version, header length (u16 for 1.0, u32 for 2.0/3.0), then a Python
// dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded to 64 bytes.
#include <cstring>
#include <limits>
#include <sstream>

#include "common/atomic_file.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {
namespace {

struct DescrMap {
  const char* descr;
  DType dtype;
};
constexpr DescrMap kDescrs[] = {
    {"<f8", DType::f64}, {"<f4", DType::f32}, {"<f2", DType::f16}, {"<i8", DType::i64}, {"<i4", DType::i32},
    {"<i2", DType::i16}, {"|i1", DType::i8},  {"|u1", DType::u8},  {"|b1", DType::boolean},
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

}  // namespace

TensorView NpyArray::view() const {
  TensorView v;
  v.data = const_cast<unsigned char*>(file->data() + data_offset);
  v.dtype = dtype;
  v.shape = shape;
  return v;
}

NpyArray read_npy(const std::filesystem::path& path) {
  auto file = std::make_shared<MappedFile>(path);
  const std::string name = path.string();
  const unsigned char* d = file->data();
  const std::size_t n = file->size();
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
  DIDMARK_EXPECTS(hlen <= n - start, corrupt_input, "'", name, "': .npy header length ", hlen, " runs past the end (",
                  n, " bytes)");
  const std::string_view header(reinterpret_cast<const char*>(d + start), hlen);

  NpyArray a;
  a.file = file;
  a.data_offset = start + hlen;
  const std::string descr = unquote(dict_value(header, "descr", name));
  bool found = false;
  for (const auto& m : kDescrs) {
    std::string alt = m.descr;
    if (alt[0] == '|') alt[0] = '<';
    if (descr == m.descr || descr == alt || (descr.size() == 3 && descr[0] == '=' && descr.substr(1) == alt.substr(1))) {
      a.dtype = m.dtype;
      found = true;
    }
  }
  DIDMARK_EXPECTS(descr.empty() || descr[0] != '>', unsupported, "'", name, "': big-endian dtype '", descr,
                  "' is not supported");
  DIDMARK_EXPECTS(found, unsupported, "'", name, "': dtype '", descr, "' is not supported");
  const std::string_view fortran = dict_value(header, "fortran_order", name);
  DIDMARK_EXPECTS(fortran == "False", unsupported, "'", name,
                  "': Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  std::string_view shape = dict_value(header, "shape", name);
  DIDMARK_EXPECTS(shape.size() >= 2 && shape.front() == '(' && shape.back() == ')', corrupt_input, "'", name,
                  "': bad shape in .npy header: ", shape);
  shape = shape.substr(1, shape.size() - 2);
  std::size_t count = 1;
  while (!trim(shape).empty()) {
    const std::size_t comma = shape.find(',');
    const std::string_view tok = trim(shape.substr(0, comma));
    if (!tok.empty()) {
      int64_t dim = 0;
      for (char c : tok) {
        DIDMARK_EXPECTS(c >= '0' && c <= '9', corrupt_input, "'", name, "': bad dimension '", tok,
                        "' in .npy shape");
        DIDMARK_EXPECTS(dim <= (std::numeric_limits<int64_t>::max() - 9) / 10, corrupt_input, "'", name,
                        "': dimension overflows");
        dim = dim * 10 + (c - '0');
      }
      DIDMARK_EXPECTS(dim == 0 || count <= std::numeric_limits<std::size_t>::max() / static_cast<std::size_t>(dim),
                      corrupt_input, "'", name, "': element count overflows");
      count *= static_cast<std::size_t>(dim);
      a.shape.push_back(dim);
    }
    if (comma == std::string_view::npos) break;
    shape.remove_prefix(comma + 1);
  }
  const std::size_t esize = dtype_size(a.dtype);
  DIDMARK_EXPECTS(count <= std::numeric_limits<std::size_t>::max() / esize, corrupt_input, "'", name,
                  "': byte count overflows");
  const std::size_t need = count * esize;
  DIDMARK_EXPECTS(need == n - a.data_offset, corrupt_input, "'", name, "': header says ", need,
                  " data bytes but the file holds ", n - a.data_offset);
  return a;
}

std::string npy_header(DType dtype, std::span<const int64_t> shape) {
  const char* descr = nullptr;
  for (const auto& m : kDescrs)
    if (m.dtype == dtype) descr = m.descr;
  DIDMARK_EXPECTS(descr != nullptr, unsupported, "dtype ", dtype_name(dtype), " has no .npy equivalent");
  std::ostringstream h;
  h << "{'descr': '" << descr << "', 'fortran_order': False, 'shape': (";
  for (std::size_t i = 0; i < shape.size(); ++i) h << shape[i] << (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  h << "), }";
  std::string header = h.str();
  // Pad with spaces so that magic + length + header + '\n' is a multiple of 64.
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xFF));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  return out;
}

std::string npy_bytes(const TensorView& v) {
  validate_view(v, "npy");
  DIDMARK_EXPECTS(v.device == Device::cpu && v.is_contiguous(), invalid_argument,
                  "write_npy needs a contiguous host view, got ", v.describe());
  std::string out = npy_header(v.dtype, v.shape);
  out.append(static_cast<const char*>(v.data), v.nbytes());
  return out;
}

void write_npy(const std::filesystem::path& path, const TensorView& v, bool overwrite) {
  const std::string bytes = npy_bytes(v);
  detail::write_file_atomically(path, bytes, overwrite);
}

}  // namespace didmark
