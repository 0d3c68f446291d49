// libFuzzer target: the pickle rewrite for LibTorch must never crash, and either rewrite
// completely or hand the input back unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "io/torch_pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto f = didmark::detail::fix_torch_pickle(in);
  if (!f.complete && f.bytes != in) __builtin_trap();
  if (f.complete && f.ordered_dicts == 0 && f.builds_dropped == 0 && f.setitems == 0 && f.longs == 0 &&
      f.bytes != in)
    __builtin_trap();
  return 0;
}
