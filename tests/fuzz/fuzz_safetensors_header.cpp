// libFuzzer target: the safetensors header parser must refuse bad input with didmark::Error
// and nothing else, and whatever it accepts must satisfy the layout invariants.
#include <cstddef>
#include <cstdint>
#include <span>

#include "didmark/error.hpp"
#include "didmark/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto h = didmark::parse_safetensors_header(std::span(data, size), "fuzz");
    uint64_t expect = 0;
    for (const auto& t : h.tensors) {
      uint64_t n = didmark::dtype_size(t.dtype);
      for (int64_t d : t.shape) {
        if (d < 0) __builtin_trap();
        n *= static_cast<uint64_t>(d);  // cannot overflow: the parser checked it
      }
      if (t.begin != expect || t.end < t.begin || t.nbytes() != n) __builtin_trap();
      expect = t.end;
    }
    if (h.data_offset() + h.data_bytes() != size || h.header_length > didmark::kSafetensorsMaxHeader)
      __builtin_trap();
  } catch (const didmark::Error&) {
  }
  return 0;
}
