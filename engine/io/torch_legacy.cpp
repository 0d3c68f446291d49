#include "io/torch_legacy.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "didmark/error.hpp"

namespace didmark::detail {
namespace {

// The magic-number pickle: PROTO 2, LONG1 of 10 bytes (0x1950a86a20f9469cfc6c), STOP.
constexpr unsigned char kMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                    0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

// The values the legacy parser needs to see; everything else is an opaque object.
struct Val {
  enum class Kind { none, boolean, integer, string, global, tuple, list, dict, object } kind = Kind::object;
  bool boolean = false;
  int64_t integer = 0;
  std::string text;                        // string, or "module.name" of a global
  std::vector<std::size_t> items;  // tuple/list elements; dict keys and values alternately (arena indices)
  std::size_t at = 0;                      // offset of the opcode that made it
  std::size_t end = 0;                     // offset just past that opcode
};

struct Persid {
  std::string type;  // "FloatStorage", ...
  std::string key;
  int64_t numel = 0;
  std::size_t none_at = std::string::npos;  // offset of the view_metadata None to cut
};

// A pickle machine over the protocol-2 opcodes that torch.save's legacy format uses, keeping
// strings, numbers, globals and containers; REDUCE and BUILD make opaque objects (nothing is
// called). Values live in one arena and refer to each other by index. Every read is
// bounds-checked.
class Machine {
 public:
  Machine(std::span<const unsigned char> in, std::size_t at, std::string_view name) : in_(in), p_(at), name_(name) {}

  /// The value the pickle makes.
  const Val& run() { return values_[run_index()]; }
  const Val& value(std::size_t i) const { return values_[i]; }

 private:
  std::size_t run_index() {
    while (true) {
      const std::size_t at = p_;
      const unsigned char op = byte();
      switch (op) {
        case 0x80: byte(); break;  // PROTO
        case '.': {
          need(stack_.size() == 1 && marks_.empty(), at, "STOP with other than one value");
          return stack_.back();
        }
        case '(': marks_.push_back(stack_.size()); break;
        case '}': push(make(Val::Kind::dict, at)); break;
        case ']': push(make(Val::Kind::list, at)); break;
        case ')': push(make(Val::Kind::tuple, at)); break;
        case 'N': push(make(Val::Kind::none, at)); break;
        case 0x88: case 0x89: {
          const std::size_t v = make(Val::Kind::boolean, at);
          values_[v].boolean = op == 0x88;
          push(v);
          break;
        }
        case 'K': push(integer(at, byte())); break;
        case 'M': push(integer(at, static_cast<int64_t>(le(2)))); break;
        case 'J': push(integer(at, static_cast<int32_t>(le(4)))); break;
        case 0x8a: {  // LONG1
          const std::size_t n = byte();
          need(n <= 8, at, "an integer wider than 8 bytes");
          uint64_t v = n ? le(n) : 0;
          if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
          push(integer(at, static_cast<int64_t>(v)));
          break;
        }
        case 'G': skip(8, at); push(make(Val::Kind::object, at)); break;  // BINFLOAT
        case 'X': case 'B': {  // BINUNICODE, BINBYTES
          const auto n = static_cast<std::size_t>(le(4));
          push(text(at, n, op == 'X' ? Val::Kind::string : Val::Kind::object));
          break;
        }
        case 'U': case 'C': {  // SHORT_BINSTRING, SHORT_BINBYTES
          const std::size_t n = byte();
          push(text(at, n, Val::Kind::string));
          break;
        }
        case 'T': push(text(at, static_cast<std::size_t>(le(4)), Val::Kind::string)); break;  // BINSTRING
        case 'c': {
          std::string module = line(at);
          const std::string name = line(at);
          const std::size_t v = make(Val::Kind::global, at);
          values_[v].text = module + "." + name;
          push(v);
          break;
        }
        case 'q': memo_put(byte(), at); break;
        case 'r': memo_put(le(4), at); break;
        case 'h': memo_get(byte(), at); break;
        case 'j': memo_get(le(4), at); break;
        case 't': {
          std::vector<std::size_t> items = pop_mark(at);
          const std::size_t v = make(Val::Kind::tuple, at);
          values_[v].items = std::move(items);
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {
          std::vector<std::size_t> items = pop(static_cast<std::size_t>(op - 0x84), at);
          const std::size_t v = make(Val::Kind::tuple, at);
          values_[v].items = std::move(items);
          push(v);
          break;
        }
        case 'e': case 'u': {
          const std::vector<std::size_t> items = pop_mark(at);
          const std::size_t c = top(at);
          // An opaque object here is an OrderedDict() (REDUCE): filled, not kept.
          need((values_[c].kind == (op == 'e' ? Val::Kind::list : Val::Kind::dict) ||
                values_[c].kind == Val::Kind::object) &&
                   (op == 'e' || items.size() % 2 == 0),
               at, "APPENDS/SETITEMS on the wrong kind of value");
          keep(c, items);
          break;
        }
        case 'a': case 's': {
          const std::vector<std::size_t> items = pop(op == 'a' ? 1 : 2, at);
          const std::size_t c = top(at);
          need(values_[c].kind == (op == 'a' ? Val::Kind::list : Val::Kind::dict) || values_[c].kind == Val::Kind::object,
               at, "APPEND/SETITEM on the wrong kind of value");
          keep(c, items);
          break;
        }
        case 'R': {  // REDUCE: the result is opaque (OrderedDict(), _rebuild_tensor_v2(...))
          pop(2, at);
          push(make(Val::Kind::object, at));
          break;
        }
        case 'b': pop(1, at); top(at); break;  // BUILD: state applied to an opaque object
        case 'Q': {  // BINPERSID
          const std::size_t id = pop(1, at).front();
          persid(values_[id], at);
          push(make(Val::Kind::object, at));
          break;
        }
        default:
          DIDMARK_THROW(Errc::corrupt_input, "'", name_, "': opcode 0x", hex(op), " at byte ", at,
                        " is not one torch.save's legacy format writes");
      }
    }
  }


 public:
  std::size_t position() const noexcept { return p_; }
  std::vector<Persid>& persids() noexcept { return persids_; }

 private:
  static std::string hex(unsigned char c) {
    static constexpr char d[] = "0123456789abcdef";
    return {d[c >> 4], d[c & 15]};
  }
  void need(bool ok, std::size_t at, const char* what) const {
    if (!ok) DIDMARK_THROW(Errc::corrupt_input, "'", name_, "': ", what, " at byte ", at);
  }
  unsigned char byte() {
    need(p_ < in_.size(), p_, "the stream ends early");
    return in_[p_++];
  }
  void skip(std::size_t n, std::size_t at) {
    need(n <= in_.size() - p_, at, "the stream ends early");
    p_ += n;
  }
  uint64_t le(std::size_t n) {
    uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    return v;
  }
  std::string line(std::size_t at) {
    const auto* b = in_.data() + p_;
    const auto* e = static_cast<const unsigned char*>(std::memchr(b, '\n', in_.size() - p_));
    need(e != nullptr && e - b <= 256, at, "a GLOBAL without its name");
    std::string s(reinterpret_cast<const char*>(b), static_cast<std::size_t>(e - b));
    p_ += s.size() + 1;
    return s;
  }
  std::size_t make(Val::Kind k, std::size_t at) {
    Val v;
    v.kind = k;
    v.at = at;
    v.end = p_;
    values_.push_back(std::move(v));
    return values_.size() - 1;
  }
  std::size_t integer(std::size_t at, int64_t i) {
    const std::size_t v = make(Val::Kind::integer, at);
    values_[v].integer = i;
    return v;
  }
  std::size_t text(std::size_t at, std::size_t n, Val::Kind k) {
    need(n <= in_.size() - p_, at, "a string longer than the file");
    const std::size_t v = make(k, at);
    if (k == Val::Kind::string) values_[v].text.assign(reinterpret_cast<const char*>(in_.data() + p_), n);
    p_ += n;
    values_[v].end = p_;
    return v;
  }
  // Every opcode makes at most one value and pushes at most one: both stay smaller than the
  // stream.
  void push(std::size_t v) { stack_.push_back(v); }
  std::size_t top(std::size_t at) const {
    need(stack_.size() > (marks_.empty() ? 0 : marks_.back()), at, "an opcode with no value to work on");
    return stack_.back();
  }
  std::vector<std::size_t> pop(std::size_t n, std::size_t at) {
    const std::size_t floor = marks_.empty() ? 0 : marks_.back();
    need(stack_.size() >= floor + n, at, "an opcode pops more values than there are");
    std::vector<std::size_t> out(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return out;
  }
  std::vector<std::size_t> pop_mark(std::size_t at) {
    need(!marks_.empty(), at, "a MARK is missing");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<std::size_t> out(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  // Lists and dicts keep only their plain items (the keys list, the system info), containers
  // as opaque objects: so no value ever holds itself, however the pickle nests.
  void keep(std::size_t c, const std::vector<std::size_t>& items) {
    if (values_[c].kind == Val::Kind::object) return;
    for (const std::size_t v : items) {
      const Val::Kind k = values_[v].kind;
      const bool plain = k != Val::Kind::tuple && k != Val::Kind::list && k != Val::Kind::dict;
      const std::size_t kept = plain ? v : make(Val::Kind::object, values_[v].at);
      values_[c].items.push_back(kept);
    }
  }
  void memo_put(uint64_t slot, std::size_t at) {
    need(slot <= in_.size(), at, "a memo index beyond the stream's size");
    memo_[slot] = top(at);
  }
  void memo_get(uint64_t slot, std::size_t at) {
    const auto it = memo_.find(slot);
    need(it != memo_.end(), at, "a memo read of a slot never set");
    push(it->second);
  }
  void persid(const Val& id, std::size_t at) {
    using K = Val::Kind;
    need(id.kind == K::tuple && (id.items.size() == 5 || id.items.size() == 6), at,
         "a persistent id that is not a tuple of 5 or 6 fields");
    std::vector<Val> e;
    for (const std::size_t i : id.items) e.push_back(values_[i]);
    need(e[0].kind == K::string && e[0].text == "storage" && e[1].kind == K::global &&
             e[1].text.rfind("torch.", 0) == 0 && e[2].kind == K::string && e[3].kind == K::string &&
             e[4].kind == K::integer && e[4].integer >= 0,
         at, "a persistent id that is not ('storage', torch.<T>Storage, key, location, numel, view)");
    Persid p{e[1].text.substr(6), e[2].text, e[4].integer};
    if (e.size() == 6) {
      if (e[5].kind != K::none)
        DIDMARK_THROW(Errc::unsupported, "'", name_, "' holds a storage view (PyTorch < 0.4); load and re-save it");
      // Only a literal NONE opcode is cut (a memo read would stand for more than one byte).
      need(in_[e[5].at] == 'N' && e[5].end == e[5].at + 1, at, "a view_metadata that is not a NONE opcode");
      p.none_at = e[5].at;
    }
    persids_.push_back(std::move(p));
  }

  std::span<const unsigned char> in_;
  std::size_t p_;
  std::string_view name_;
  std::vector<std::size_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<uint64_t, std::size_t> memo_;
  std::vector<Val> values_;
  std::vector<Persid> persids_;
};

std::size_t item_size(const std::string& type, std::string_view name) {
  static const std::unordered_map<std::string, std::size_t> sizes = {
      {"DoubleStorage", 8}, {"FloatStorage", 4},  {"HalfStorage", 2},         {"BFloat16Storage", 2},
      {"LongStorage", 8},   {"IntStorage", 4},    {"ShortStorage", 2},        {"CharStorage", 1},
      {"ByteStorage", 1},   {"BoolStorage", 1},   {"ComplexFloatStorage", 8}, {"ComplexDoubleStorage", 16}};
  const auto it = sizes.find(type);
  if (it == sizes.end())
    DIDMARK_THROW(Errc::unsupported, "'", name, "' holds a storage of a type didmark does not read");
  return it->second;
}

}  // namespace

bool is_legacy_torch(std::span<const unsigned char> file) noexcept {
  return file.size() >= sizeof(kMagic) && std::memcmp(file.data(), kMagic, sizeof(kMagic)) == 0;
}

LegacyTorch read_legacy_torch(std::span<const unsigned char> file, std::string_view name) {
  DIDMARK_EXPECTS(is_legacy_torch(file), corrupt_input, "'", name, "' is not a legacy torch.save file");
  std::size_t at = sizeof(kMagic);
  std::vector<Persid> persids;
  auto next = [&]() {
    Machine m(file, at, name);
    const Val& v = m.run();
    std::vector<Val> items;
    for (const std::size_t i : v.items) items.push_back(m.value(i));
    at = m.position();
    persids = std::move(m.persids());
    return std::make_pair(v, std::move(items));
  };
  {
    const auto [version, unused] = next();
    DIDMARK_EXPECTS(version.kind == Val::Kind::integer && version.integer == 1001, corrupt_input, "'", name,
                    "': legacy protocol version is not 1001");
  }
  {
    const auto [info, items] = next();
    bool little = false;
    if (info.kind == Val::Kind::dict)
      for (std::size_t i = 0; i + 1 < items.size(); i += 2)
        if (items[i].kind == Val::Kind::string && items[i].text == "little_endian")
          little = items[i + 1].kind == Val::Kind::boolean && items[i + 1].boolean;
    DIDMARK_EXPECTS(little, unsupported, "'", name, "' was written on a big-endian machine; didmark reads little-endian files");
  }
  const std::size_t ostart = at;
  next();
  const std::vector<Persid> object_persids = std::move(persids);
  const std::size_t oend = at;
  const auto [keys, key_items] = next();
  DIDMARK_EXPECTS(keys.kind == Val::Kind::list, corrupt_input, "'", name, "': the storage keys are not a list");

  LegacyTorch out;
  // The object's pickle without the None of each six-field persistent id.
  std::vector<std::size_t> cuts;
  std::map<std::string, std::pair<std::size_t, int64_t>, std::less<>> wanted;  // key -> (item size, numel)
  for (const Persid& p : object_persids) {
    if (p.none_at != std::string::npos) cuts.push_back(p.none_at);
    const std::size_t item = item_size(p.type, name);
    const auto [it, fresh] = wanted.emplace(p.key, std::make_pair(item, p.numel));
    DIDMARK_EXPECTS(fresh || it->second == std::make_pair(item, p.numel), corrupt_input, "'", name,
                    "': one storage is named with two types or sizes");
  }
  std::sort(cuts.begin(), cuts.end());
  out.pickle.reserve(oend - ostart);
  std::size_t from = ostart;
  for (const std::size_t c : cuts) {
    out.pickle.append(reinterpret_cast<const char*>(file.data() + from), c - from);
    from = c + 1;
  }
  out.pickle.append(reinterpret_cast<const char*>(file.data() + from), oend - from);

  // The storages, in the order of the keys list: an 8-byte element count, then the bytes.
  for (const Val& k : key_items) {
    DIDMARK_EXPECTS(k.kind == Val::Kind::string, corrupt_input, "'", name, "': a storage key is not a string");
    const auto it = wanted.find(k.text);
    DIDMARK_EXPECTS(it != wanted.end(), corrupt_input, "'", name, "': a stored storage is not used by the object");
    DIDMARK_EXPECTS(file.size() - at >= 8, corrupt_input, "'", name, "': truncated at byte ", at);
    uint64_t count = 0;
    for (int i = 0; i < 8; ++i) count |= static_cast<uint64_t>(file[at + static_cast<std::size_t>(i)]) << (8 * i);
    at += 8;
    const auto [item, numel] = it->second;
    DIDMARK_EXPECTS(count == static_cast<uint64_t>(numel), corrupt_input, "'", name, "': storage at byte ", at - 8,
                    " holds ", count, " elements where the object says ", numel);
    DIDMARK_EXPECTS(count <= (file.size() - at) / item, corrupt_input, "'", name, "': storage at byte ", at - 8,
                    " runs past the end of the file");
    const std::size_t bytes = static_cast<std::size_t>(count) * item;
    DIDMARK_EXPECTS(out.records.emplace(k.text, file.subspan(at, bytes)).second, corrupt_input, "'", name,
                    "': a storage key is listed twice");
    at += bytes;
  }
  DIDMARK_EXPECTS(out.records.size() == wanted.size(), corrupt_input, "'", name,
                  "': the object uses a storage that is not stored");
  DIDMARK_EXPECTS(at == file.size(), corrupt_input, "'", name, "': ", file.size() - at,
                  " bytes after the last storage");
  return out;
}

}  // namespace didmark::detail
