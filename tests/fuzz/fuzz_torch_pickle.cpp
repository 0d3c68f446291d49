// libFuzzer target: see fuzz_targets.hpp (torch_pickle); a broken invariant traps, a refusal
// with didmark::Error is fine.
//
// Structure-aware: besides libFuzzer's byte mutations, a custom mutator edits the stream as
// opcodes (insert, delete, duplicate, swap or replace whole opcodes with well-formed
// arguments), so the fuzzer spends its time on orders of opcodes (stack and MARK discipline,
// memo use, REDUCE/BUILD on odd things) rather than on breaking argument lengths.
#include <cstring>
#include <random>
#include <vector>

#include "fuzz/fuzz_targets.hpp"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

// Argument layout of the opcodes of protocols 0-3: bytes after the opcode, or -1 for a
// newline-terminated argument (GLOBAL: two lines), -2 / -3 for a 1- / 4-byte length prefix.
int arg_kind(uint8_t op) {
  switch (op) {
    case 'K': case 'h': case 'q': case 0x80: case 0x82: return 1;
    case 'M': case 0x83: return 2;
    case 'J': case 'j': case 'r': case 0x84: return 4;
    case 'G': return 8;
    case 'c': case 'i': return -4;
    case 'F': case 'I': case 'L': case 'P': case 'S': case 'V': case 'g': case 'p': return -1;
    case 'U': case 'C': case 0x8a: return -2;
    case 'T': case 'X': case 'B': case 0x8b: return -3;
    default: return 0;
  }
}

// Length of the opcode at s[p], or the rest of the input when it cannot be parsed.
size_t token_length(const uint8_t* s, size_t n, size_t p) {
  const int k = arg_kind(s[p]);
  const size_t rest = n - p - 1;
  auto within = [&](size_t len) { return 1 + std::min(len, rest); };
  if (k >= 0) return within(static_cast<size_t>(k));
  if (k == -1 || k == -4) {
    size_t e = p + 1;
    for (int lines = k == -1 ? 1 : 2; lines > 0 && e < n; ++e)
      if (s[e] == '\n') --lines;
    return e - p;
  }
  const size_t w = k == -2 ? 1 : 4;
  if (rest < w) return 1 + rest;
  uint64_t len = 0;
  for (size_t i = w; i-- > 0;) len = (len << 8) | s[p + 1 + i];
  return within(w + static_cast<size_t>(std::min<uint64_t>(len, rest)));
}

// A well-formed opcode with a small argument.
std::string random_op(std::mt19937& rng) {
  static const char* const kGlobals[] = {
      "ccollections\nOrderedDict\n", "ctorch._utils\n_rebuild_tensor_v2\n", "ctorch\nFloatStorage\n",
      "ctorch\nLongStorage\n",       "ctorch.jit._pickle\nrestore_type_tag\n", "ctorch.jit._pickle\nbuild_intlist\n"};
  static const char* const kStrings[] = {"storage", "cpu", "0", "1", "a", "_metadata", "Dict[str, Tensor]"};
  static const uint8_t kPlain[] = {'(', '.', 'N', 'R', 'a', 'b', 'd', '}', 'e', 'l', ']', 's', 't', ')', 'u',
                                   'Q', 0x85, 0x86, 0x87, 0x88, 0x89, '0', '2', '1', 'o'};
  std::string op;
  switch (rng() % 8) {
    case 0: return kGlobals[rng() % std::size(kGlobals)];
    case 1: {
      const std::string s = kStrings[rng() % std::size(kStrings)];
      op = "X";
      for (int i = 0; i < 4; ++i) op.push_back(static_cast<char>(i == 0 ? s.size() : 0));
      return op + s;
    }
    case 2: return std::string{static_cast<char>(rng() % 2 ? 'q' : 'h'), static_cast<char>(rng() % 4)};
    case 3: return std::string{'K', static_cast<char>(rng() % 8)};
    case 4: {
      op = "\x8a";
      const int n = static_cast<int>(rng() % 9);
      op.push_back(static_cast<char>(n));
      for (int i = 0; i < n; ++i) op.push_back(static_cast<char>(rng()));
      return op;
    }
    default: return std::string(1, static_cast<char>(kPlain[rng() % std::size(kPlain)]));
  }
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::mt19937 rng(seed);
  if (size == 0 || rng() % 4 == 0) return LLVMFuzzerMutate(data, size, max_size);
  thread_local std::vector<std::pair<size_t, size_t>> ops;  // (offset, length) of each opcode
  ops.clear();
  for (size_t p = 0; p < size;) {
    const size_t len = token_length(data, size, p);
    ops.emplace_back(p, len);
    p += len;
  }
  const size_t n = ops.size(), at = rng() % (n + 1);
  auto bytes = [&](size_t from, size_t to) {  // the opcodes [from, to) as they are
    return from >= to ? std::string()
                      : std::string(reinterpret_cast<const char*>(data + ops[from].first),
                                    ops[to - 1].first + ops[to - 1].second - ops[from].first);
  };
  std::string out;
  switch (rng() % 7) {
    case 0: case 1: out = bytes(0, at) + random_op(rng) + bytes(at, n); break;          // insert
    case 2: out = bytes(0, at) + std::string(1 + rng() % 6, '(') + bytes(at, n); break;  // MARKs
    case 3: out = at < n ? bytes(0, at) + bytes(at + 1, n) : bytes(0, n); break;        // delete
    case 4: {                                                                           // duplicate a run
      const size_t len = at < n ? 1 + rng() % std::min<size_t>(8, n - at) : 0;
      out = bytes(0, at + len) + bytes(at, n);
      break;
    }
    case 5: out = at + 1 < n ? bytes(0, at) + bytes(at + 1, at + 2) + bytes(at, at + 1) + bytes(at + 2, n)
                             : bytes(0, n);  // swap neighbours
      break;
    default: out = at < n ? bytes(0, at) + random_op(rng) + bytes(at + 1, n) : bytes(0, n) + random_op(rng); break;
  }
  if (out.empty() || out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!didmark::fuzz::torch_pickle(std::span<const uint8_t>(data, size))) __builtin_trap();
  return 0;
}
