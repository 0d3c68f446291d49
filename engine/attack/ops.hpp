#pragma once
// Small tensor operations the attacks share: gather, scale and grow along one axis of an
// owned tensor (any dtype for gathers; floating for the others), and seeded random streams.
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "didmark/attack.hpp"

namespace didmark::attack_detail {

/// (outer, length, inner) of `axis`: elements before, along, and after it.
struct AxisSplit {
  int64_t outer = 1, length = 1, inner = 1;
};
AxisSplit split_axis(const OwnedTensor& t, int axis);

/// new[.., offset + i, ..] = old[.., offset + perm[i], ..]: exact for any dtype.
void permute_axis(OwnedTensor& t, int axis, int64_t offset, std::span<const int64_t> perm);
/// Multiply slice offset + i of `axis` by s[i] (rounded to the tensor's dtype).
void scale_axis(OwnedTensor& t, int axis, int64_t offset, std::span<const double> s);
/// Grow `axis` by n slices at its end; element j of new slice k (in the row-major order of
/// the slice over the other axes) is fill(k, j).
void append_axis(OwnedTensor& t, int axis, int64_t n, const std::function<double(int64_t, int64_t)>& fill);

/// A random stream for (seed, attack number, what): independent of the order tensors are
/// visited in, the same on every run.
std::mt19937_64 stream(uint64_t seed, int attack, std::string_view what);
/// A uniformly random permutation of [0, n).
std::vector<int64_t> random_permutation(int64_t n, std::mt19937_64& rng);

/// RMS of a tensor's finite values (0 when none).
double rms(std::span<const double> v);

}  // namespace didmark::attack_detail
