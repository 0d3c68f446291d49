// The null side of the lab: deterministic wrong keys and the error rates they give.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>

#include "didmark/attack.hpp"
#include "didmark/identity.hpp"

namespace didmark {

WatermarkKey null_key(uint64_t i) {
  // A public, fixed secret: the wrong keys are meant to be reproducible by anyone.
  static constexpr char kSeed[33] = "didmark/robustness/null-seed/v1.";
  std::array<uint8_t, 32> secret{};
  for (std::size_t k = 0; k < 32; ++k) secret[k] = static_cast<uint8_t>(kSeed[k]);
  return derive_watermark_key(secret, "didmark/robustness/null-key/v1/" + std::to_string(i));
}

double normal_quantile(double p) noexcept {
  if (!(p > 0 && p < 1)) return p <= 0 ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  // Acklam's rational approximation (relative error < 1.2e-9), then one Newton step on erfc.
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                                 1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                                 6.680131188771972e+01,  -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                                 -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                                 3.754408661907416e+00};
  const double lo = 0.02425;
  double x;
  if (p < lo) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - lo) {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const double e = 0.5 * std::erfc(-x / std::sqrt(2.0)) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

ErrorRates error_rates(std::span<const double> null_z, std::span<const double> positive_z, double p_threshold) {
  ErrorRates r;
  r.null_count = static_cast<int64_t>(null_z.size());
  const double zt = hoeffding_z_threshold(p_threshold);
  std::vector<double> z(null_z.begin(), null_z.end());
  std::sort(z.begin(), z.end());
  if (!z.empty()) {
    const double n = static_cast<double>(z.size());
    r.null_mean = std::accumulate(z.begin(), z.end(), 0.0) / n;
    double ss = 0;
    for (double v : z) ss += (v - r.null_mean) * (v - r.null_mean);
    r.null_sd = z.size() > 1 ? std::sqrt(ss / (n - 1)) : 0;
    r.null_max = z.back();
    r.empirical_fpr = static_cast<double>(z.end() - std::lower_bound(z.begin(), z.end(), zt)) / n;
  }
  auto empirical = [&](double fpr, bool& extrapolated) {
    const double n = static_cast<double>(z.size());
    if (!z.empty() && n * fpr >= 10) {
      // The smallest threshold with at most fpr * n null values at or above it.
      const auto k = static_cast<std::size_t>(std::floor(fpr * n));
      extrapolated = false;
      return std::nextafter(z[z.size() - 1 - k], std::numeric_limits<double>::infinity());
    }
    extrapolated = true;
    return r.null_mean + r.null_sd * normal_quantile(1 - fpr);
  };
  r.z_bound_1e3 = hoeffding_z_threshold(1e-3);
  r.z_bound_1e6 = hoeffding_z_threshold(1e-6);
  r.z_empirical_1e3 = empirical(1e-3, r.extrapolated_1e3);
  r.z_empirical_1e6 = empirical(1e-6, r.extrapolated_1e6);
  auto tpr = [&](double t) {
    if (positive_z.empty()) return 0.0;
    std::size_t k = 0;
    for (double v : positive_z) k += v >= t;
    return static_cast<double>(k) / static_cast<double>(positive_z.size());
  };
  r.tpr_bound_1e3 = tpr(r.z_bound_1e3);
  r.tpr_bound_1e6 = tpr(r.z_bound_1e6);
  r.tpr_empirical_1e3 = tpr(r.z_empirical_1e3);
  r.tpr_empirical_1e6 = tpr(r.z_empirical_1e6);
  return r;
}

}  // namespace didmark
