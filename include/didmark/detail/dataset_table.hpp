#pragma once
// The table mark's per-row formula, shared by the CPU loop and kernels/dataset_table.cu.
//
// Row identity: id = identity_hash(text of the key columns), unkeyed 64-bit. Selection is
// keyed: r = Philox4x32-10(counter = (id lo, id hi, stream.x, stream.y), key) with key and
// stream from the 256-bit watermark key (derive_carrier, all 256 bits take part). Then
//   selected  <=> (r.x * gamma) >> 32 == 0            (probability ~ 1/gamma)
//   payload   =  (r.y * L) >> 32
//   low bit   =  (r.z * bits) >> 32
//   mask      =  r.w >> 31                           (the cell bit is payload XOR mask)
// and for selected rows a second call (stream.y with its top bit flipped) gives 64 bits for
// the column: the candidate column with the largest fmix64(r2 ^ column_key) wins
// (rendezvous hashing; ties to the smaller key), so the choice depends on column names, not
// positions, and dropping a column moves only the rows that had chosen it.
#include <cstdint>

#include "didmark/detail/config.hpp"
#include "didmark/detail/hash.hpp"
#include "didmark/detail/philox.hpp"

namespace didmark::dataset {

struct TableSpec {
  detail::u32x2 key;
  detail::u32x2 stream;
  uint32_t gamma;     // >= 1
  uint32_t bits;      // 1..16
  uint32_t num_bits;  // payload length 1..4096
  uint32_t num_columns;  // 1..256
};

// Packed per-row slot: bit 31 selected; bits 0-11 payload index; 12-15 low bit; 16 mask;
// 17-24 column (index into the candidate list).
inline constexpr uint32_t kSlotSelected = 0x80000000u;

DIDMARK_HD DIDMARK_FORCEINLINE bool slot_selected(uint32_t s) { return (s & kSlotSelected) != 0; }
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t slot_payload(uint32_t s) { return s & 0xFFFu; }
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t slot_low_bit(uint32_t s) { return (s >> 12) & 0xFu; }
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t slot_mask(uint32_t s) { return (s >> 16) & 1u; }
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t slot_column(uint32_t s) { return (s >> 17) & 0xFFu; }

using detail::fmix64;

/// FNV-1a over bytes, continued from h (start with kIdentitySeed).
inline constexpr uint64_t kIdentitySeed = detail::kFnv1aSeed;
DIDMARK_HD DIDMARK_FORCEINLINE uint64_t identity_update(uint64_t h, const char* p, uint64_t n) {
  return detail::fnv1a_update(h, p, n);
}
/// Separator between key columns (ASCII unit separator), so ("ab","c") != ("a","bc").
DIDMARK_HD DIDMARK_FORCEINLINE uint64_t identity_separator(uint64_t h) { return (h ^ 0x1Fu) * detail::kFnv1aPrime; }
DIDMARK_HD DIDMARK_FORCEINLINE uint64_t identity_finish(uint64_t h) { return fmix64(h); }

DIDMARK_HD DIDMARK_FORCEINLINE detail::u32x4 table_random(const TableSpec& s, uint64_t id, uint32_t second) {
  const detail::u32x4 ctr{static_cast<uint32_t>(id), static_cast<uint32_t>(id >> 32), s.stream.x,
                          s.stream.y ^ (second << 31)};
  return detail::philox4x32_10(ctr, s.key);
}

DIDMARK_HD DIDMARK_FORCEINLINE uint32_t mul_hi32(uint32_t a, uint32_t b) {
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
}

/// The slot of row `id`; col_keys holds s.num_columns keys (one per candidate column).
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t table_slot(const TableSpec& s, const uint64_t* col_keys, uint64_t id) {
  const detail::u32x4 r = table_random(s, id, 0u);
  if (mul_hi32(r.x, s.gamma) != 0u) return 0u;
  uint32_t slot = kSlotSelected | mul_hi32(r.y, s.num_bits) | (mul_hi32(r.z, s.bits) << 12) | ((r.w >> 31) << 16);
  if (s.num_columns > 1) {
    const detail::u32x4 r2 = table_random(s, id, 1u);
    const uint64_t base = (static_cast<uint64_t>(r2.x) << 32) | r2.y;
    uint32_t best = 0;
    uint64_t best_w = fmix64(base ^ col_keys[0]);
    for (uint32_t c = 1; c < s.num_columns; ++c) {
      const uint64_t w = fmix64(base ^ col_keys[c]);
      if (w > best_w || (w == best_w && col_keys[c] < col_keys[best])) {
        best = c;
        best_w = w;
      }
    }
    slot |= best << 17;
  }
  return slot;
}

}  // namespace didmark::dataset
