#include "io/pickle_validate.hpp"

#include <array>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <vector>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/limits.hpp"

namespace didmark::detail {
namespace {

enum class K : uint8_t { none, boolean, integer, floating, str, tuple, list, dict, global, storage, tensor };
enum class G : uint8_t {
  ordered_dict,
  rebuild_tensor,
  restore_type_tag,
  build_intlist,
  build_doublelist,
  build_boollist,
  build_tensorlist,
  storage_type,
};

constexpr uint8_t kFrozen = 1, kFromOrderedDict = 2;

struct Node {
  K kind = K::none;
  uint8_t flags = 0;
  G global = G::ordered_dict;
  uint16_t kinds = 0;   // containers: a bit per kind of element held
  uint16_t depth = 0;   // containers: nesting below (1 for a flat container)
  uint32_t count = 0;   // containers: elements (a dict's keys and values)
  uint64_t tree = 1;    // values reached walking this as a tree (saturating)
  int64_t i = 0;        // integer / bool value; storage type: item size; storage: storage index
  uint32_t a = 0, b = 0;  // str: offset and length in the pickle; tuple: first child in the pool, count
};

struct Storage {
  uint32_t key_node;
  int64_t item;
  uint64_t numel;
};

struct StorageName {
  std::string_view name;
  int64_t item;
};
constexpr StorageName kStorages[] = {
    {"DoubleStorage", 8}, {"FloatStorage", 4}, {"HalfStorage", 2}, {"BFloat16Storage", 2}, {"LongStorage", 8},
    {"IntStorage", 4},    {"ShortStorage", 2}, {"CharStorage", 1}, {"ByteStorage", 1},     {"BoolStorage", 1},
};

uint16_t bit(K k) { return static_cast<uint16_t>(1u << static_cast<unsigned>(k)); }

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
    else return false;
    if (s.size() - i < n) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

class Validator {
 public:
  Validator(std::string_view in, const PickleCheckOptions& o) : in_(in), o_(o) {}

  PickleCheck run() {
    check(in_.size() <= kPickleMaxBytes, Errc::corrupt_input, "the pickle is ", in_.size(),
          " bytes, over the limit of ", kPickleMaxBytes, " (kPickleMaxBytes)");
    check(in_.size() >= 2 && static_cast<unsigned char>(in_[0]) == 0x80, Errc::corrupt_input,
          "the pickle does not start with PROTO (not a pickle of protocol 2 or later)");
    check(static_cast<unsigned char>(in_[1]) == 2, Errc::unsupported, "pickle protocol ",
          static_cast<int>(static_cast<unsigned char>(in_[1])),
          " is not read (torch.save writes protocol 2 unless told otherwise; save with the default)");
    pos_ = 2;
    while (true) {
      check(pos_ < in_.size(), Errc::corrupt_input, "the pickle ends without STOP (truncated?)");
      at_ = pos_;
      const auto op = static_cast<unsigned char>(in_[pos_++]);
      ++result_.opcodes;
      if (op == '.') {
        stop();
        break;
      }
      step(op);
    }
    return result_;
  }

 private:
  template <class... A>
  void check(bool cond, Errc code, const A&... a) {
    if (!cond) fail(code, a...);
  }
  template <class... A>
  [[noreturn]] void fail(Errc code, const A&... a) {
    DIDMARK_THROW(code, o_.where, " byte ", at_, ": ", a...);
  }

  // ---- argument bytes ----
  const unsigned char* take(std::size_t n, const char* what) {
    check(in_.size() - pos_ >= n, Errc::corrupt_input, what, " runs past the end of the pickle");
    const auto* p = reinterpret_cast<const unsigned char*>(in_.data() + pos_);
    pos_ += n;
    return p;
  }
  uint64_t le(std::size_t n, const char* what) {
    const unsigned char* p = take(n, what);
    uint64_t v = 0;
    for (std::size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
  }
  std::string_view line(const char* what) {
    const std::size_t e = in_.find('\n', pos_);
    check(e != std::string_view::npos && e - pos_ <= 256, Errc::corrupt_input, what,
          " is not a line of at most 256 bytes");
    const std::string_view s = in_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return s;
  }

  // ---- values ----
  uint32_t make(K kind) {
    check(nodes_.size() < kPickleMaxValues, Errc::corrupt_input, "more than ", kPickleMaxValues,
          " values (kPickleMaxValues)");
    Node n;
    n.kind = kind;
    nodes_.push_back(n);
    ++result_.values;
    return static_cast<uint32_t>(nodes_.size() - 1);
  }
  void push(uint32_t v) {
    // GET pushes without making a value: the stack is bounded on its own.
    check(stack_.size() < kPickleMaxValues, Errc::corrupt_input, "more than ", kPickleMaxValues,
          " values on the stack (kPickleMaxValues)");
    stack_.push_back(v);
  }
  std::size_t frame() const { return marks_.empty() ? 0 : marks_.back(); }
  // The top n values (above the innermost MARK), removed from the stack.
  // (The result lives in popped_, reused: valid until the next pop.)
  const std::vector<uint32_t>& pop(std::size_t n, const char* op) {
    check(stack_.size() - frame() >= n, Errc::corrupt_input, op, " needs ", n, " value", n == 1 ? "" : "s",
          " above the last MARK, the stack holds ", stack_.size() - frame());
    popped_.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return popped_;
  }
  // Everything above the innermost MARK, which is removed.
  const std::vector<uint32_t>& pop_mark(const char* op) {
    check(!marks_.empty(), Errc::corrupt_input, op, " without a MARK");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    popped_.assign(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return popped_;
  }
  // The container a MARK-based op adds to: the top of the enclosing frame.
  Node& target_below_mark(const char* op, K kind) {
    check(!marks_.empty(), Errc::corrupt_input, op, " without a MARK");
    const std::size_t m = marks_.back();
    const std::size_t outer = marks_.size() >= 2 ? marks_[marks_.size() - 2] : 0;
    check(m > outer, Errc::corrupt_input, op, " has no ", kind == K::list ? "list" : "dict", " below its MARK");
    return mutable_container(stack_[m - 1], op, kind);
  }
  Node& mutable_container(uint32_t v, const char* op, K kind) {
    Node& n = nodes_[v];
    check(n.kind == kind, Errc::corrupt_input, op, " applied to something that is not a ",
          kind == K::list ? "list" : "dict");
    check(!(n.flags & kFrozen), Errc::corrupt_input, op,
          " changes a container after it was placed in another (cycles and shared mutation are not read)");
    return n;
  }
  // Account `children` as elements of container `c` (which they are frozen into).
  void adopt(uint32_t c, const std::vector<uint32_t>& children, const char* op) {
    Node& n = nodes_[c];
    check(n.count + children.size() <= kPickleMaxContainer, Errc::corrupt_input, op,
          " makes a container of more than ", kPickleMaxContainer, " elements (kPickleMaxContainer)");
    elements_ += children.size();  // what all containers hold: each a reference in LibTorch
    check(elements_ <= kPickleMaxValues, Errc::corrupt_input, "containers hold more than ", kPickleMaxValues,
          " elements in all (kPickleMaxValues)");
    for (uint32_t ch : children) {
      check(ch != c, Errc::corrupt_input, op, " puts a container into itself");
      Node& x = nodes_[ch];
      // A function is only called; a storage class only names a storage's type.
      check(x.kind != K::global || x.global == G::storage_type, Errc::corrupt_input, op,
            " uses a function as a value");
      x.flags |= kFrozen;
      const uint16_t d = static_cast<uint16_t>(x.depth + 1);
      if (d > n.depth) n.depth = d;
      n.kinds |= bit(x.kind);
      n.tree = std::min<uint64_t>(n.tree + x.tree, kPickleMaxTreeValues + 1);
    }
    n.count += static_cast<uint32_t>(children.size());
    check(n.depth <= kPickleMaxDepth, Errc::corrupt_input, "containers nest deeper than ", kPickleMaxDepth,
          " levels (kPickleMaxDepth)");
    check(n.tree <= kPickleMaxTreeValues, Errc::corrupt_input, "more than ", kPickleMaxTreeValues,
          " values when walked as a tree (kPickleMaxTreeValues): shared values repeat too often");
  }
  void check_keys(const std::vector<uint32_t>& items, const char* op) {
    check(items.size() % 2 == 0, Errc::corrupt_input, op, " has an odd number of keys and values");
    for (std::size_t i = 0; i < items.size(); i += 2) {
      const K k = nodes_[items[i]].kind;
      check(k == K::str || k == K::integer, Errc::corrupt_input, op,
            " uses a key that is not a string or an integer");
    }
  }
  uint32_t tuple_of(const std::vector<uint32_t>& items, const char* op) {
    check(items.size() <= kPickleMaxContainer, Errc::corrupt_input, op, " makes a tuple of more than ",
          kPickleMaxContainer, " elements (kPickleMaxContainer)");
    const uint32_t t = make(K::tuple);
    nodes_[t].a = static_cast<uint32_t>(pool_.size());
    nodes_[t].b = static_cast<uint32_t>(items.size());
    pool_.insert(pool_.end(), items.begin(), items.end());
    adopt(t, items, op);
    return t;
  }
  const Node& child(const Node& tuple, std::size_t i) const { return nodes_[pool_[tuple.a + i]]; }
  uint32_t child_index(const Node& tuple, std::size_t i) const { return pool_[tuple.a + i]; }
  std::string_view text(const Node& s) const { return in_.substr(s.a, s.b); }

  // ---- opcodes ----
  void step(unsigned char op) {
    switch (op) {
      case '(':
        marks_.push_back(stack_.size());
        return;
      case '}': push(make(K::dict)); return;
      case ']': push(make(K::list)); return;
      case ')':
        popped_.clear();
        push(tuple_of(popped_, "EMPTY_TUPLE"));
        return;
      case 't': {
        const auto& items = pop_mark("TUPLE");
        push(tuple_of(items, "TUPLE"));
        return;
      }
      case 0x85: case 0x86: case 0x87: {
        const auto& items = pop(op - 0x84u, "TUPLE1/2/3");
        push(tuple_of(items, "TUPLE1/2/3"));
        return;
      }
      case 'l': {
        const auto& items = pop_mark("LIST");
        const uint32_t l = make(K::list);
        adopt(l, items, "LIST");
        push(l);
        return;
      }
      case 'd': {
        const auto& items = pop_mark("DICT");
        check_keys(items, "DICT");
        const uint32_t d = make(K::dict);
        adopt(d, items, "DICT");
        push(d);
        return;
      }
      case 'a': {
        check(!o_.for_libtorch, Errc::corrupt_input, "APPEND is left in the stream LibTorch reads");
        const auto& item = pop(1, "APPEND");
        check(stack_.size() > frame(), Errc::corrupt_input, "APPEND has no list");
        mutable_container(stack_.back(), "APPEND", K::list);
        adopt(stack_.back(), item, "APPEND");
        return;
      }
      case 'e': {
        target_below_mark("APPENDS", K::list);
        const auto& items = pop_mark("APPENDS");
        adopt(stack_.back(), items, "APPENDS");
        return;
      }
      case 's': {
        check(!o_.for_libtorch, Errc::corrupt_input, "SETITEM is left in the stream LibTorch reads");
        const auto& kv = pop(2, "SETITEM");
        check_keys(kv, "SETITEM");
        check(stack_.size() > frame(), Errc::corrupt_input, "SETITEM has no dict");
        mutable_container(stack_.back(), "SETITEM", K::dict);
        adopt(stack_.back(), kv, "SETITEM");
        return;
      }
      case 'u': {
        target_below_mark("SETITEMS", K::dict);
        const auto& items = pop_mark("SETITEMS");
        check_keys(items, "SETITEMS");
        adopt(stack_.back(), items, "SETITEMS");
        return;
      }
      case 'q': case 'r': {
        const uint64_t idx = le(op == 'q' ? 1 : 4, "BINPUT");
        check(stack_.size() > frame(), Errc::corrupt_input, "BINPUT with nothing above the last MARK");
        const uint64_t limit = o_.memo_limit ? o_.memo_limit : result_.values;
        check(idx < limit && idx < kPickleMaxValues, Errc::corrupt_input, "memo index ", idx,
              " is out of bounds (pickles number memo entries 0, 1, 2, ... as they make values)");
        if (idx >= memo_.size()) memo_.resize(idx + 1, kUnset);
        memo_[idx] = stack_.back();
        return;
      }
      case 'h': case 'j': {
        const uint64_t idx = le(op == 'h' ? 1 : 4, "BINGET");
        check(idx < memo_.size() && memo_[idx] != kUnset, Errc::corrupt_input, "BINGET of memo entry ", idx,
              ", which was never set");
        push(memo_[idx]);
        return;
      }
      case 'J': int_value(static_cast<int32_t>(le(4, "BININT"))); return;
      case 'K': int_value(static_cast<int64_t>(le(1, "BININT1"))); return;
      case 'M': int_value(static_cast<int64_t>(le(2, "BININT2"))); return;
      case 0x8a: {
        const std::size_t n = le(1, "LONG1");
        check(n <= 8, Errc::unsupported, "an integer of ", n, " bytes does not fit in 64 bits");
        check(!o_.for_libtorch || n == 8, Errc::corrupt_input, "LONG1 of ", n,
              " bytes is left in the stream LibTorch reads");
        uint64_t v = n ? le(n, "LONG1") : 0;
        if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
        int_value(static_cast<int64_t>(v));
        return;
      }
      case 'G':
        take(8, "BINFLOAT");
        push(make(K::floating));
        return;
      case 'N': push(make(K::none)); return;
      case 0x88: case 0x89: {
        const uint32_t b = make(K::boolean);
        nodes_[b].i = op == 0x88;
        push(b);
        return;
      }
      case 'X': {
        const uint64_t len = le(4, "BINUNICODE length");
        check(len <= in_.size() - pos_, Errc::corrupt_input, "a string of ", len,
              " bytes runs past the end of the pickle (", in_.size() - pos_, " bytes left)");
        const uint32_t s = make(K::str);
        nodes_[s].a = static_cast<uint32_t>(pos_);
        nodes_[s].b = static_cast<uint32_t>(len);
        check(valid_utf8(text(nodes_[s])), Errc::corrupt_input, "a string is not valid UTF-8");
        pos_ += len;
        push(s);
        return;
      }
      case 'c': global(); return;
      case 'R': reduce(); return;
      case 'b': build(); return;
      case 'Q': persistent_id(); return;
      default:
        fail(Errc::corrupt_input, "opcode 0x", hex(op),
             " is not one torch.save writes for a state dict (only a subset of protocol 2 is read)");
    }
  }

  static std::string hex(unsigned char c) {
    static constexpr char h[] = "0123456789abcdef";
    return {h[c >> 4], h[c & 15]};
  }

  void int_value(int64_t v) {
    const uint32_t n = make(K::integer);
    nodes_[n].i = v;
    push(n);
  }

  void global() {
    const std::string_view module = line("GLOBAL module"), name = line("GLOBAL name");
    const uint32_t g = make(K::global);
    Node& n = nodes_[g];
    if (module == "collections" && name == "OrderedDict") {
      n.global = G::ordered_dict;
    } else if (module == "torch._utils" && name == "_rebuild_tensor_v2") {
      n.global = G::rebuild_tensor;
    } else if (module == "torch.jit._pickle" && name == "restore_type_tag") {
      n.global = G::restore_type_tag;
    } else if (module == "torch.jit._pickle" && name == "build_intlist") {
      n.global = G::build_intlist;
    } else if (module == "torch.jit._pickle" && name == "build_doublelist") {
      n.global = G::build_doublelist;
    } else if (module == "torch.jit._pickle" && name == "build_boollist") {
      n.global = G::build_boollist;
    } else if (module == "torch.jit._pickle" && name == "build_tensorlist") {
      n.global = G::build_tensorlist;
    } else if (module == "torch" && name.ends_with("Storage")) {
      n.global = G::storage_type;
      for (const auto& s : kStorages)
        if (s.name == name) n.i = s.item;
      check(n.i != 0, Errc::unsupported, "storages of type torch.", printable(name, 64),
            " are not read (didmark carries f64, f32, f16, bf16 and the integer and bool types)");
    } else {
      fail(Errc::unsupported, "the file holds an object of class ", printable(module, 64), ".", printable(name, 64),
           "; only tensors, numbers, strings and containers are read (save a state dict)");
    }
    push(g);
  }

  void reduce() {
    const std::array<uint32_t, 2> v{pop(2, "REDUCE")[0], popped_[1]};
    const Node& fn = nodes_[v[0]];
    const Node& args = nodes_[v[1]];
    check(fn.kind == K::global && fn.global != G::storage_type, Errc::corrupt_input,
          "REDUCE calls something that is not a known function");
    check(args.kind == K::tuple, Errc::corrupt_input, "REDUCE arguments are not a tuple");
    nodes_[v[1]].flags |= kFrozen;
    switch (fn.global) {
      case G::ordered_dict: {
        check(args.b == 0, Errc::corrupt_input, "OrderedDict() is called with arguments");
        const uint32_t d = make(K::dict);
        nodes_[d].flags |= kFromOrderedDict;
        push(d);
        return;
      }
      case G::rebuild_tensor: push(tensor(args)); return;
      case G::restore_type_tag: {
        check(args.b == 2 && (child(args, 0).kind == K::list || child(args, 0).kind == K::dict) &&
                  child(args, 1).kind == K::str,
              Errc::corrupt_input, "restore_type_tag takes (list or dict, type name)");
        const std::string_view type = text(child(args, 1));
        int depth = 0, most = 0;
        for (char c : type) {
          depth += c == '[' ? 1 : c == ']' ? -1 : 0;
          most = std::max(most, depth);
        }
        check(type.size() <= 1024 && most <= 16, Errc::corrupt_input, "restore_type_tag names a type of ", type.size(),
              " bytes nested ", most, " deep (at most 1024 bytes and 16 levels are read)");
        push(child_index(args, 0));
        return;
      }
      case G::build_intlist: case G::build_doublelist: case G::build_boollist: case G::build_tensorlist: {
        check(args.b == 1 && child(args, 0).kind == K::list, Errc::corrupt_input, "build_*list takes (list,)");
        const K want = fn.global == G::build_intlist      ? K::integer
                       : fn.global == G::build_doublelist ? K::floating
                       : fn.global == G::build_boollist   ? K::boolean
                                                          : K::tensor;
        const uint16_t kinds = child(args, 0).kinds;
        check((kinds & ~bit(want)) == 0, Errc::corrupt_input, "a typed list holds elements of another type");
        push(child_index(args, 0));
        return;
      }
      default: fail(Errc::corrupt_input, "REDUCE calls something that is not a known function");
    }
  }

  uint32_t tensor(const Node& args) {
    check(args.b == 6 || args.b == 7, Errc::corrupt_input, "_rebuild_tensor_v2 takes 6 or 7 arguments, not ", args.b);
    const Node& st = child(args, 0);
    const Node& offset = child(args, 1);
    const Node& size = child(args, 2);
    const Node& stride = child(args, 3);
    check(st.kind == K::storage, Errc::corrupt_input, "a tensor's first argument is not a storage");
    check(offset.kind == K::integer && offset.i >= 0, Errc::corrupt_input,
          "a tensor's storage offset is not a non-negative integer");
    check(size.kind == K::tuple && stride.kind == K::tuple && size.b == stride.b, Errc::corrupt_input,
          "a tensor's sizes and strides are not two tuples of the same length");
    check(size.b <= kMaxTensorRank, Errc::corrupt_input, "a tensor has ", size.b, " dimensions, over ", kMaxTensorRank,
          " (kMaxTensorRank)");
    check(child(args, 4).kind == K::boolean, Errc::corrupt_input, "a tensor's requires_grad is not a bool");
    for (std::size_t k = 5; k < args.b; ++k) {
      const K kind = child(args, k).kind;
      check(kind == K::dict || kind == K::none, Errc::corrupt_input,
            "a tensor's backward hooks or metadata are not a dict");
    }
    const Storage& s = storages_[static_cast<std::size_t>(st.i)];
    constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
    uint64_t numel = 1, last = static_cast<uint64_t>(offset.i);
    bool empty = false;
    for (std::size_t k = 0; k < size.b; ++k) {
      const Node& d = child(size, k);
      const Node& t = child(stride, k);
      check(d.kind == K::integer && d.i >= 0 && t.kind == K::integer && t.i >= 0, Errc::corrupt_input,
            "a tensor's sizes and strides are not non-negative integers");
      const auto du = static_cast<uint64_t>(d.i), tu = static_cast<uint64_t>(t.i);
      if (du == 0) {
        empty = true;
        continue;
      }
      check(numel <= kMax / du, Errc::corrupt_input, "a tensor's element count overflows");
      numel *= du;
      check(tu == 0 || (du - 1) <= (kMax - last) / tu, Errc::corrupt_input, "a tensor's extent overflows");
      last += (du - 1) * tu;
    }
    if (empty) numel = 0;
    if (numel > 0) {
      check(last < s.numel, Errc::corrupt_input, "a tensor reaches element ", last, " of a storage of ", s.numel,
            " elements (its sizes, strides and offset run past its storage)");
    } else {
      check(static_cast<uint64_t>(offset.i) <= s.numel, Errc::corrupt_input,
            "an empty tensor's offset lies past its storage");
    }
    const uint64_t bytes = numel * static_cast<uint64_t>(s.item);
    check(result_.tensor_bytes <= std::numeric_limits<uint64_t>::max() - bytes, Errc::corrupt_input,
          "tensor sizes overflow");
    result_.tensor_bytes += bytes;
    ++result_.tensors;
    return make(K::tensor);
  }

  void build() {
    check(!o_.for_libtorch, Errc::corrupt_input, "BUILD is left in the stream LibTorch reads");
    const auto& state = pop(1, "BUILD");
    check(stack_.size() > frame(), Errc::corrupt_input, "BUILD has no object");
    Node& obj = mutable_container(stack_.back(), "BUILD", K::dict);
    check(obj.flags & kFromOrderedDict, Errc::unsupported,
          "BUILD sets the state of an object other than an OrderedDict; only state dicts are read");
    const K k = nodes_[state[0]].kind;
    check(k == K::dict || k == K::none, Errc::corrupt_input, "an OrderedDict's state is not a dict");
    // The state (`_metadata`) is dropped by the rewrite for LibTorch; its size still counts.
    adopt(stack_.back(), state, "BUILD");
  }

  void persistent_id() {
    const uint32_t pid = pop(1, "BINPERSID")[0];
    const Node& t = nodes_[pid];
    check(t.kind == K::tuple && t.b == 5, Errc::corrupt_input,
          "a persistent id is not ('storage', type, key, location, size)");
    const Node &tag = child(t, 0), &type = child(t, 1), &key = child(t, 2), &loc = child(t, 3), &numel = child(t, 4);
    check(tag.kind == K::str && text(tag) == "storage", Errc::corrupt_input, "a persistent id is not a storage");
    check(type.kind == K::global && type.global == G::storage_type, Errc::corrupt_input,
          "a storage's type is not a torch storage class");
    check(key.kind == K::str && loc.kind == K::str && numel.kind == K::integer && numel.i >= 0, Errc::corrupt_input,
          "a storage's key, location or size has the wrong type");
    const std::string_view k = text(key), l = text(loc);
    bool plain = !k.empty() && k.size() <= 128 && k != "." && k != "..";
    for (char c : k)
      plain = plain && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                        c == '-' || c == '.');
    check(plain, Errc::corrupt_input, "a storage key is not a plain record name");
    bool device = l == "cpu" || l == "cuda" || l == "mps";
    if (!device && l.starts_with("cuda:") && l.size() > 5 && l.size() <= 8) {
      device = true;
      for (char c : l.substr(5)) device = device && c >= '0' && c <= '9';
    }
    check(device, Errc::unsupported, "a storage is on device '", printable(l, 32),
          "'; cpu, cuda and mps storages are read");
    const auto n = static_cast<uint64_t>(numel.i);
    const auto it = by_key_.find(k);
    uint32_t index;
    if (it == by_key_.end()) {
      check(n <= std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(type.i), Errc::corrupt_input,
            "a storage's size overflows");
      const uint64_t bytes = n * static_cast<uint64_t>(type.i);
      if (o_.record_bytes) {
        const auto rec = o_.record_bytes(k);
        check(rec.has_value(), Errc::corrupt_input, "storage '", printable(k, 64), "' has no record data/",
              printable(k, 64), " in the archive");
        check(*rec == bytes, Errc::corrupt_input, "storage '", printable(k, 64), "' says ", n, " elements of ",
              type.i, " bytes but its record holds ", *rec, " bytes");
      }
      index = static_cast<uint32_t>(storages_.size());
      storages_.push_back({child_index(t, 2), type.i, n});
      by_key_.emplace(k, index);
      ++result_.storages;
      result_.storage_bytes += bytes;
    } else {
      index = it->second;
      const Storage& s = storages_[index];
      check(s.item == type.i && s.numel == n, Errc::corrupt_input, "storage '", printable(k, 64),
            "' is named twice with different types or sizes");
    }
    const uint32_t s = make(K::storage);
    nodes_[s].i = index;
    push(s);
  }

  void stop() {
    check(marks_.empty(), Errc::corrupt_input, "STOP with ", marks_.size(), " MARK(s) still open");
    check(stack_.size() == 1, Errc::corrupt_input, "STOP leaves ", stack_.size(), " values on the stack, not 1");
    check(pos_ == in_.size(), Errc::corrupt_input, in_.size() - pos_, " bytes follow STOP");
    const Node& root = nodes_[stack_[0]];
    check(root.kind != K::storage && root.kind != K::global, Errc::corrupt_input,
          "the pickle is a bare storage or function");
    result_.depth = root.depth;
    const uint64_t budget = kTorchMaxViewFactor * result_.storage_bytes + (uint64_t{1} << 20);
    check(result_.tensor_bytes <= budget, Errc::corrupt_input, "its tensors view ", result_.tensor_bytes,
          " bytes of storages that hold ", result_.storage_bytes,
          " (stride-0 or overlapping views; at most kTorchMaxViewFactor = ", kTorchMaxViewFactor, " times are read)");
  }

  static constexpr uint32_t kUnset = std::numeric_limits<uint32_t>::max();

  std::string_view in_;
  const PickleCheckOptions& o_;
  std::size_t pos_ = 0, at_ = 0;
  std::vector<Node> nodes_;
  std::vector<uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::vector<uint32_t> memo_;
  std::vector<uint32_t> pool_;  // tuple children
  std::vector<uint32_t> popped_;
  std::size_t elements_ = 0;
  std::vector<Storage> storages_;
  std::unordered_map<std::string_view, uint32_t> by_key_;
  PickleCheck result_;
};

}  // namespace

PickleCheck validate_torch_pickle(std::string_view pickle, const PickleCheckOptions& options) {
  return Validator(pickle, options).run();
}

}  // namespace didmark::detail
