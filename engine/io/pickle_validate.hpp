#pragma once
// A strict reader of our own for the pickles inside torch.save files, run before anything
// reaches LibTorch. LibTorch 1.13's unpickler trusts its input: an opcode on an empty stack,
// a MARK that is not there, a memo index of 2^32, a string longer than the file, a tensor
// larger than its storage or 100k nested tuples crash it or read out of bounds. This
// simulates the pickle machine on value kinds (no objects are made) and accepts only what
// torch.save and LibTorch's own writer produce for state dicts:
//  * protocol 2; the opcodes of that subset (no POP, DUP, NEWOBJ, INST, OBJ, PERSID, EXT, no
//    protocol 0/1 text forms, nothing of protocols 3-5);
//  * stack discipline: every opcode finds the values it pops above the innermost MARK;
//    MARKs balance; STOP leaves exactly one value and ends the pickle;
//  * memo: a PUT index below the number of values made so far (Python numbers memo entries
//    0, 1, 2, ... as it makes objects), so LibTorch's memo table never outgrows the pickle;
//    GET of a slot that was set;
//  * lengths: every string and argument lies within the bytes present;
//  * limits: kPickleMaxValues values, kPickleMaxContainer elements per container,
//    kPickleMaxDepth nesting, kPickleMaxTreeValues values when walked as a tree;
//  * a container is never changed after it was placed in another (so no cycles);
//  * globals: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.<T>Storage for
//    the dtypes didmark carries, and torch.jit._pickle's restore_type_tag / build_*list
//    (written by LibTorch); anything else is an object didmark does not read (unsupported);
//  * REDUCE only on those callables with the arguments they take; BUILD only to set the
//    state of an OrderedDict (its `_metadata`);
//  * persistent ids ('storage', torch.<T>Storage, key, location, numel) naming a record
//    whose size is exactly numel x item size (`record_bytes`), the same way every time;
//  * tensors: offset, sizes and strides non-negative, at most kMaxTensorRank dimensions,
//    every element within the storage; all tensors together at most kTorchMaxViewFactor
//    times the storage bytes (plus 1 MiB).
// Time and memory are linear in the pickle.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace didmark::detail {

struct PickleCheckOptions {
  /// Names the file and record in messages ("'x.pt': data.pkl").
  std::string where = "data.pkl";
  /// Size of the storage record `key` (the zip entry data/<key>), nullopt when missing.
  /// Without it, storages are not checked against records (the fuzzer's pickle-only mode).
  std::function<std::optional<uint64_t>(std::string_view key)> record_bytes;
  /// The stream LibTorch itself will read (after fix_torch_pickle): SETITEM, APPEND, BUILD
  /// and LONG1 of other than 8 bytes, which LibTorch 1.13 lacks, are refused too.
  bool for_libtorch = false;
  /// When non-zero, memo indices must be below this instead of below the values made so
  /// far: for the rewritten stream, which keeps the original's indices but makes fewer
  /// values (pass the original's PickleCheck::values).
  std::size_t memo_limit = 0;
};

struct PickleCheck {
  std::size_t opcodes = 0;
  std::size_t values = 0;
  std::size_t tensors = 0;
  std::size_t storages = 0;       ///< distinct storage keys
  uint64_t storage_bytes = 0;     ///< sum over distinct storages
  uint64_t tensor_bytes = 0;      ///< sum over tensors of numel x item size
  std::size_t depth = 0;          ///< nesting of the result
};

/// Validate `pickle`; throws didmark::Error (Errc::corrupt_input for malformed or hostile
/// input, Errc::unsupported for valid pickles of objects didmark does not read) naming
/// `options.where`, the byte offset and the problem. Never echoes raw bytes.
PickleCheck validate_torch_pickle(std::string_view pickle, const PickleCheckOptions& options);

}  // namespace didmark::detail
