// Tail bounds and exact tails for the detection statistics.
#include <algorithm>
#include <cmath>
#include <limits>

#include "didmark/watermark.hpp"

namespace didmark {

double hoeffding_p_value(double z) noexcept { return z <= 0 ? 1.0 : std::exp(-0.5 * z * z); }

double hoeffding_log10_p(double z) noexcept { return z <= 0 ? 0.0 : -0.5 * z * z / std::log(10.0); }

double hoeffding_z_threshold(double p) noexcept {
  if (!(p > 0) || p >= 1) return 0;
  return std::sqrt(-2.0 * std::log(p));
}

double binomial_tail_log10(int n, int k) noexcept {
  if (k <= 0) return 0.0;
  if (k > n) return -std::numeric_limits<double>::infinity();
  // log P(X >= k) = log sum_{i>=k} C(n,i) 2^-n, summed stably around the largest term.
  const double ln2 = std::log(2.0);
  auto log_term = [&](int i) {
    return std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * ln2;
  };
  double m = -std::numeric_limits<double>::infinity();
  for (int i = k; i <= n; ++i) m = std::max(m, log_term(i));
  double s = 0;
  for (int i = k; i <= n; ++i) s += std::exp(log_term(i) - m);
  return std::min(0.0, (m + std::log(s)) / std::log(10.0));
}

}  // namespace didmark
