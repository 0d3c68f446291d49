// The design choice behind alignment sketches, measured: how well each kind of per-index
// record recovers a permutation of FFN neurons (rows of the up projection) after the attacks
// that come with it, and at what size.
//
//   bench/alignment_design [MODEL.safetensors TENSOR]   (default: a synthetic 2048 x 512 matrix)
//
// Records compared (per row of a matrix whose columns are already aligned):
//  * moments:   RMS, mean|w|/RMS, max|w|/RMS, kurtosis (single pass, invariant to column order)
//  * quantiles: 8 quantiles of |w|/RMS (a sort per row)
//  * signature S: the row's values at S sampled columns (int8), the sketch's choice
// Matching: greedy pairs by distance (descriptors, all pairs) or the sketch matcher
// (signatures). Attacks on the suspect: a row permutation alone, + int8, + 50% magnitude
// pruning, + per-row rescaling (ReLU). Prints one markdown table row per record and attack:
// rows recovered, rows wrong, bytes per row.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "alignment/match.hpp"
#include "didmark/detail/alignment_math.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/io.hpp"

namespace {

using Mat = std::vector<float>;  // rows x cols

struct Matrix {
  int64_t rows = 0, cols = 0;
  Mat w;
};

Matrix synthetic(int64_t R, int64_t C, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  Matrix m{R, C, Mat(static_cast<std::size_t>(R * C))};
  std::vector<double> rs(static_cast<std::size_t>(R)), cs(static_cast<std::size_t>(C));
  for (auto& r : rs) r = std::exp(0.3 * nd(rng));
  for (auto& c : cs) c = std::exp(0.3 * nd(rng));
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j)
      m.w[static_cast<std::size_t>(i * C + j)] =
          static_cast<float>(0.02 * rs[static_cast<std::size_t>(i)] * cs[static_cast<std::size_t>(j)] * nd(rng));
  return m;
}

Matrix load(const char* path, const char* name) {
  didmark::SafetensorsFile f(path);
  for (const auto& t : f.header().tensors)
    if (t.name == name) {
      const auto v = f.view(t);
      Matrix m{v.shape[0], v.shape[1], Mat(static_cast<std::size_t>(v.numel()))};
      for (int64_t i = 0; i < v.numel(); ++i) m.w[static_cast<std::size_t>(i)] = static_cast<const float*>(v.data)[i];
      return m;
    }
  std::fprintf(stderr, "no tensor %s in %s\n", name, path);
  std::exit(2);
}

enum class Attack { permute, int8, prune, rescale };
const char* attack_name(Attack a) {
  switch (a) {
    case Attack::permute: return "permutation";
    case Attack::int8: return "+ int8";
    case Attack::prune: return "+ 50% pruning";
    case Attack::rescale: return "+ rescaled rows";
  }
  return "";
}

/// The suspect: rows permuted (row i of the suspect is original perm[i]), then the attack.
Matrix attack(const Matrix& m, const std::vector<int64_t>& perm, Attack a, uint64_t seed) {
  Matrix s{m.rows, m.cols, Mat(m.w.size())};
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  for (int64_t i = 0; i < m.rows; ++i) {
    const double scale = a == Attack::rescale ? std::exp(0.7 * nd(rng)) : 1.0;
    for (int64_t j = 0; j < m.cols; ++j)
      s.w[static_cast<std::size_t>(i * m.cols + j)] =
          static_cast<float>(scale * m.w[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)] * m.cols + j)]);
  }
  if (a == Attack::int8) {
    float mx = 0;
    for (float v : s.w) mx = std::max(mx, std::fabs(v));
    for (float& v : s.w) v = std::round(v / (mx / 127)) * (mx / 127);
  }
  if (a == Attack::prune) {
    Mat mag(s.w.size());
    for (std::size_t i = 0; i < mag.size(); ++i) mag[i] = std::fabs(s.w[i]);
    std::nth_element(mag.begin(), mag.begin() + static_cast<std::ptrdiff_t>(mag.size() / 2), mag.end());
    const float cut = mag[mag.size() / 2];
    for (float& v : s.w)
      if (std::fabs(v) < cut) v = 0;
  }
  return s;
}

std::vector<float> moments(const Matrix& m) {
  std::vector<float> d(static_cast<std::size_t>(m.rows * 4));
  for (int64_t i = 0; i < m.rows; ++i) {
    double s1 = 0, s2 = 0, s4 = 0, mx = 0;
    for (int64_t j = 0; j < m.cols; ++j) {
      const double v = std::fabs(static_cast<double>(m.w[static_cast<std::size_t>(i * m.cols + j)]));
      s1 += v;
      s2 += v * v;
      s4 += v * v * v * v;
      mx = std::max(mx, v);
    }
    const double n = static_cast<double>(m.cols), rms = std::sqrt(s2 / n);
    float* o = d.data() + i * 4;
    o[0] = static_cast<float>(std::log(rms + 1e-30));
    o[1] = static_cast<float>(s1 / n / (rms + 1e-30));
    o[2] = static_cast<float>(mx / (rms + 1e-30));
    o[3] = static_cast<float>(s4 / n / (rms * rms * rms * rms + 1e-30));
  }
  return d;
}

std::vector<float> quantiles(const Matrix& m) {
  std::vector<float> d(static_cast<std::size_t>(m.rows * 8));
  std::vector<float> row(static_cast<std::size_t>(m.cols));
  for (int64_t i = 0; i < m.rows; ++i) {
    double s2 = 0;
    for (int64_t j = 0; j < m.cols; ++j) {
      row[static_cast<std::size_t>(j)] = std::fabs(m.w[static_cast<std::size_t>(i * m.cols + j)]);
      s2 += static_cast<double>(row[static_cast<std::size_t>(j)]) * static_cast<double>(row[static_cast<std::size_t>(j)]);
    }
    std::sort(row.begin(), row.end());
    const double rms = std::sqrt(s2 / static_cast<double>(m.cols)) + 1e-30;
    for (int q = 0; q < 8; ++q)
      d[static_cast<std::size_t>(i * 8 + q)] = static_cast<float>(
          static_cast<double>(row[static_cast<std::size_t>((2 * q + 1) * m.cols / 16)]) / rms);
  }
  return d;
}

/// Greedy matching of descriptor rows by Euclidean distance after standardizing each column
/// (all pairs): the best a descriptor can do without a key.
std::vector<int64_t> greedy_distance(const std::vector<float>& a, const std::vector<float>& b, int64_t n, int k) {
  std::vector<double> mu(static_cast<std::size_t>(k), 0), sd(static_cast<std::size_t>(k), 0);
  for (int c = 0; c < k; ++c) {
    for (int64_t i = 0; i < n; ++i) mu[static_cast<std::size_t>(c)] += a[static_cast<std::size_t>(i * k + c)];
    mu[static_cast<std::size_t>(c)] /= static_cast<double>(n);
    for (int64_t i = 0; i < n; ++i) sd[static_cast<std::size_t>(c)] += std::pow(a[static_cast<std::size_t>(i * k + c)] - mu[static_cast<std::size_t>(c)], 2);
    sd[static_cast<std::size_t>(c)] = std::sqrt(sd[static_cast<std::size_t>(c)] / static_cast<double>(n)) + 1e-30;
  }
  struct P {
    float d;
    int32_t i, j;
  };
  std::vector<P> pairs;
  pairs.reserve(static_cast<std::size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double d = 0;
      for (int c = 0; c < k; ++c)
        d += std::pow((a[static_cast<std::size_t>(i * k + c)] - b[static_cast<std::size_t>(j * k + c)]) / sd[static_cast<std::size_t>(c)], 2);
      pairs.push_back({static_cast<float>(d), static_cast<int32_t>(i), static_cast<int32_t>(j)});
    }
  std::sort(pairs.begin(), pairs.end(), [](const P& x, const P& y) { return x.d < y.d; });
  std::vector<int64_t> src(static_cast<std::size_t>(n), -1);
  std::vector<uint8_t> used(static_cast<std::size_t>(n), 0);
  for (const P& p : pairs)
    if (src[static_cast<std::size_t>(p.i)] < 0 && !used[static_cast<std::size_t>(p.j)]) {
      src[static_cast<std::size_t>(p.i)] = p.j;
      used[static_cast<std::size_t>(p.j)] = 1;
    }
  return src;
}

std::vector<float> signature(const Matrix& m, int S, bool quantize) {
  std::vector<float> d(static_cast<std::size_t>(m.rows * S));
  for (int64_t i = 0; i < m.rows; ++i) {
    float mx = 0;
    for (int s = 0; s < S; ++s) mx = std::max(mx, std::fabs(m.w[static_cast<std::size_t>(i * m.cols + (2 * s + 1) * m.cols / (2 * S))]));
    for (int s = 0; s < S; ++s) {
      const float v = m.w[static_cast<std::size_t>(i * m.cols + (2 * s + 1) * m.cols / (2 * S))];
      d[static_cast<std::size_t>(i * S + s)] =
          quantize ? didmark::detail::dequantize_signature(didmark::detail::quantize_signature(v, mx), mx) : v;
    }
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  const Matrix m = argc >= 3 ? load(argv[1], argv[2]) : synthetic(2048, 512, 1);
  std::printf("matrix %s: %lld x %lld\n\n", argc >= 3 ? argv[2] : "synthetic (row/column scales exp(0.3 N))",
              static_cast<long long>(m.rows), static_cast<long long>(m.cols));
  std::printf("| record | bytes/row | attack | rows recovered | rows wrong | match time |\n|---|---:|---|---:|---:|---:|\n");
  std::vector<int64_t> perm(static_cast<std::size_t>(m.rows));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  std::shuffle(perm.begin(), perm.end(), std::mt19937_64(5));
  std::vector<int64_t> truth(static_cast<std::size_t>(m.rows));  // original i sits at suspect row truth[i]
  for (int64_t i = 0; i < m.rows; ++i) truth[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])] = i;
  for (Attack a : {Attack::permute, Attack::int8, Attack::prune, Attack::rescale}) {
    const Matrix s = attack(m, perm, a, 9);
    auto report = [&](const char* rec, int bytes, const std::vector<int64_t>& src, double ms) {
      int64_t right = 0, wrong = 0;
      for (int64_t i = 0; i < m.rows; ++i) {
        right += src[static_cast<std::size_t>(i)] == truth[static_cast<std::size_t>(i)] ? 1 : 0;
        wrong += src[static_cast<std::size_t>(i)] >= 0 && src[static_cast<std::size_t>(i)] != truth[static_cast<std::size_t>(i)] ? 1 : 0;
      }
      std::printf("| %s | %d | %s | %.1f%% | %.1f%% | %.0f ms |\n", rec, bytes, attack_name(a),
                  100.0 * static_cast<double>(right) / static_cast<double>(m.rows),
                  100.0 * static_cast<double>(wrong) / static_cast<double>(m.rows), ms);
    };
    auto time = [](auto&& f) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = f();
      return std::make_pair(r, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    };
    {
      const auto [src, ms] = time([&] { return greedy_distance(moments(m), moments(s), m.rows, 4); });
      report("moments (4, one pass)", 8, src, ms);
    }
    {
      const auto [src, ms] = time([&] { return greedy_distance(quantiles(m), quantiles(s), m.rows, 8); });
      report("quantiles (8, sorted rows)", 16, src, ms);
    }
    for (int S : {8, 16, 32, 64}) {
      const auto A = signature(m, S, true), B = signature(s, S, false);
      const auto [r, ms] = time([&] {
        return didmark::alignment::match_signatures({m.rows, s.rows, S, A.data(), B.data(), S});
      });
      const std::string name = "signature S=" + std::to_string(S) + " (int8)";
      report(name.c_str(), S + 4, r.src, ms);
    }
  }
}
