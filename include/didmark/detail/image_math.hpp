#pragma once
/// \file image_math.hpp
/// The image mark's per-pixel and per-cell formulas, shared by the CPU loops
/// (engine/backend/cpu/image_cpu.cpp) and the CUDA kernels (kernels/image.cu).
///
/// The mark is a tile-periodic pattern in the luminance:
///  * the image plane is cut into 128 x 128 tiles starting at the top-left pixel; a tile is
///    32 x 32 cells of 4 x 4 pixels; cell i = cy * 32 + cx of pixel (x, y) has
///    cx = (x mod 128) / 4, cy = (y mod 128) / 4;
///  * cells with (cx + cy) even are *sync* cells, the others *payload* cells (a checkerboard);
///  * a cell's sign comes from carrier v1 (detail/carrier.hpp) of the owner's image carrier
///    (derive_carrier(key, "didmark/image/v1", L)): Philox block i / 128, bit i mod 128, in
///    the sign domain for payload cells and the image-sync domain for sync cells;
///  * a payload cell carries payload bit b(i) = (i + bit_offset) mod L: its weight is
///    sign * s_b (s_b = +1 for bit 0, -1 for bit 1); a sync cell's weight is its sign;
///  * inside a cell the weight is shaped by a smooth bump, bump(u) * bump(v) with
///    bump(t) = sin(pi (t + 0.5) / 4), so the pattern's energy sits in the middle of the
///    spectrum (it survives JPEG quantization and a 2x resampling).
/// A pixel moves by amplitude * mask * weight * bump(u) * bump(v), in every colour channel
/// (so chroma is unchanged), rounded to nearest and clamped to 0..255.
#include <cstdint>

#include "didmark/detail/carrier.hpp"
#include "didmark/detail/config.hpp"
#include "didmark/detail/exact_math.hpp"

namespace didmark::detail {

inline constexpr int kImageTile = 128;   ///< tile side, pixels
inline constexpr int kImageCell = 4;     ///< cell side, pixels
inline constexpr int kImageCellsSide = kImageTile / kImageCell;             ///< 32
inline constexpr int kImageCells = kImageCellsSide * kImageCellsSide;       ///< 1024 cells per tile
inline constexpr int kImageTileArea = kImageTile * kImageTile;              ///< 16384
/// Philox counter domain of the sync cells' signs (next to kDomainSign, kDomainStdmDither).
inline constexpr uint32_t kDomainImageSync = 2;

/// Whether cell i is a sync cell.
DIDMARK_HD DIDMARK_FORCEINLINE bool image_sync_cell(int i) { return (((i >> 5) + (i & 31)) & 1) == 0; }

/// The weight of cell i (+-1): sync cells their sign, payload cells sign * s_b(i).
/// bit_signs[b] is +1 for payload bit 0 and -1 for bit 1.
DIDMARK_HD DIDMARK_FORCEINLINE float image_cell_weight(const CarrierSpec& s, const float* bit_signs, int i) {
  const uint64_t block = static_cast<uint64_t>(i) / kCarrierBlock;
  const auto e = static_cast<uint32_t>(i) % kCarrierBlock;
  if (image_sync_cell(i)) return carrier_sign_bit(carrier_random(s, block, kDomainImageSync), e) ? -1.0f : 1.0f;
  const float c = carrier_sign_bit(carrier_signs(s, block), e) ? -1.0f : 1.0f;
  return c * bit_signs[(static_cast<uint32_t>(i) + s.bit_offset) % s.num_bits];
}

/// The payload bit index of payload cell i.
DIDMARK_HD DIDMARK_FORCEINLINE uint32_t image_cell_bit(const CarrierSpec& s, int i) {
  return (static_cast<uint32_t>(i) + s.bit_offset) % s.num_bits;
}

/// bump(t) for t = 0..3: sin(pi (t + 0.5) / 4), as floats.
DIDMARK_HD DIDMARK_FORCEINLINE float image_bump(int t) {
  return (t == 0 || t == 3) ? 0.38268343236508978f : 0.92387953251128674f;
}

/// The cell of pixel (x, y).
DIDMARK_HD DIDMARK_FORCEINLINE int image_cell_of(int64_t x, int64_t y) {
  return static_cast<int>(((y & (kImageTile - 1)) >> 2) * kImageCellsSide + ((x & (kImageTile - 1)) >> 2));
}

/// The luminance change at pixel (x, y): amplitude * mask * weight(cell) * bump(u) * bump(v),
/// multiplied in this order without fused operations (bit-identical on every device).
DIDMARK_HD DIDMARK_FORCEINLINE float image_delta(const float* cell_weights, float amplitude, float mask, int64_t x,
                                                 int64_t y) {
  const float w = cell_weights[image_cell_of(x, y)];
  const float b = exact_mul(image_bump(static_cast<int>(x & 3)), image_bump(static_cast<int>(y & 3)));
  return exact_mul(exact_mul(exact_mul(amplitude, mask), w), b);
}

/// An 8-bit sample moved by delta: round half up, clamped to 0..255.
DIDMARK_HD DIDMARK_FORCEINLINE uint8_t image_apply(uint8_t v, float delta) {
  float r = exact_add(exact_add(static_cast<float>(v), delta), 0.5f);
  r = r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r);
  return static_cast<uint8_t>(static_cast<int>(r));  // truncation of a non-negative value = floor
}

}  // namespace didmark::detail
