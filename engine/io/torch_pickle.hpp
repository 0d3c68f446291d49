#pragma once
// Pickle rewriting that lets LibTorch 1.13 read the state dicts Python writes. Pure bytes, no
// LibTorch: tested and fuzzed on its own.
#include <cstddef>
#include <string>
#include <string_view>

namespace didmark::detail {

struct PickleFixup {
  std::string bytes;        ///< the rewritten pickle (the input unchanged when !complete)
  int ordered_dicts = 0;    ///< collections.OrderedDict() calls turned into empty dicts
  int builds_dropped = 0;   ///< BUILD states dropped (an OrderedDict's `_metadata`)
  int setitems = 0;         ///< SETITEM / APPEND turned into their MARK-based forms
  int longs = 0;            ///< LONG1 integers widened to the 8 bytes LibTorch reads
  bool complete = true;     ///< false when something was not understood (output = input)
};

/// LibTorch 1.13's unpickler reads a subset of pickle protocol 2: it turns
/// `collections.OrderedDict()` into None, cannot apply BUILD to a dict, and lacks SETITEM,
/// APPEND and LONG1 of other than 8 bytes, so `torch.save(model.state_dict())` from Python
/// does not load. This rewrites the opcode stream, following the stack (positions only):
///  * OrderedDict() -> EMPTY_DICT (the class and its memo slots leave the stream);
///  * BUILD on such a dict -> its state's opcodes removed (drops the state dict's
///    `_metadata` versions);
///  * SETITEM -> MARK .. SETITEMS, APPEND -> MARK .. APPENDS;
///  * LONG1 of 1-7 bytes -> LONG1 of 8 bytes, sign-extended.
/// Anything not understood (other protocols' opcodes, an OrderedDict used otherwise)
/// stops the rewrite and returns the input unchanged; LibTorch then reports the problem.
PickleFixup fix_torch_pickle(std::string_view pickle);

}  // namespace didmark::detail
