#include "io/torch_pickle.hpp"

#include <cstdint>
#include <optional>
#include <unordered_set>
#include <vector>

namespace didmark::detail {
namespace {

enum class Arg { none, fixed, newline, newline2, len1, len4 };

// Argument layout of the opcodes of protocols 0-3 (pickletools); nullopt for the others.
std::optional<std::pair<Arg, int>> op_arg(unsigned char op) {
  switch (op) {
    case '(': case '.': case '0': case '1': case '2': case 'N': case 'Q': case 'R': case 'a': case 'b':
    case 'd': case '}': case 'e': case 'l': case ']': case 'o': case 's': case 't': case ')': case 'u':
    case 0x81: case 0x85: case 0x86: case 0x87: case 0x88: case 0x89:
      return std::pair{Arg::none, 0};
    case 'K': case 'h': case 'q': case 0x80: case 0x82: return std::pair{Arg::fixed, 1};
    case 'M': case 0x83: return std::pair{Arg::fixed, 2};
    case 'J': case 'j': case 'r': case 0x84: return std::pair{Arg::fixed, 4};
    case 'G': return std::pair{Arg::fixed, 8};
    case 'F': case 'I': case 'L': case 'P': case 'S': case 'V': case 'g': case 'p': return std::pair{Arg::newline, 0};
    case 'c': case 'i': return std::pair{Arg::newline2, 0};
    case 'U': case 'C': case 0x8a: return std::pair{Arg::len1, 0};
    case 'T': case 'X': case 'B': case 0x8b: return std::pair{Arg::len4, 0};
    default: return std::nullopt;
  }
}

uint64_t le(std::string_view s, std::size_t at, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
  return v;
}

// Length of the opcode at `p` including its argument; 0 when unknown or truncated.
std::size_t op_length(std::string_view s, std::size_t p) {
  const auto info = op_arg(static_cast<unsigned char>(s[p]));
  if (!info) return 0;
  const std::size_t rest = s.size() - p - 1;
  auto counted = [&](int n) -> std::size_t {
    const auto un = static_cast<std::size_t>(n);
    if (rest < un) return 0;
    const uint64_t len = le(s, p + 1, n);
    if (len > rest - un) return 0;
    return 1 + un + static_cast<std::size_t>(len);
  };
  switch (info->first) {
    case Arg::none: return 1;
    case Arg::fixed: return rest >= static_cast<std::size_t>(info->second) ? 1 + static_cast<std::size_t>(info->second) : 0;
    case Arg::newline: {
      const std::size_t e = s.find('\n', p + 1);
      return e == std::string_view::npos ? 0 : e - p + 1;
    }
    case Arg::newline2: {
      const std::size_t e1 = s.find('\n', p + 1);
      if (e1 == std::string_view::npos) return 0;
      const std::size_t e2 = s.find('\n', e1 + 1);
      return e2 == std::string_view::npos ? 0 : e2 - p + 1;
    }
    case Arg::len1: return counted(1);
    case Arg::len4: return counted(4);
  }
  return 0;
}

// The memo slot of a PUT/GET opcode (binary or text form; they share one memo).
uint64_t memo_slot(std::string_view tok) {
  const auto op = static_cast<unsigned char>(tok[0]);
  if (op == 'q' || op == 'h') return le(tok, 1, 1);
  if (op == 'r' || op == 'j') return le(tok, 1, 4);
  uint64_t v = 0;
  for (char c : tok.substr(1)) {
    if (c < '0' || c > '9') break;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

struct Elem {
  std::size_t start = 0;      // output offset where this value's opcodes begin
  bool od_class = false;      // collections.OrderedDict itself (emits nothing)
  bool empty_tuple = false;   // pushed by EMPTY_TUPLE
  bool from_od = false;       // a dict made from OrderedDict()
};

struct Mark {
  std::size_t depth, start;
};

// The output is kept without the MARKs that SETITEM/APPEND need in front of their key or
// item; marks_before_[p] counts those to insert before byte p, and finish() merges them in.
// Positions (Elem::start, Mark::start) therefore never move, and every opcode costs O(1):
// the rewrite is linear in the pickle (inserting into the string shifted the rest each time,
// quadratic: 80k SETITEMs took 6.9 s).
class Rewriter {
 public:
  explicit Rewriter(std::string_view in) : in_(in) {
    out_.bytes.reserve(in.size() + 64);
    marks_before_.reserve(in.size() + 64);
    marks_before_.push_back(0);
  }

  PickleFixup run() {
    std::size_t p = 0;
    while (p < in_.size()) {
      const std::size_t len = op_length(in_, p);
      if (len == 0 || !step(in_.substr(p, len))) return unchanged();
      p += len;
      if (in_[p - len] == '.') {
        finish();
        out_.bytes.append(in_.substr(p));
        return std::move(out_);
      }
    }
    return unchanged();  // no STOP
  }

 private:
  PickleFixup unchanged() { return PickleFixup{std::string(in_), 0, 0, 0, 0, false}; }
  std::string& o() { return out_.bytes; }
  void emit(std::string_view bytes) {
    o().append(bytes);
    marks_before_.resize(o().size() + 1, 0);
  }
  void emit(char c) { emit(std::string_view(&c, 1)); }
  // Drop the output from `pos` on, with any MARKs due before it (they belonged to what goes).
  void truncate(std::size_t pos) {
    o().resize(pos);
    marks_before_.resize(pos + 1);
    marks_before_[pos] = 0;
  }
  bool insert_mark_at(std::size_t pos) {
    if (pos > o().size()) return false;  // cannot happen with the frame checks; never write out of range
    ++marks_before_[pos];
    return true;
  }
  void finish() {
    std::size_t extra = 0;
    for (uint32_t m : marks_before_) extra += m;
    if (extra == 0) return;
    std::string merged;
    merged.reserve(o().size() + extra);
    for (std::size_t i = 0; i <= o().size(); ++i) {
      merged.append(marks_before_[i], '(');
      if (i < o().size()) merged.push_back(o()[i]);
    }
    o() = std::move(merged);
  }
  // At least n values above the innermost MARK (an opcode never reaches below it).
  bool avail(std::size_t n) const {
    const std::size_t base = marks_.empty() ? 0 : marks_.back().depth;
    return stack_.size() >= base && stack_.size() - base >= n;
  }

  bool push(Elem e) {
    stack_.push_back(e);
    return true;
  }
  // Pop n plain values (an OrderedDict class anywhere else than under REDUCE is not handled).
  std::optional<std::vector<Elem>> pop(std::size_t n) {
    if (!avail(n)) return std::nullopt;
    std::vector<Elem> e(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    for (const auto& x : e)
      if (x.od_class) return std::nullopt;
    return e;
  }
  // Pop to the last mark; returns the mark.
  std::optional<Mark> pop_mark() {
    if (marks_.empty() || stack_.size() < marks_.back().depth) return std::nullopt;
    const Mark m = marks_.back();
    marks_.pop_back();
    for (std::size_t i = m.depth; i < stack_.size(); ++i)
      if (stack_[i].od_class) return std::nullopt;
    stack_.resize(m.depth);
    return m;
  }

  bool step(std::string_view tok) {
    const auto op = static_cast<unsigned char>(tok[0]);
    const std::size_t here = o().size();
    switch (op) {
      case 0x80:
        emit(tok);
        return true;
      case 'c':
        if (tok == std::string_view("ccollections\nOrderedDict\n")) return push(Elem{here, true});
        emit(tok);
        return push(Elem{here});
      case 'q': case 'r': case 'p': {
        if (!avail(1)) return false;
        const uint64_t slot = memo_slot(tok);
        if (stack_.back().od_class) {
          od_slots_.insert(slot);
          return true;
        }
        od_slots_.erase(slot);
        emit(tok);
        return true;
      }
      case 'h': case 'j': case 'g':
        if (od_slots_.count(memo_slot(tok))) return push(Elem{here, true});
        emit(tok);
        return push(Elem{here});
      case ')':
        emit(tok);
        return push(Elem{here, false, true});
      case 0x8a: {  // LONG1: widen to 8 bytes
        const auto n = static_cast<unsigned char>(tok[1]);
        if (n == 8 || n > 8) {
          emit(tok);
        } else {
          uint64_t v = n ? le(tok, 2, n) : 0;
          if (n && (static_cast<unsigned char>(tok[1 + n]) & 0x80)) v |= ~uint64_t{0} << (8 * n);
          emit(static_cast<char>(0x8a));
          emit('\x08');
          for (int i = 0; i < 8; ++i) emit(static_cast<char>((v >> (8 * i)) & 0xFF));
          ++out_.longs;
        }
        return push(Elem{here});
      }
      case 'R': {
        if (!avail(2)) return false;
        const Elem args = stack_.back(), fn = stack_[stack_.size() - 2];
        if (fn.od_class) {
          if (!args.empty_tuple) return false;
          stack_.resize(stack_.size() - 2);
          truncate(args.start);
          emit('}');
          ++out_.ordered_dicts;
          return push(Elem{args.start, false, false, true});
        }
        if (!pop(2)) return false;
        emit(tok);
        return push(Elem{fn.start});
      }
      case 'b': {
        if (!avail(2)) return false;
        const Elem state = stack_.back(), obj = stack_[stack_.size() - 2];
        if (!pop(1)) return false;
        if (obj.from_od) {
          truncate(state.start);
          ++out_.builds_dropped;
        } else {
          emit(tok);
        }
        return true;
      }
      case 's': {
        if (!avail(3)) return false;
        const Elem key = stack_[stack_.size() - 2];
        if (!pop(2)) return false;
        if (!insert_mark_at(key.start)) return false;
        emit('u');
        ++out_.setitems;
        return true;
      }
      case 'a': {
        if (!avail(2)) return false;
        const Elem item = stack_.back();
        if (!pop(1)) return false;
        if (!insert_mark_at(item.start)) return false;
        emit('e');
        ++out_.setitems;
        return true;
      }
      case '(':
        marks_.push_back({stack_.size(), here});
        emit(tok);
        return true;
      case 'e': case 'u': case '1':
        if (!pop_mark()) return false;
        emit(tok);
        return true;
      case 't': case 'l': case 'd': case 'i': case 'o': {
        const auto m = pop_mark();
        if (!m) return false;
        emit(tok);
        return push(Elem{m->start});
      }
      case 0x85: case 0x86: case 0x87: case 'Q': case 0x81: {
        const std::size_t n = op == 0x85 || op == 'Q' ? 1 : op == 0x86 || op == 0x81 ? 2 : 3;
        const auto e = pop(n);
        if (!e) return false;
        emit(tok);
        return push(Elem{e->front().start});
      }
      case '0':
        if (!pop(1)) return false;
        emit(tok);
        return true;
      case '.':
        // An OrderedDict class that was never called left no bytes behind: not a rewrite.
        for (const auto& e : stack_)
          if (e.od_class) return false;
        emit(tok);
        return true;
      case '2':
        return false;  // DUP: not written by torch.save
      default:
        // Everything else pushes one value.
        emit(tok);
        return push(Elem{here});
    }
  }

  std::string_view in_;
  PickleFixup out_;
  std::vector<Elem> stack_;
  std::vector<Mark> marks_;
  std::unordered_set<uint64_t> od_slots_;
  std::vector<uint32_t> marks_before_;
};

}  // namespace

PickleFixup fix_torch_pickle(std::string_view in) { return Rewriter(in).run(); }

}  // namespace didmark::detail
