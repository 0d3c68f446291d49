#include "alignment/match.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "didmark/error.hpp"

namespace didmark::alignment {
namespace {

struct Pair {
  float score;  // |cos|
  int32_t i, j;
  float sign;
};

/// Rows standardized per column (over `used` columns) and scaled to unit norm; `valid[r]` is
/// false for rows whose raw values are all (near) zero: they never match.
struct Prepared {
  std::vector<float> x;  // rows x k
  std::vector<uint8_t> valid;
  std::vector<std::array<int, 3>> top;  // the three largest |entries| of each row (column positions)
};

Prepared prepare(const float* raw, int64_t rows, int m, const std::vector<int>& used, const std::vector<double>& mean,
                 const std::vector<double>& sd) {
  const int k = static_cast<int>(used.size());
  Prepared p;
  p.x.assign(static_cast<std::size_t>(rows * k), 0.0f);
  p.valid.assign(static_cast<std::size_t>(rows), 0);
  p.top.assign(static_cast<std::size_t>(rows), {0, 0, 0});
  std::vector<double> raw_norm(static_cast<std::size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int c : used) s += static_cast<double>(raw[r * m + c]) * static_cast<double>(raw[r * m + c]);
    raw_norm[static_cast<std::size_t>(r)] = std::sqrt(s);
  }
  std::vector<double> sorted = raw_norm;
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
  const double floor = sorted.empty() ? 0 : 1e-3 * sorted[sorted.size() / 2];
  for (int64_t r = 0; r < rows; ++r) {
    float* row = p.x.data() + r * k;
    double nn = 0;
    for (int c = 0; c < k; ++c) {
      const double v = (static_cast<double>(raw[r * m + used[static_cast<std::size_t>(c)]]) - mean[static_cast<std::size_t>(c)]) /
                       sd[static_cast<std::size_t>(c)];
      row[c] = static_cast<float>(v);
      nn += v * v;
    }
    if (!(raw_norm[static_cast<std::size_t>(r)] > floor) || !(nn > 0) || !std::isfinite(nn)) continue;
    const float inv = static_cast<float>(1.0 / std::sqrt(nn));
    for (int c = 0; c < k; ++c) row[c] *= inv;
    p.valid[static_cast<std::size_t>(r)] = 1;
    std::array<int, 3> t{0, 0, 0};
    std::array<float, 3> tv{-1, -1, -1};
    for (int c = 0; c < k; ++c) {
      const float v = std::fabs(row[c]);
      if (v > tv[2]) {
        int pos = 2;
        while (pos > 0 && v > tv[static_cast<std::size_t>(pos - 1)]) {
          tv[static_cast<std::size_t>(pos)] = tv[static_cast<std::size_t>(pos - 1)];
          t[static_cast<std::size_t>(pos)] = t[static_cast<std::size_t>(pos - 1)];
          --pos;
        }
        tv[static_cast<std::size_t>(pos)] = v;
        t[static_cast<std::size_t>(pos)] = c;
      }
    }
    p.top[static_cast<std::size_t>(r)] = t;
  }
  return p;
}

float dot(const float* a, const float* b, int k) {
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int c = 0;
  for (; c + 4 <= k; c += 4) {
    s0 += a[c] * b[c];
    s1 += a[c + 1] * b[c + 1];
    s2 += a[c + 2] * b[c + 2];
    s3 += a[c + 3] * b[c + 3];
  }
  for (; c < k; ++c) s0 += a[c] * b[c];
  return (s0 + s1) + (s2 + s3);
}

uint32_t pair_key(int a, int b) {
  return a < b ? static_cast<uint32_t>(a) << 16 | static_cast<uint32_t>(b)
               : static_cast<uint32_t>(b) << 16 | static_cast<uint32_t>(a);
}

}  // namespace

MatchResult match_signatures(const MatchInput& in) {
  MatchResult r;
  r.src.assign(static_cast<std::size_t>(in.n), -1);
  r.sign.assign(static_cast<std::size_t>(in.n), 1.0f);
  r.scale.assign(static_cast<std::size_t>(in.n), 1.0f);
  r.score.assign(static_cast<std::size_t>(in.n), 0.0f);
  DIDMARK_ASSERT(in.n >= 0 && in.n2 >= 0 && in.m >= 0 && in.m < 65536);
  if (in.n == 0 || in.n2 == 0 || in.m == 0) return r;

  // Columns with spread on both sides, standardized on each side by its own statistics: a
  // column scaled or shifted by the attack (the other axis rescaled) cancels out.
  std::vector<int> used;
  std::vector<double> ma, sa, mb, sb;
  for (int c = 0; c < in.m; ++c) {
    auto stats = [&](const float* x, int64_t rows) {
      double s = 0, ss = 0;
      for (int64_t i = 0; i < rows; ++i) s += static_cast<double>(x[i * in.m + c]);
      const double mu = s / static_cast<double>(rows);
      for (int64_t i = 0; i < rows; ++i) {
        const double d = static_cast<double>(x[i * in.m + c]) - mu;
        ss += d * d;
      }
      return std::pair<double, double>(mu, std::sqrt(ss / static_cast<double>(rows)));
    };
    const auto [mua, sda] = stats(in.a, in.n);
    const auto [mub, sdb] = stats(in.b, in.n2);
    if (!(sda > 1e-30) || !(sdb > 1e-30) || !std::isfinite(sda) || !std::isfinite(sdb)) continue;
    used.push_back(c);
    ma.push_back(mua);
    sa.push_back(sda);
    mb.push_back(mub);
    sb.push_back(sdb);
  }
  const int k = static_cast<int>(used.size());
  r.columns_used = k;
  if (k < 2) return r;
  const Prepared A = prepare(in.a, in.n, in.m, used, ma, sa);
  const Prepared B = prepare(in.b, in.n2, in.m, used, mb, sb);

  // A pair of random rows has cosine ~ N(0, 1/k); accept well above that.
  const float tau = std::clamp(4.0f / std::sqrt(static_cast<float>(k)), 0.5f, 0.8f);
  r.threshold = tau;
  std::vector<uint8_t> used_a(static_cast<std::size_t>(in.n), 0), used_b(static_cast<std::size_t>(in.n2), 0);
  std::vector<Pair> pairs;

  auto greedy = [&](float accept) {
    std::sort(pairs.begin(), pairs.end(), [](const Pair& x, const Pair& y) {
      return x.score != y.score ? x.score > y.score : (x.i != y.i ? x.i < y.i : x.j < y.j);
    });
    for (const Pair& p : pairs) {
      if (p.score < accept) break;
      if (used_a[static_cast<std::size_t>(p.i)] || used_b[static_cast<std::size_t>(p.j)]) continue;
      used_a[static_cast<std::size_t>(p.i)] = used_b[static_cast<std::size_t>(p.j)] = 1;
      r.src[static_cast<std::size_t>(p.i)] = p.j;
      r.sign[static_cast<std::size_t>(p.i)] = p.sign;
      r.score[static_cast<std::size_t>(p.i)] = p.score;
    }
    pairs.clear();
  };
  auto consider = [&](int64_t i, int64_t j) {
    const float d = dot(A.x.data() + i * k, B.x.data() + j * k, k);
    if (std::fabs(d) >= 0.5f * tau)
      pairs.push_back({std::fabs(d), static_cast<int32_t>(i), static_cast<int32_t>(j), d < 0 ? -1.0f : 1.0f});
  };

  // Pass 1: originals bucketed by their two largest columns; each suspect row probes the
  // three pairs among its own three largest.
  {
    std::unordered_map<uint32_t, std::vector<int32_t>> buckets;
    for (int64_t i = 0; i < in.n; ++i)
      if (A.valid[static_cast<std::size_t>(i)]) {
        const auto& t = A.top[static_cast<std::size_t>(i)];
        buckets[pair_key(t[0], t[1])].push_back(static_cast<int32_t>(i));
      }
    for (int64_t j = 0; j < in.n2; ++j) {
      if (!B.valid[static_cast<std::size_t>(j)]) continue;
      const auto& t = B.top[static_cast<std::size_t>(j)];
      const uint32_t probes[3] = {pair_key(t[0], t[1]), pair_key(t[0], t[2]), pair_key(t[1], t[2])};
      for (int q = 0; q < (k >= 3 ? 3 : 1); ++q) {
        if (q > 0 && probes[q] == probes[0]) continue;
        auto it = buckets.find(probes[q]);
        if (it == buckets.end()) continue;
        for (int32_t i : it->second) consider(i, j);
      }
    }
    greedy(tau);
  }
  // Pass 2: the originals left, bucketed by their largest column; suspects left probe their
  // three largest.
  {
    std::vector<std::vector<int32_t>> buckets(static_cast<std::size_t>(k));
    int64_t left_a = 0, left_b = 0;
    for (int64_t i = 0; i < in.n; ++i)
      if (A.valid[static_cast<std::size_t>(i)] && !used_a[static_cast<std::size_t>(i)]) {
        buckets[static_cast<std::size_t>(A.top[static_cast<std::size_t>(i)][0])].push_back(static_cast<int32_t>(i));
        ++left_a;
      }
    for (int64_t j = 0; j < in.n2; ++j) left_b += B.valid[static_cast<std::size_t>(j)] && !used_b[static_cast<std::size_t>(j)];
    if (left_a > 0 && left_b > 0) {
      for (int64_t j = 0; j < in.n2; ++j) {
        if (!B.valid[static_cast<std::size_t>(j)] || used_b[static_cast<std::size_t>(j)]) continue;
        const auto& t = B.top[static_cast<std::size_t>(j)];
        for (int q = 0; q < std::min(3, k); ++q) {
          if ((q == 1 && t[1] == t[0]) || (q == 2 && (t[2] == t[0] || t[2] == t[1]))) continue;
          for (int32_t i : buckets[static_cast<std::size_t>(t[static_cast<std::size_t>(q)])]) consider(i, j);
        }
      }
      greedy(tau);
    }
  }
  // Pass 3: whatever is left, every pair, when that is few enough; the threshold rises with the
  // number of pairs tried (the best of many random pairs is higher).
  {
    std::vector<int32_t> la, lb;
    for (int64_t i = 0; i < in.n; ++i)
      if (A.valid[static_cast<std::size_t>(i)] && !used_a[static_cast<std::size_t>(i)]) la.push_back(static_cast<int32_t>(i));
    for (int64_t j = 0; j < in.n2; ++j)
      if (B.valid[static_cast<std::size_t>(j)] && !used_b[static_cast<std::size_t>(j)]) lb.push_back(static_cast<int32_t>(j));
    const double tried = static_cast<double>(la.size()) * static_cast<double>(lb.size());
    if (tried > 0 && tried <= static_cast<double>(1 << 22)) {
      for (int32_t j : lb)
        for (int32_t i : la) consider(i, j);
      const float accept = std::max(tau, static_cast<float>(std::sqrt(2.0 * std::log(tried + 1.0) / k)) + 0.1f);
      greedy(std::min(accept, 0.9f));
    }
  }

  // Scales of matched pairs over the sampled slices (raw values, least squares).
  std::vector<float> scores;
  for (int64_t i = 0; i < in.n; ++i) {
    const int64_t j = r.src[static_cast<std::size_t>(i)];
    if (j < 0) continue;
    ++r.matched;
    scores.push_back(r.score[static_cast<std::size_t>(i)]);
    double ab = 0, aa = 0;
    for (int c = 0; c < in.scale_cols && c < in.m; ++c) {
      const double a = static_cast<double>(in.a[i * in.m + c]);
      ab += a * static_cast<double>(in.b[j * in.m + c]);
      aa += a * a;
    }
    if (aa > 0 && std::isfinite(ab) && std::fabs(ab) > 0)
      r.scale[static_cast<std::size_t>(i)] = static_cast<float>(std::fabs(ab) / aa);
  }
  for (int64_t j = 0; j < in.n2; ++j) r.suspect_unused += used_b[static_cast<std::size_t>(j)] ? 0 : 1;
  if (!scores.empty()) {
    std::nth_element(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(scores.size() / 2), scores.end());
    r.median_score = scores[scores.size() / 2];
  }
  return r;
}

}  // namespace didmark::alignment
