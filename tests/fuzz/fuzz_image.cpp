// libFuzzer target: see fuzz_targets.hpp (image); a broken invariant traps, a refusal with
// didmark::Error is fine.
#include "fuzz/fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (!didmark::fuzz::image(std::span<const uint8_t>(data, size))) __builtin_trap();
  return 0;
}
