#pragma once
// One stable LSD radix sort for every caller (royalty payee order, KNN-Shapley distance order).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace didmark::detail {

/// Sort n items stably by `passes` digits, digit(item, p) < radix with p = 0 the least
/// significant, moving them between `a` and `b` (each n items); returns the one holding the
/// result. Counts for every pass come from one read; a pass whose digit is the same for every
/// item moves nothing and is skipped. `hist` has room for passes * radix counts.
template <class Item, class DigitFn>
Item* lsd_radix_sort(Item* a, Item* b, std::size_t n, int passes, uint32_t radix, DigitFn digit, uint32_t* hist) {
  if (n == 0) return a;
  std::fill(hist, hist + static_cast<std::size_t>(passes) * radix, 0u);
  for (std::size_t i = 0; i < n; ++i)
    for (int p = 0; p < passes; ++p) ++hist[static_cast<std::size_t>(p) * radix + digit(a[i], p)];
  for (int p = 0; p < passes; ++p) {
    uint32_t* h = hist + static_cast<std::size_t>(p) * radix;
    if (h[digit(a[0], p)] == n) continue;
    uint32_t sum = 0;
    for (uint32_t d = 0; d < radix; ++d) {
      const uint32_t c = h[d];
      h[d] = sum;
      sum += c;
    }
    for (std::size_t i = 0; i < n; ++i) b[h[digit(a[i], p)]++] = a[i];
    std::swap(a, b);
  }
  return a;
}

}  // namespace didmark::detail
