#include "io/torch_save.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <bit>
#include <cstring>
#include <limits>
#include <map>

#include "common/atomic_file.hpp"
#include "didmark/error.hpp"

namespace didmark::detail {

TorchValue TorchValue::of(bool b) {
  TorchValue v;
  v.kind = Kind::boolean;
  v.boolean = b;
  return v;
}
TorchValue TorchValue::of(int64_t i) {
  TorchValue v;
  v.kind = Kind::integer;
  v.integer = i;
  return v;
}
TorchValue TorchValue::of(double d) {
  TorchValue v;
  v.kind = Kind::real;
  v.real = d;
  return v;
}
TorchValue TorchValue::of(std::string s) {
  TorchValue v;
  v.kind = Kind::string;
  v.string = std::move(s);
  return v;
}
TorchValue TorchValue::container(Kind kind, std::vector<TorchValue> items) {
  TorchValue v;
  v.kind = kind;
  v.items = std::move(items);
  return v;
}
TorchValue TorchValue::tensor(std::size_t storage, std::vector<int64_t> sizes) {
  TorchValue v;
  v.kind = Kind::tensor;
  v.storage = storage;
  v.strides.assign(sizes.size(), 1);
  for (std::size_t i = sizes.size(); i-- > 1;) v.strides[i - 1] = v.strides[i] * std::max<int64_t>(sizes[i], 1);
  v.sizes = std::move(sizes);
  return v;
}

namespace {

static_assert(std::endian::native == std::endian::little, "the torch writer assumes a little-endian host");

// The storage class torch.save names for a dtype (torch/storage.py _dtype_to_storage_type_map).
const char* storage_class(DType t) {
  switch (t) {
    case DType::f64: return "DoubleStorage";
    case DType::f32: return "FloatStorage";
    case DType::f16: return "HalfStorage";
    case DType::bf16: return "BFloat16Storage";
    case DType::i64: return "LongStorage";
    case DType::i32: return "IntStorage";
    case DType::i16: return "ShortStorage";
    case DType::i8: return "CharStorage";
    case DType::u8: return "ByteStorage";
    case DType::boolean: return "BoolStorage";
    default: return nullptr;
  }
}

// Emits protocol 2 as Python's pickler does for these values, with two simplifications that
// every unpickler (Python's, its weights-only one, LibTorch 1.13's) reads the same: only
// globals are memoized, and every dict/list is filled with MARK .. SETITEMS/APPENDS.
class Pickler {
 public:
  explicit Pickler(std::span<const TorchStorage> storages) : storages_(storages) {}

  std::string run(const TorchValue& root) {
    out_ += "\x80\x02";
    value(root, 0);
    out_ += '.';
    return std::move(out_);
  }

 private:
  void op(char c) { out_ += c; }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xFF);
  }

  void global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    if (const auto it = memo_.find(key); it != memo_.end()) {
      op('h');  // BINGET
      op(static_cast<char>(it->second));
      return;
    }
    DIDMARK_EXPECTS(memo_.size() < 256, internal, "torch writer: too many distinct globals");
    op('c');
    out_ += key;
    const auto slot = static_cast<unsigned char>(memo_.size());
    memo_.emplace(key, slot);
    op('q');  // BINPUT
    op(static_cast<char>(slot));
  }

  void integer(int64_t v) {
    if (v >= 0 && v <= 0xFF) {
      op('K');
      op(static_cast<char>(v));
    } else if (v >= 0 && v <= 0xFFFF) {
      op('M');
      op(static_cast<char>(v & 0xFF));
      op(static_cast<char>(v >> 8));
    } else if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
      op('J');
      u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      op('\x8a');  // LONG1, 8 bytes two's complement (LibTorch 1.13 reads only this width)
      op('\x08');
      const auto u = static_cast<uint64_t>(v);
      for (int i = 0; i < 8; ++i) op(static_cast<char>((u >> (8 * i)) & 0xFF));
    }
  }

  void string(const std::string& s) {
    DIDMARK_EXPECTS(s.size() <= std::numeric_limits<uint32_t>::max(), invalid_argument,
                    "torch writer: a string of ", s.size(), " bytes is too long for a pickle");
    op('X');  // BINUNICODE
    u32(static_cast<uint32_t>(s.size()));
    out_ += s;
  }

  void tuple_of(const std::vector<int64_t>& v) {
    if (v.empty()) return op(')');
    if (v.size() > 3) op('(');
    for (const int64_t x : v) integer(x);
    if (v.size() == 1) op('\x85');
    else if (v.size() == 2) op('\x86');
    else if (v.size() == 3) op('\x87');
    else op('t');
  }

  void tensor(const TorchValue& t) {
    DIDMARK_EXPECTS(t.storage < storages_.size(), invalid_argument, "torch writer: tensor names storage ", t.storage,
                    " of ", storages_.size());
    const TorchStorage& s = storages_[t.storage];
    DIDMARK_EXPECTS(!s.type_name.empty() && std::all_of(s.type_name.begin(), s.type_name.end(),
                                                         [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)); }),
                    invalid_argument, "torch writer: storage ", t.storage, " has no valid class name");
    DIDMARK_EXPECTS(t.sizes.size() == t.strides.size() && t.offset >= 0, invalid_argument,
                    "torch writer: a tensor's sizes and strides differ in rank or its offset is negative");
    // Last element reached, so that a view never points past its storage.
    uint64_t last = static_cast<uint64_t>(t.offset);
    bool empty = false;
    for (std::size_t i = 0; i < t.sizes.size(); ++i) {
      DIDMARK_EXPECTS(t.sizes[i] >= 0 && t.strides[i] >= 0, invalid_argument,
                      "torch writer: negative size or stride");
      if (t.sizes[i] == 0) empty = true;
      else last += static_cast<uint64_t>(t.sizes[i] - 1) * static_cast<uint64_t>(t.strides[i]);
    }
    DIDMARK_EXPECTS(empty || last < s.numel, invalid_argument, "torch writer: a tensor reaches element ", last,
                    " of a storage of ", s.numel);
    global("torch._utils", "_rebuild_tensor_v2");
    op('(');
    // The persistent id ('storage', torch.<T>Storage, key, location, numel).
    op('(');
    string("storage");
    global("torch", s.type_name);
    string(std::to_string(t.storage));
    string("cpu");
    integer(static_cast<int64_t>(s.numel));
    op('t');
    op('Q');  // BINPERSID
    integer(t.offset);
    tuple_of(t.sizes);
    tuple_of(t.strides);
    op(t.requires_grad ? '\x88' : '\x89');
    // backward_hooks: an empty OrderedDict, as torch.save writes it.
    global("collections", "OrderedDict");
    op(')');
    op('R');
    op('t');
    op('R');
  }

  void value(const TorchValue& v, int depth) {
    DIDMARK_EXPECTS(depth <= 1000, invalid_argument, "torch writer: values nested deeper than 1000");
    using K = TorchValue::Kind;
    switch (v.kind) {
      case K::none: return op('N');
      case K::boolean: return op(v.boolean ? '\x88' : '\x89');
      case K::integer: return integer(v.integer);
      case K::real: {
        op('G');  // BINFLOAT: big-endian IEEE double
        const auto u = std::bit_cast<uint64_t>(v.real);
        for (int i = 7; i >= 0; --i) op(static_cast<char>((u >> (8 * i)) & 0xFF));
        return;
      }
      case K::string: return string(v.string);
      case K::tuple:
        if (v.items.empty()) return op(')');
        op('(');
        for (const auto& x : v.items) value(x, depth + 1);
        return op('t');
      case K::list:
        op(']');
        if (!v.items.empty()) {
          op('(');
          for (const auto& x : v.items) value(x, depth + 1);
          op('e');
        }
        return;
      case K::dict:
      case K::ordered_dict:
        DIDMARK_EXPECTS(v.items.size() % 2 == 0, invalid_argument, "torch writer: a dict with a key and no value");
        if (v.kind == K::dict) {
          op('}');
        } else {
          global("collections", "OrderedDict");
          op(')');
          op('R');
        }
        if (!v.items.empty()) {
          op('(');
          for (const auto& x : v.items) value(x, depth + 1);
          op('u');
        }
        return;
      case K::tensor: return tensor(v);
    }
  }

  std::span<const TorchStorage> storages_;
  std::string out_;
  std::map<std::string, unsigned char> memo_;
};

// ---- zip (stored entries, as PyTorch's writer makes them) ---------------------------------

constexpr uint64_t kAlign = 64;  // PyTorch aligns every record's data to 64 bytes
constexpr uint64_t k32 = 0xFFFFFFFFu;

void put16(std::string& s, uint32_t v) {
  s += static_cast<char>(v & 0xFF);
  s += static_cast<char>((v >> 8) & 0xFF);
}
void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xFFFF);
  put16(s, v >> 16);
}
void put64(std::string& s, uint64_t v) {
  put32(s, static_cast<uint32_t>(v & k32));
  put32(s, static_cast<uint32_t>(v >> 32));
}

class ZipWriter {
 public:
  explicit ZipWriter(AtomicFile& out) : out_(out) {}

  void add(const std::string& name, const void* data, uint64_t size) {
    Entry e{name, size, crc32(data, static_cast<std::size_t>(size)), pos_};
    const bool big = size >= k32;
    std::string h;
    put32(h, 0x04034b50);
    put16(h, big ? 45 : 20);
    put16(h, 0);  // flags
    put16(h, 0);  // stored
    put16(h, 0);  // time 00:00:00
    put16(h, 0x21);  // date 1980-01-01
    put32(h, e.crc);
    put32(h, big ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(size));
    put32(h, big ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(size));
    put16(h, static_cast<uint32_t>(name.size()));
    const uint64_t z64 = big ? 20 : 0;
    const uint64_t base = pos_ + 30 + name.size() + z64 + 4;
    const uint64_t pad = (kAlign - base % kAlign) % kAlign;
    put16(h, static_cast<uint32_t>(z64 + 4 + pad));
    h += name;
    if (big) {
      put16(h, 0x0001);
      put16(h, 16);
      put64(h, size);
      put64(h, size);
    }
    put16(h, 0x4246);  // "FB": PyTorch's padding field
    put16(h, static_cast<uint32_t>(pad));
    h.append(static_cast<std::size_t>(pad), 'Z');
    write(h.data(), h.size());
    write(data, size);
    entries_.push_back(std::move(e));
  }

  void finish() {
    const uint64_t cd_start = pos_;
    std::string cd;
    for (const Entry& e : entries_) {
      const bool big_size = e.size >= k32, big_off = e.offset >= k32;
      std::string extra;
      if (big_size || big_off) {
        put16(extra, 0x0001);
        put16(extra, (big_size ? 16 : 0) + (big_off ? 8 : 0));
        if (big_size) {
          put64(extra, e.size);
          put64(extra, e.size);
        }
        if (big_off) put64(extra, e.offset);
      }
      put32(cd, 0x02014b50);
      put16(cd, 0x031e);  // made by: UNIX, 3.0
      put16(cd, extra.empty() ? 20 : 45);
      put16(cd, 0);
      put16(cd, 0);
      put16(cd, 0);
      put16(cd, 0x21);
      put32(cd, e.crc);
      put32(cd, big_size ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(e.size));
      put32(cd, big_size ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(e.size));
      put16(cd, static_cast<uint32_t>(e.name.size()));
      put16(cd, static_cast<uint32_t>(extra.size()));
      put16(cd, 0);  // comment
      put16(cd, 0);  // disk
      put16(cd, 0);  // internal attributes
      put32(cd, 0);  // external attributes
      put32(cd, big_off ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(e.offset));
      cd += e.name;
      cd += extra;
    }
    write(cd.data(), cd.size());
    const uint64_t cd_size = cd.size(), n = entries_.size();
    const bool z64 = n >= 0xFFFF || cd_size >= k32 || cd_start >= k32;
    std::string end;
    if (z64) {
      const uint64_t z64_at = pos_;
      put32(end, 0x06064b50);
      put64(end, 44);
      put16(end, 0x031e);
      put16(end, 45);
      put32(end, 0);
      put32(end, 0);
      put64(end, n);
      put64(end, n);
      put64(end, cd_size);
      put64(end, cd_start);
      put32(end, 0x07064b50);
      put32(end, 0);
      put64(end, z64_at);
      put32(end, 1);
    }
    put32(end, 0x06054b50);
    put16(end, 0);
    put16(end, 0);
    put16(end, z64 ? 0xFFFF : static_cast<uint32_t>(n));
    put16(end, z64 ? 0xFFFF : static_cast<uint32_t>(n));
    put32(end, z64 ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(cd_size));
    put32(end, z64 ? static_cast<uint32_t>(k32) : static_cast<uint32_t>(cd_start));
    put16(end, 0);
    write(end.data(), end.size());
  }

 private:
  struct Entry {
    std::string name;
    uint64_t size;
    uint32_t crc;
    uint64_t offset;
  };
  void write(const void* p, uint64_t n) {
    out_.write(p, static_cast<std::size_t>(n));
    pos_ += n;
  }

  AtomicFile& out_;
  uint64_t pos_ = 0;
  std::vector<Entry> entries_;
};

// Slice-by-8 tables for the reflected polynomial 0xEDB88320.
const std::array<std::array<uint32_t, 256>, 8>& crc_tables() {
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (std::size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    return t;
  }();
  return tables;
}

}  // namespace

uint32_t crc32(const void* data, std::size_t n, uint32_t crc) noexcept {
  const auto& t = crc_tables();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^ t[3][hi & 0xFF] ^
        t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
  return ~c;
}

TorchStorage torch_storage(DType dtype, const void* data, uint64_t numel) {
  const char* cls = storage_class(dtype);
  DIDMARK_EXPECTS(cls != nullptr, unsupported, "dtype ", dtype_name(dtype), " cannot be written to a PyTorch file");
  return TorchStorage{cls, dtype_size(dtype), data, numel};
}

std::string torch_pickle(const TorchValue& root, std::span<const TorchStorage> storages) {
  return Pickler(storages).run(root);
}

void write_torch_file(const std::filesystem::path& path, const TorchValue& root,
                      std::span<const TorchStorage> storages, bool overwrite) {
  const std::string pickle = torch_pickle(root, storages);
  AtomicFile out(path, overwrite);
  ZipWriter zip(out);
  zip.add("archive/data.pkl", pickle.data(), pickle.size());
  zip.add("archive/byteorder", "little", 6);
  for (std::size_t i = 0; i < storages.size(); ++i) {
    const TorchStorage& s = storages[i];
    const uint64_t bytes = s.numel * s.item_size;
    DIDMARK_EXPECTS(bytes == 0 || s.data != nullptr, invalid_argument, "torch writer: storage ", i, " has no data");
    zip.add("archive/data/" + std::to_string(i), s.data, bytes);
  }
  zip.add("archive/version", "3\n", 2);
  zip.finish();
  out.commit();
}

void write_torch_state_dict(const std::filesystem::path& path, std::span<const NamedTensor> tensors, bool overwrite) {
  std::vector<TorchStorage> storages;
  std::vector<TorchValue> items;
  for (const auto& t : tensors) {
    validate_view(t.view, t.name);
    DIDMARK_EXPECTS(t.view.device == Device::cpu && t.view.is_contiguous(), invalid_argument, "tensor '", t.name,
                    "' is not a contiguous host view");
    storages.push_back(torch_storage(t.view.dtype, t.view.data, static_cast<uint64_t>(t.view.numel())));
    items.push_back(TorchValue::of(t.name));
    items.push_back(TorchValue::tensor(storages.size() - 1, t.view.shape));
  }
  write_torch_file(path, TorchValue::container(TorchValue::Kind::ordered_dict, std::move(items)), storages, overwrite);
}

}  // namespace didmark::detail
