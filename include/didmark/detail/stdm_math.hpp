#pragma once
// Spread-transform dither modulation on one bit's projection p (the mean of w * c over the
// bit's elements). Bit s in {0,1} lives on the lattice step * (Z + s/2) + dither.
#include <cmath>
#include <numbers>

namespace didmark::detail {

/// The nearest lattice point of bit s to p, minus p: the change to apply along the carrier.
inline double stdm_delta(double p, double step, double dither, int s) {
  const double shift = dither + 0.5 * step * s;
  return step * std::nearbyint((p - shift) / step) + shift - p;
}

/// +1 when p sits on bit 0's lattice, -1 on bit 1's, in between otherwise.
inline double stdm_soft(double p, double step, double dither) {
  const double r = (p - dither) / step;
  return std::cos(2.0 * std::numbers::pi * (r - std::floor(r)));
}

/// Lattice step for a target relative change: |delta| is uniform on [0, step/2] in
/// expectation, so the RMS change is step / sqrt(12).
inline double stdm_step(double strength, double rms) { return std::sqrt(12.0) * strength * rms; }

}  // namespace didmark::detail
